package mesh

import (
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/weavelab/weave/mesh/identity"
)

// graph is the ground truth of a simulation: who is linked to whom.
type graph map[int]map[int]bool

func (g graph) link(a, b int) {
	for _, p := range [][2]int{{a, b}, {b, a}} {
		if g[p[0]] == nil {
			g[p[0]] = map[int]bool{}
		}
		g[p[0]][p[1]] = true
	}
}

// bfs returns hop counts from src.
func (g graph) bfs(src, n int) []int {
	dist := make([]int, n)
	for i := range dist {
		dist[i] = -1
	}
	dist[src] = 0
	q := []int{src}
	for len(q) > 0 {
		u := q[0]
		q = q[1:]
		for v := range g[u] {
			if dist[v] < 0 {
				dist[v] = dist[u] + 1
				q = append(q, v)
			}
		}
	}
	return dist
}

// randomSparse builds a connected random graph: peer i links to one random
// earlier peer (a random spanning tree) and, with some luck, to extra random
// peers, about `extra` more per peer.
func randomSparse(n, extra int, rng *rand.Rand) (graph, [][2]int) {
	g := graph{}
	var dials [][2]int
	for i := 1; i < n; i++ {
		j := rng.IntN(i)
		g.link(i, j)
		dials = append(dials, [2]int{i, j})
	}
	for k := 0; k < n*extra; k++ {
		a, b := rng.IntN(n), rng.IntN(n)
		if a == b || g[a][b] {
			continue
		}
		g.link(a, b)
		dials = append(dials, [2]int{a, b})
	}
	return g, dials
}

// converged reports whether every router has established links to exactly
// its neighbours in g and all routers hold the same topology of n peers.
func (s *sim) converged(g graph, n int) bool {
	var first uint64
	// Digests first: they are cheap, and Routes computes the routes of a
	// new snapshot, which is wasted while topologies still differ.
	for i, r := range s.routers {
		d, count, ok := r.digest()
		if !ok || count != n {
			return false
		}
		if i == 0 {
			first = d
		} else if d != first {
			return false
		}
	}
	for i, r := range s.routers {
		nb := r.Routes().Neighbours()
		if len(nb) != len(g[i]) {
			return false
		}
		for _, p := range nb {
			if !g[i][index(p)] {
				return false
			}
		}
	}
	return true
}

// checkRoutes compares every router's unicast next hops with shortest paths
// computed from the ground truth: the next hop must be the lowest-named
// neighbour one hop closer to the destination.
func checkRoutes(tb testing.TB, s *sim, g graph, n int) {
	tb.Helper()
	dist := make([][]int, n)
	for i := range dist {
		dist[i] = g.bfs(i, n)
	}
	bad := 0
	for u, r := range s.routers {
		routes := r.Routes()
		for dst := 0; dst < n; dst++ {
			if dst == u {
				continue
			}
			want := -1
			for v := range g[u] {
				if dist[v][dst] == dist[u][dst]-1 && (want < 0 || name(v) < name(want)) {
					want = v
				}
			}
			next, ok := routes.Unicast(name(dst))
			if !ok || next != name(want) {
				if bad++; bad <= 10 {
					tb.Errorf("peer %d to %d: next hop %v (ok=%v), want %d", u, dst, next, ok, want)
				}
			}
			if h, _ := routes.Distance(name(dst)); h != dist[u][dst] {
				if bad++; bad <= 10 {
					tb.Errorf("peer %d to %d: distance %d, want %d", u, dst, h, dist[u][dst])
				}
			}
		}
	}
}

// checkBroadcastTrees follows each router's Broadcast children from every
// source and checks that the broadcast reaches every peer exactly once.
func checkBroadcastTrees(tb testing.TB, s *sim, n int) {
	tb.Helper()
	for src := 0; src < n; src++ {
		seen := make([]int, n)
		seen[src] = 1
		q := []int{src}
		for len(q) > 0 {
			u := q[0]
			q = q[1:]
			for _, c := range s.routers[u].Routes().Broadcast(name(src)) {
				v := index(c)
				seen[v]++
				q = append(q, v)
			}
		}
		for v, k := range seen {
			if k != 1 {
				tb.Fatalf("broadcast from %d reached %d %d times", src, v, k)
			}
		}
	}
}

func TestDiscovery(t *testing.T) {
	for _, disc := range []bool{true, false} {
		t.Run(map[bool]string{true: "on", false: "off"}[disc], func(t *testing.T) {
			s := newSim(t)
			for i := 0; i < 3; i++ {
				s.start(i, func(c *Config) { c.NoDiscovery = !disc })
			}
			s.connect(1, 0)
			s.connect(2, 1)
			g := graph{}
			g.link(0, 1)
			g.link(1, 2)
			if disc {
				g.link(0, 2)
			}
			waitFor(t, 10*time.Second, "convergence", func() bool { return s.converged(g, 3) })
			checkRoutes(t, s, g, 3)
			if !disc {
				if next, _ := s.routers[0].Routes().Unicast(name(2)); next != name(1) {
					t.Errorf("0 to 2 via %v, want via 1", next)
				}
			}
		})
	}
}

func TestForgetStopsReconnecting(t *testing.T) {
	s := newSim(t)
	a := s.start(0, func(c *Config) { c.NoDiscovery = true })
	b := s.start(1, nil)
	s.connect(0, 1)
	waitFor(t, 10*time.Second, "connected", func() bool { return connected(a, name(1)) })
	// A target that never answers shows that the connection maker keeps
	// running while the forgotten one is left alone.
	if err := a.Connect([]string{"10.99.0.1:6783"}, false); err != nil {
		t.Fatal(err)
	}
	if err := a.Forget([]string{addrOf(1)}); err != nil {
		t.Fatal(err)
	}
	if got := a.Targets(); !slices.Equal(got, []string{"10.99.0.1:6783"}) {
		t.Fatalf("targets after forget = %v", got)
	}
	b.Close()
	waitFor(t, 10*time.Second, "connection dropped", func() bool { return !connected(a, name(1)) })
	s.start(1, nil)
	dials := s.net.Dials(addrOf(1))
	base := s.net.Dials("10.99.0.1:6783")
	waitFor(t, 10*time.Second, "retries of the other target", func() bool {
		return s.net.Dials("10.99.0.1:6783") >= base+4
	})
	if got := s.net.Dials(addrOf(1)); got != dials {
		t.Errorf("forgotten peer dialled %d more times", got-dials)
	}
	if connected(a, name(1)) {
		t.Error("reconnected to the forgotten peer")
	}
}

// TestForgetClearsFailedDials: after forget (or connect --replace), status
// shows no failed line for the target, neither the failures recorded
// before nor that of a dial still under way when it was forgotten, so
// nothing looks as if the router still tried it.
func TestForgetClearsFailedDials(t *testing.T) {
	s := newSim(t)
	a := s.start(0, func(c *Config) { c.NoDiscovery = true; c.HandshakeTimeout = 300 * time.Millisecond })
	s.start(1, nil)
	s.net.Host(hostIP(1)).Freeze(true) // dials to 1 hang until the timeout
	const refused, replaced = "10.99.0.1:6783", "10.99.0.2:6783"
	failedTo := func(addr string) bool {
		for _, c := range a.Status().Connections {
			if c.State == StateFailed && c.Addr == addr {
				return true
			}
		}
		return false
	}
	if err := a.Connect([]string{refused, replaced}, false); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "failed dials", func() bool { return failedTo(refused) && failedTo(replaced) })
	s.connect(0, 1)
	waitFor(t, 10*time.Second, "a dial under way", func() bool { return s.net.Dials(addrOf(1)) > 0 })
	if err := a.Forget([]string{refused, addrOf(1)}); err != nil {
		t.Fatal(err)
	}
	if failedTo(refused) {
		t.Errorf("status still shows a failed dial of forgotten %s", refused)
	}
	if err := a.Connect(nil, true); err != nil {
		t.Fatal(err)
	}
	if failedTo(replaced) {
		t.Errorf("status still shows a failed dial of %s, replaced away", replaced)
	}
	// The hanging dial ends by its timeout after the forget.
	waitFor(t, 10*time.Second, "the hanging dial to end", func() bool {
		for _, c := range a.Status().Connections {
			if c.Addr == addrOf(1) && c.State != StateFailed {
				return false
			}
		}
		return true
	})
	if failedTo(addrOf(1)) {
		t.Errorf("a dial of forgotten %s that ended later shows as failed", addrOf(1))
	}
}

func TestDeadPeerRemovedAndRejoins(t *testing.T) {
	s := newSim(t)
	fast := func(c *Config) {
		c.NoDiscovery = true
		c.HeartbeatInterval = 20 * time.Millisecond
		c.DeadAfter = 5
	}
	for i := 0; i < 3; i++ {
		s.start(i, func(c *Config) {
			fast(c)
			if i == 2 {
				c.DeadAfter = 100 // so that its peers notice its silence first
			}
		})
	}
	s.connect(1, 0)
	s.connect(1, 2)
	g := graph{}
	g.link(0, 1)
	g.link(1, 2)
	waitFor(t, 10*time.Second, "convergence", func() bool { return s.converged(g, 3) })

	// Peer 2 hangs: its connections go silent without closing.
	s.net.Host(hostIP(2)).Freeze(true)
	waitFor(t, 10*time.Second, "dead peer dropped", func() bool {
		return !s.routers[0].knows(name(2)) && !s.routers[1].knows(name(2))
	})
	var reason string
	for _, c := range s.routers[1].Status().Connections {
		if c.Peer.Name == name(2) && c.State == StateFailed {
			reason = c.Reason
		}
	}
	if !strings.Contains(reason, errDead.Error()) {
		t.Errorf("peer 1 dropped peer 2 with reason %q, want %q", reason, errDead)
	}
	// It comes back as a new run (new UID); peer 1 still has it as a target.
	s.routers[2].Close()
	s.net.Host(hostIP(2)).Freeze(false)
	r2 := s.start(2, func(c *Config) { fast(c); c.Peer.UID = 4242 })
	waitFor(t, 10*time.Second, "rejoin", func() bool { return s.converged(g, 3) })
	if p, ok := findPeer(s.routers[0], name(2)); !ok || p.UID != r2.Peer().UID {
		t.Errorf("peer 0 has %+v for the rejoined peer, want uid %d", p, r2.Peer().UID)
	}
}

func findPeer(r *Router, n identity.PeerName) (PeerStatus, bool) {
	for _, p := range r.Status().Peers {
		if p.Name == n {
			return p, true
		}
	}
	return PeerStatus{}, false
}

// recorder is a Gossiper that records what it got; its state is a set of
// strings, merged by union.
type recorder struct {
	mu       sync.Mutex
	gossip   map[string]int // payload -> times received by broadcast
	unicasts []string
	state    map[string]bool
}

func newRecorder() *recorder {
	return &recorder{gossip: map[string]int{}, state: map[string]bool{}}
}

func (r *recorder) OnGossip(src identity.PeerName, msg []byte) ([]byte, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.gossip[string(msg)]++
	if r.state[string(msg)] {
		return nil, nil
	}
	r.state[string(msg)] = true
	return msg, nil
}

func (r *recorder) OnUnicast(src identity.PeerName, msg []byte) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.unicasts = append(r.unicasts, src.String()+" "+string(msg))
	return nil
}

func (r *recorder) Gossip() []byte { return nil }

func (r *recorder) count(msg string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.gossip[msg]
}

func (r *recorder) got() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.unicasts)
}

func TestGossipChannel(t *testing.T) {
	const n = 6
	s := newSim(t)
	recs := make([]*recorder, n)
	chans := make([]*GossipChannel, n)
	g := graph{}
	for i := 0; i < n; i++ {
		r := s.start(i, func(c *Config) { c.NoDiscovery = true; c.GossipInterval = time.Hour })
		recs[i] = newRecorder()
		chans[i] = r.NewGossipChannel("test", recs[i])
		if i > 0 {
			s.connect(i, i-1) // a chain: 0-1-2-3-4-5
			g.link(i, i-1)
		}
	}
	waitFor(t, 10*time.Second, "convergence", func() bool { return s.converged(g, n) })

	chans[2].Broadcast([]byte("hello"))
	waitFor(t, 10*time.Second, "broadcast everywhere", func() bool {
		for i, r := range recs {
			if i != 2 && r.count("hello") == 0 {
				return false
			}
		}
		return true
	})
	for i, r := range recs {
		want := 1
		if i == 2 {
			want = 0
		}
		if got := r.count("hello"); got != want {
			t.Errorf("peer %d got the broadcast %d times, want %d", i, got, want)
		}
	}

	if err := chans[0].Unicast(name(5), []byte("far")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "unicast over 5 hops", func() bool { return len(recs[5].got()) == 1 })
	if got, want := recs[5].got()[0], name(0).String()+" far"; got != want {
		t.Errorf("unicast = %q, want %q", got, want)
	}
	for i := 1; i < 5; i++ {
		if len(recs[i].got()) != 0 {
			t.Errorf("relay %d delivered the unicast to itself", i)
		}
	}
	if err := chans[0].Unicast(name(77), nil); err == nil {
		t.Error("unicast to an unknown peer succeeded")
	}
}
