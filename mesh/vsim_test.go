package mesh

import (
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/weavelab/weave/mesh/clock/clocktest"
	"github.com/weavelab/weave/mesh/identity"
	"github.com/weavelab/weave/mesh/meshtest"
	"github.com/weavelab/weave/mesh/topology"
)

// The virtual-time simulation: N peers, each running the router's topology
// gossip (topoGossip, the code the router's actor runs) on one virtual
// clock, joined by virtual links with a latency and an optional loss rate,
// stepped event by event in one goroutine. The transport, the handshake and
// heartbeats are not simulated: a link comes up when the simulation says so
// (as the router calls setLink on registering a connection) and goes down
// when it says so (as heartbeats or a reset would tell). Everything random
// comes from the seed, so a run replays exactly.

// vsimConfig parameterises a simulation.
type vsimConfig struct {
	Seed           uint64
	Loss           float64       // probability that a gossip message is lost
	MinLatency     time.Duration // one-way latency, uniform in [Min, Max)
	MaxLatency     time.Duration
	UpdateDelay    time.Duration
	GossipInterval time.Duration
	RequestTimeout time.Duration
	Signed         bool // signed topologies (slow: a signature check per entry merged)
}

func defaultVsimConfig(seed uint64) vsimConfig {
	d := DefaultConfig()
	return vsimConfig{
		Seed:           seed,
		MinLatency:     time.Millisecond,
		MaxLatency:     20 * time.Millisecond,
		UpdateDelay:    d.UpdateDelay,
		GossipInterval: d.GossipInterval,
		RequestTimeout: d.RequestTimeout,
	}
}

// vsimStats counts the topology gossip messages sent (lost ones included).
type vsimStats struct {
	Msgs, Bytes uint64
	ByTag       [16]uint64 // bytes by envelope tag
	Lost        uint64
}

func (a vsimStats) sub(b vsimStats) vsimStats {
	a.Msgs -= b.Msgs
	a.Bytes -= b.Bytes
	a.Lost -= b.Lost
	for i := range a.ByTag {
		a.ByTag[i] -= b.ByTag[i]
	}
	return a
}

type vsim struct {
	tb    testing.TB
	cfg   vsimConfig
	clk   *clocktest.Virtual
	rng   *rand.Rand
	log   *slog.Logger
	peers []*vpeer
	// busy counts messages and link events scheduled but not yet run.
	busy  int
	stats vsimStats
	gen   uint64 // link generations
	uids  uint64
	// intern shares identical entries between the peers' topologies, so
	// that thousands of them fit in memory.
	intern *topology.Interner
}

// vpeer is one run of peer i; a restart makes a new one with a new UID.
type vpeer struct {
	s     *vsim
	i     int
	peer  identity.Peer
	g     *topoGossip
	alive bool
	links map[int]uint64 // neighbour index -> link generation
}

func newVsim(tb testing.TB, cfg vsimConfig) *vsim {
	return &vsim{
		tb: tb, cfg: cfg,
		clk: clocktest.New(time.Time{}),
		rng: rand.New(rand.NewPCG(cfg.Seed, 0x5eed)),
		log: slog.New(slog.NewTextHandler(io.Discard, nil)),

		intern: topology.NewInterner(),
	}
}

// vname is the name of simulated peer i (not the test keys' names: the
// unsigned simulation needs no key, and 5,000 keys take a while).
func vname(i int) identity.PeerName { return identity.PeerName(0x020000000000 | uint64(i+1)) }

func vindex(n identity.PeerName) int { return int(n&0xffffffff) - 1 }

// start starts peer i (again, with a new UID, if it ran before).
func (s *vsim) start(i int) *vpeer {
	s.uids++
	p := &vpeer{s: s, i: i, alive: true, links: make(map[int]uint64),
		peer: identity.Peer{Name: vname(i), NickName: fmt.Sprintf("p%d", i), UID: identity.UID(s.uids)}}
	var topo *topology.Topology
	if s.cfg.Signed {
		p.peer.Name = name(i)
		var err error
		if topo, err = topology.NewSigned(p.peer, keyOf(i)); err != nil {
			s.tb.Fatal(err)
		}
	} else {
		topo = topology.New(p.peer)
	}
	topo.ShareEntries(s.intern)
	p.g = newTopoGossip(topo, gossipConfig{
		UpdateDelay:    s.cfg.UpdateDelay,
		GossipInterval: s.cfg.GossipInterval,
		RequestTimeout: s.cfg.RequestTimeout,
		Clock:          s.clk,
		Rand:           rand.New(rand.NewPCG(s.cfg.Seed, s.uids)),
		Log:            s.log,
	}, p, func(f func()) { f() })
	p.g.start()
	for len(s.peers) <= i {
		s.peers = append(s.peers, nil)
	}
	s.peers[i] = p
	return p
}

func (s *vsim) latency() time.Duration {
	return s.cfg.MinLatency + time.Duration(s.rng.Int64N(int64(s.cfg.MaxLatency-s.cfg.MinLatency)+1))
}

// later runs f after d on the virtual clock, counted as busy until then.
func (s *vsim) later(d time.Duration, f func()) {
	s.busy++
	s.clk.AfterFunc(d, func() { s.busy--; f() })
}

// sendTo implements gossipOutput: the message is counted, maybe lost, and
// delivered after a latency if the link is still the same by then.
func (p *vpeer) sendTo(to identity.PeerName, msg []byte) bool {
	s := p.s
	j := s.index(to)
	gen, ok := p.links[j]
	if !ok {
		return false
	}
	s.stats.Msgs++
	s.stats.Bytes += uint64(len(msg))
	s.stats.ByTag[msg[0]&15] += uint64(len(msg))
	if s.cfg.Loss > 0 && s.rng.Float64() < s.cfg.Loss {
		s.stats.Lost++
		return true
	}
	s.later(s.latency(), func() {
		q := s.peers[j]
		if q == nil || !q.alive || q.links[p.i] != gen {
			return
		}
		m, err := decodeTopoMsg(msg[0], msg[1:])
		if err != nil {
			s.tb.Errorf("peer %d sent peer %d an undecodable message: %v", p.i, j, err)
			return
		}
		q.g.receive(p.peer.Name, m)
	})
	return true
}

func (p *vpeer) topologyChanged([]*topology.Peer, []identity.PeerName) {}

func (s *vsim) index(n identity.PeerName) int {
	if s.cfg.Signed {
		return index(n)
	}
	return vindex(n)
}

// link brings up the link from i (dialler) to j after about a handshake.
func (s *vsim) link(i, j int) {
	s.later(3*s.latency(), func() {
		p, q := s.peers[i], s.peers[j]
		if !p.alive || !q.alive {
			return
		}
		if _, dup := p.links[j]; dup {
			return
		}
		s.gen++
		p.links[j], q.links[i] = s.gen, s.gen
		p.g.setLink(topology.Conn{Remote: q.peer.Name, RemoteAddr: addrOf(j), Outbound: true, Established: true})
		q.g.setLink(topology.Conn{Remote: p.peer.Name, RemoteAddr: addrOf(i), Established: true})
	})
}

// unlink takes the link between i and j down on both ends at once.
func (s *vsim) unlink(i, j int) {
	p, q := s.peers[i], s.peers[j]
	if _, ok := p.links[j]; !ok {
		return
	}
	delete(p.links, j)
	delete(q.links, i)
	p.g.dropLink(q.peer.Name)
	q.g.dropLink(p.peer.Name)
}

// kill stops peer i; its neighbours see its links go down.
func (s *vsim) kill(i int) {
	p := s.peers[i]
	for _, j := range sortedKeys(p.links) {
		s.unlink(i, j)
	}
	p.alive = false
	p.g.stop()
}

func sortedKeys(m map[int]uint64) []int {
	ks := make([]int, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	slices.Sort(ks)
	return ks
}

// graph returns the links that are up.
func (s *vsim) graph() graph {
	g := graph{}
	for _, p := range s.peers {
		if p == nil || !p.alive {
			continue
		}
		for j := range p.links {
			g.link(p.i, j)
		}
	}
	return g
}

func (s *vsim) alive() []*vpeer {
	var out []*vpeer
	for _, p := range s.peers {
		if p != nil && p.alive {
			out = append(out, p)
		}
	}
	return out
}

// settled reports whether nothing is in flight and no peer waits to
// publish or for an entry.
func (s *vsim) settled() bool {
	if s.busy > 0 {
		return false
	}
	for _, p := range s.peers {
		if p != nil && p.alive && !p.g.settled() {
			return false
		}
	}
	return true
}

// converged reports whether every live peer holds exactly the current
// entries (each as its owner holds it) of the live peers it can reach over
// links that are up: all of them in a connected mesh, its side's in a
// partition.
func (s *vsim) converged() bool {
	adj := s.adjacency()
	comp := make([]int, len(s.peers))
	for i := range comp {
		comp[i] = -1
	}
	var wants []topology.Summary
	for _, p := range s.alive() {
		if comp[p.i] >= 0 {
			continue
		}
		c := len(wants)
		want := make(topology.Summary)
		comp[p.i] = c
		q := []int{p.i}
		for len(q) > 0 {
			u := q[0]
			q = q[1:]
			pu := s.peers[u]
			st, _ := pu.g.topo.Stamp(pu.peer.Name)
			want[pu.peer.Name] = st
			for _, v := range adj[u] {
				if comp[v] < 0 {
					comp[v] = c
					q = append(q, v)
				}
			}
		}
		wants = append(wants, want)
	}
	digests := make([]uint64, len(wants))
	for i, w := range wants {
		digests[i] = w.Digest()
	}
	for _, p := range s.alive() {
		c := comp[p.i]
		if p.g.topo.Len() != len(wants[c]) || p.g.topo.Digest() != digests[c] {
			return false
		}
	}
	return true
}

// run steps the clock until the mesh has settled and converged, or limit
// (virtual) has passed; it returns the virtual time taken and whether it
// converged.
func (s *vsim) run(limit time.Duration) (time.Duration, bool) {
	start := s.clk.Now()
	end := start.Add(limit)
	for {
		for !s.settled() {
			if next, ok := s.clk.Next(); !ok || next.After(end) {
				return s.clk.Now().Sub(start), false
			}
			s.clk.Step()
		}
		if s.converged() {
			return s.clk.Now().Sub(start), true
		}
		// Settled but not converged: something was lost; anti-entropy
		// repairs it on its next round.
		if next, ok := s.clk.Next(); !ok || next.After(end) {
			return s.clk.Now().Sub(start), false
		}
		s.clk.Step()
	}
}

// mustConverge runs until converged and fails the test if it does not
// within limit.
func (s *vsim) mustConverge(limit time.Duration, what string) time.Duration {
	s.tb.Helper()
	d, ok := s.run(limit)
	if !ok {
		bad := 0
		for _, p := range s.alive() {
			if p.g.topo.Len() != len(s.alive()) {
				bad++
			}
		}
		s.tb.Fatalf("%s: not converged after %s virtual (%d of %d live peers hold a wrong number of entries; %s)", what, d, bad, len(s.alive()), s.explain())
	}
	return d
}

// startGraph starts n peers and links them as the dials say, all at once.
func (s *vsim) startGraph(n int, dials [][2]int) {
	for i := 0; i < n; i++ {
		s.start(i)
	}
	for _, d := range dials {
		s.link(d[0], d[1])
	}
}

// checkVsimRoutes compares the unicast routes that each of the given peers
// computes from its own topology with shortest paths over the links that
// are up: the next hop must be the lowest-named neighbour one hop closer
// (the rule of checkRoutes).
func checkVsimRoutes(tb testing.TB, s *vsim, sources []*vpeer) {
	tb.Helper()
	adj := s.adjacency()
	dists := make(map[int][]int32)
	distFrom := func(i int) []int32 {
		if d, ok := dists[i]; ok {
			return d
		}
		d := bfs32(adj, i)
		dists[i] = d
		return d
	}
	bad := 0
	fail := func(format string, args ...any) {
		if bad++; bad <= 10 {
			tb.Errorf(format, args...)
		}
	}
	for _, p := range sources {
		routes := p.g.topo.Routes()
		du := distFrom(p.i)
		for dst, dd := range du {
			if dst == p.i || s.peers[dst] == nil || !s.peers[dst].alive {
				continue
			}
			dn := s.peers[dst].peer.Name
			next, ok := routes.Unicast(dn)
			if dd < 0 {
				if ok {
					fail("peer %d routes to unreachable %d", p.i, dst)
				}
				continue
			}
			want := identity.UnknownPeer
			for _, v := range adj[p.i] {
				if distFrom(v)[dst] == dd-1 {
					if vn := s.peers[v].peer.Name; want == identity.UnknownPeer || vn < want {
						want = vn
					}
				}
			}
			if !ok || next != want {
				fail("peer %d to %d: next hop %v (ok=%v), want %v", p.i, dst, next, ok, want)
			}
			if h, _ := routes.Distance(dn); h != int(dd) {
				fail("peer %d to %d: distance %d, want %d", p.i, dst, h, dd)
			}
		}
	}
}

// adjacency returns the links that are up as adjacency lists.
func (s *vsim) adjacency() [][]int {
	adj := make([][]int, len(s.peers))
	for _, p := range s.peers {
		if p != nil && p.alive {
			adj[p.i] = sortedKeys(p.links)
		}
	}
	return adj
}

// bfs32 returns hop counts from src (-1: unreachable).
func bfs32(adj [][]int, src int) []int32 {
	dist := make([]int32, len(adj))
	for i := range dist {
		dist[i] = -1
	}
	dist[src] = 0
	q := []int{src}
	for len(q) > 0 {
		u := q[0]
		q = q[1:]
		for _, v := range adj[u] {
			if dist[v] < 0 {
				dist[v] = dist[u] + 1
				q = append(q, v)
			}
		}
	}
	return dist
}

func keyOf(i int) *identity.Key { return meshtest.Key(i) }

// explain describes how the first peer whose view is wrong differs from
// its owners' entries, for failure messages.
func (s *vsim) explain() string {
	owner := make(map[identity.PeerName]*vpeer)
	for _, p := range s.alive() {
		owner[p.peer.Name] = p
	}
	for _, p := range s.alive() {
		var extra, stale []string
		for _, e := range p.g.topo.Peers() {
			o := owner[e.Name]
			if o == nil {
				extra = append(extra, fmt.Sprintf("%d(uid %d v%d)", s.index(e.Name), e.UID, e.Version))
				continue
			}
			if st, _ := o.g.topo.Stamp(e.Name); st != topology.StampOf(&e) {
				stale = append(stale, fmt.Sprintf("%d(v%d/%d, owner v%d/%d)", o.i, e.Version, e.UID, st.Version, st.UID))
			}
		}
		if len(extra)+len(stale) > 0 {
			return fmt.Sprintf("peer %d (settled %v, %d wanted, needs gc %v, lost %v, gc would remove %d) holds dead %v, stale %v",
				p.i, p.g.settled(), len(p.g.wanted), p.g.topo.NeedsGC(), p.g.topo.LostConns(), len(p.g.topo.GC()), extra, stale)
		}
	}
	return "all views are subsets of the owners' entries"
}
