package replicate_test

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"

	"github.com/weavelab/weave/dns/replicate"
	"github.com/weavelab/weave/dns/replicate/replicatetest"
	"github.com/weavelab/weave/mesh/identity"
)

// setState is a toy State: a set of items, each with the peer that added
// it, merged by union. Deltas and full states are both lines of
// "origin item". Like the DNS name table, it drops a departed peer's
// items and refuses them until the peer is back.
type setState struct {
	mu       sync.Mutex
	items    map[string]identity.PeerName
	departed map[identity.PeerName]bool
}

var _ replicate.State = (*setState)(nil)

func newSetState() *setState {
	return &setState{items: make(map[string]identity.PeerName), departed: make(map[identity.PeerName]bool)}
}

func encodeItems(m map[string]identity.PeerName) []byte {
	var b bytes.Buffer
	for _, item := range slices.Sorted(maps.Keys(m)) {
		fmt.Fprintf(&b, "%s %s\n", m[item], item)
	}
	return b.Bytes()
}

func (s *setState) FullState() []byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	return encodeItems(s.items)
}

func (s *setState) Merge(_ identity.PeerName, data []byte) error {
	parsed := make(map[string]identity.PeerName)
	for line := range strings.Lines(string(data)) {
		origin, item, ok := strings.Cut(strings.TrimSuffix(line, "\n"), " ")
		p, err := identity.ParsePeerName(origin)
		if !ok || err != nil || item == "" {
			return fmt.Errorf("bad line %q", line)
		}
		parsed[item] = p
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for item, p := range parsed {
		if !s.departed[p] {
			s.items[item] = p
		}
	}
	return nil
}

// add records an item of ours and returns the delta announcing it.
func (s *setState) add(origin identity.PeerName, item string) []byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.items[item] = origin
	return encodeItems(map[string]identity.PeerName{item: origin})
}

// drop forgets a departed peer's items, as the DNS layer does on OnLeave.
func (s *setState) drop(origin identity.PeerName) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.departed[origin] = true
	for item, p := range s.items {
		if p == origin {
			delete(s.items, item)
		}
	}
}

// back accepts a returning peer's items again.
func (s *setState) back(origin identity.PeerName) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.departed, origin)
}

func (s *setState) has(items ...string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, it := range items {
		if _, ok := s.items[it]; !ok {
			return false
		}
	}
	return true
}

func (s *setState) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.items)
}

// node is one router's replicator in a test cluster.
type node struct {
	name  identity.PeerName
	rep   *replicate.Replicator
	state *setState

	mu   sync.Mutex
	gone map[identity.PeerName]bool // OnLeave and no OnJoin since
}

func (n *node) isGone(p identity.PeerName) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.gone[p]
}

type cluster struct {
	tb    testing.TB
	f     *replicatetest.Fabric
	tune  func(*memberlist.Config)
	nodes []*node
}

// testLogger discards logs unless REPLICATE_TEST_LOG is set.
func testLogger() *slog.Logger {
	if os.Getenv("REPLICATE_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.DiscardHandler)
}

// testMemberlistConfig scales memberlist's timings down for tests.
func testMemberlistConfig() *memberlist.Config {
	c := replicate.DefaultMemberlistConfig()
	c.ProbeInterval = 200 * time.Millisecond
	c.ProbeTimeout = 100 * time.Millisecond
	c.GossipInterval = 20 * time.Millisecond
	c.PushPullInterval = 500 * time.Millisecond
	c.SuspicionMult = 3
	c.TCPTimeout = 2 * time.Second
	c.GossipToTheDeadTime = 500 * time.Millisecond
	return c
}

// noAntiEntropy turns periodic push/pull off. That is anti-entropy for
// membership too, so it also slows failure detection down, lest a loaded
// machine declare a peer dead and some other peer never hear it is back.
func noAntiEntropy(m *memberlist.Config) {
	m.PushPullInterval = 0
	m.ProbeInterval = 500 * time.Millisecond
	m.ProbeTimeout = 400 * time.Millisecond
	m.SuspicionMult = 8
}

func newCluster(tb testing.TB, opts replicatetest.Options, tune func(*memberlist.Config)) *cluster {
	f := replicatetest.New(opts)
	tb.Cleanup(f.Close)
	return &cluster{tb: tb, f: f, tune: tune}
}

// start adds a node named peer(i) (not yet joined to anyone).
func (c *cluster) start(i int) *node {
	c.tb.Helper()
	n := &node{name: peer(i), state: newSetState(), gone: make(map[identity.PeerName]bool)}
	cfg := replicate.DefaultConfig()
	cfg.Self = n.name
	cfg.State = n.state
	cfg.Connect = c.f.Connect(n.name)
	cfg.Logger = testLogger().With("self", n.name.String())
	cfg.Transport = testTransportConfig()
	cfg.Memberlist = testMemberlistConfig()
	if c.tune != nil {
		c.tune(cfg.Memberlist)
	}
	cfg.OnJoin = func(p identity.PeerName) {
		n.state.back(p)
		n.mu.Lock()
		delete(n.gone, p)
		n.mu.Unlock()
	}
	cfg.OnLeave = func(p identity.PeerName) {
		n.state.drop(p)
		n.mu.Lock()
		n.gone[p] = true
		n.mu.Unlock()
	}
	rep, err := replicate.New(cfg)
	if err != nil {
		c.tb.Fatal(err)
	}
	c.tb.Cleanup(func() { _ = rep.Shutdown() })
	n.rep = rep
	c.nodes = append(c.nodes, n)
	return n
}

func (c *cluster) names() []identity.PeerName {
	var out []identity.PeerName
	for _, n := range c.nodes {
		out = append(out, n.name)
	}
	return out
}

// joinAll has every node join every other, as the daemon does with the
// mesh's reachable peers whenever they change, until all count all alive.
// Joins may fail on a loaded machine (a push/pull times out); the daemon
// would try again at the next change, and so does joinAll.
func (c *cluster) joinAll(nodes ...*node) {
	c.tb.Helper()
	all := c.names()
	full := func() bool {
		for _, n := range nodes {
			if len(n.rep.Members()) != len(nodes) {
				return false
			}
		}
		return true
	}
	deadline := time.Now().Add(20 * time.Second)
	for !full() {
		if time.Now().After(deadline) {
			c.tb.Fatal("no full membership after 20s")
		}
		for _, n := range nodes {
			if len(n.rep.Members()) == len(nodes) {
				continue
			}
			if _, err := n.rep.Join(all); err != nil {
				c.tb.Logf("%s join (will retry): %v", n.name, err)
			}
		}
		waitFor(c.tb, 2*time.Second, "", full, true)
	}
}

// waitFor polls cond until it holds or timeout passes, which is fatal
// unless soft is given, and returns how long it waited.
func waitFor(tb testing.TB, timeout time.Duration, what string, cond func() bool, soft ...bool) time.Duration {
	tb.Helper()
	start := time.Now()
	for !cond() {
		if time.Since(start) > timeout {
			if len(soft) > 0 && soft[0] {
				break
			}
			tb.Fatalf("no %s after %v", what, timeout)
		}
		time.Sleep(5 * time.Millisecond)
	}
	return time.Since(start)
}

func TestBroadcastReachesAll(t *testing.T) {
	// No periodic push/pull: only broadcasts can spread the items.
	c := newCluster(t, replicatetest.Options{Delay: time.Millisecond}, noAntiEntropy)
	for i := range 5 {
		c.start(i)
	}
	c.joinAll(c.nodes...)

	src := c.nodes[2]
	if err := src.rep.Broadcast(src.state.add(src.name, "db.weave.local")); err != nil {
		t.Fatal(err)
	}
	d := waitFor(t, 5*time.Second, "broadcast everywhere", func() bool {
		for _, n := range c.nodes {
			if !n.state.has("db.weave.local") {
				return false
			}
		}
		return true
	})
	t.Logf("one broadcast reached 5 nodes in %v", d)

	// A few from everyone.
	burst(t, c, 4)
}

// TestBroadcastBurst sends 100 deltas at once. Broadcasts are best effort
// (memberlist drops user messages when its handler queue is full, as on a
// loaded machine), so this runs with push/pull, as in production.
func TestBroadcastBurst(t *testing.T) {
	c := newCluster(t, replicatetest.Options{Delay: time.Millisecond}, nil)
	for i := range 5 {
		c.start(i)
	}
	c.joinAll(c.nodes...)
	burst(t, c, 20)
}

// burst has every node broadcast perNode deltas at once and waits until
// all have all of them.
func burst(t *testing.T, c *cluster, perNode int) {
	t.Helper()
	var want []string
	for i, n := range c.nodes {
		for j := range perNode {
			item := fmt.Sprintf("n%d-%d", i, j)
			want = append(want, item)
			if err := n.rep.Broadcast(n.state.add(n.name, item)); err != nil {
				t.Fatal(err)
			}
		}
	}
	defer func() {
		if t.Failed() {
			for _, n := range c.nodes {
				var missing []string
				for _, it := range want {
					if !n.state.has(it) {
						missing = append(missing, it)
					}
				}
				n.mu.Lock()
				t.Logf("%s members %v gone %v missing %v", n.name, n.rep.Members(), n.gone, missing)
				n.mu.Unlock()
			}
		}
	}()
	d := waitFor(t, 10*time.Second, "all broadcasts everywhere", func() bool {
		for _, n := range c.nodes {
			if !n.state.has(want...) {
				return false
			}
		}
		return true
	})
	t.Logf("%d broadcasts reached %d nodes in %v", len(want), len(c.nodes), d)
}

func TestLateJoinerGetsEverything(t *testing.T) {
	// No periodic push/pull: only the join's can bring old items.
	c := newCluster(t, replicatetest.Options{}, noAntiEntropy)
	for i := range 3 {
		c.start(i)
	}
	c.joinAll(c.nodes...)
	var early []string
	for _, n := range c.nodes {
		item := "early-" + n.name.String()
		early = append(early, item)
		n.rep.Broadcast(n.state.add(n.name, item))
	}
	waitFor(t, 5*time.Second, "early items everywhere", func() bool {
		for _, n := range c.nodes {
			if !n.state.has(early...) {
				return false
			}
		}
		return true
	})

	late := c.start(3)
	late.state.add(late.name, "late-state") // not broadcast: push/pull must carry it
	if n, err := late.rep.Join([]identity.PeerName{c.nodes[0].name}); n != 1 || err != nil {
		t.Fatalf("join = %d, %v", n, err)
	}
	// The join's push/pull normally merges everything before Join returns;
	// a peer wrongly declared dead on a loaded machine can delay it.
	d := waitFor(t, 5*time.Second, "old items at the late joiner", func() bool {
		return late.state.has(early...)
	})
	t.Logf("late joiner had the old items %v after Join returned", d)
	d = waitFor(t, 5*time.Second, "late joiner's state at the peer it joined", func() bool {
		return c.nodes[0].state.has("late-state")
	})
	t.Logf("joined peer had the late state after %v", d)
	late.rep.Broadcast(late.state.add(late.name, "late-delta"))
	d = waitFor(t, 5*time.Second, "late member and delta everywhere", func() bool {
		for _, n := range c.nodes {
			if !n.state.has("late-delta") || len(n.rep.Members()) != 4 {
				return false
			}
		}
		return true
	})
	t.Logf("late member and delta reached everyone in %v", d)
}

func TestPartitionHeals(t *testing.T) {
	c := newCluster(t, replicatetest.Options{}, nil)
	for i := range 4 {
		c.start(i)
	}
	c.joinAll(c.nodes...)
	a, b := c.nodes[:2], c.nodes[2:]
	names := func(ns []*node) []identity.PeerName {
		var out []identity.PeerName
		for _, n := range ns {
			out = append(out, n.name)
		}
		return out
	}
	c.f.Partition(names(a), names(b))
	d := waitFor(t, 10*time.Second, "each side to declare the other gone", func() bool {
		for _, n := range c.nodes {
			if len(n.rep.Members()) != 2 {
				return false
			}
		}
		return true
	})
	t.Logf("partition detected in %v", d)
	a[0].rep.Broadcast(a[0].state.add(a[0].name, "side-a"))
	b[0].rep.Broadcast(b[0].state.add(b[0].name, "side-b"))
	waitFor(t, 5*time.Second, "items within each side", func() bool {
		return a[1].state.has("side-a") && b[1].state.has("side-b")
	})
	if a[1].state.has("side-b") || b[1].state.has("side-a") {
		t.Fatal("an item crossed the partition")
	}
	if !a[0].isGone(b[0].name) {
		t.Fatal("no OnLeave across the partition")
	}

	c.f.Heal()
	for _, n := range c.nodes { // the daemon re-joins when routes come back
		if _, err := n.rep.Join(c.names()); err != nil {
			t.Logf("%s join: %v", n.name, err) // racing joins may fail; others succeed
		}
	}
	d = waitFor(t, 10*time.Second, "convergence after healing", func() bool {
		for _, n := range c.nodes {
			if len(n.rep.Members()) != 4 || !n.state.has("side-a", "side-b") {
				return false
			}
		}
		return true
	})
	t.Logf("converged %v after healing", d)
}

func TestDepartureTriggersOnLeave(t *testing.T) {
	for _, tc := range []struct {
		name     string
		graceful bool
		bound    time.Duration
	}{
		// Failure detection: a probe round, then suspicion
		// (SuspicionMult·log10(n)·ProbeInterval, longer without
		// confirmations).
		{"shutdown", false, 10 * time.Second},
		// A leave message is gossiped at once.
		{"leave", true, 3 * time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newCluster(t, replicatetest.Options{}, nil)
			for i := range 4 {
				c.start(i)
			}
			c.joinAll(c.nodes...)
			gone := c.nodes[3]
			gone.rep.Broadcast(gone.state.add(gone.name, "doomed"))
			waitFor(t, 5*time.Second, "the item everywhere", func() bool {
				return c.nodes[0].state.has("doomed") && c.nodes[1].state.has("doomed") && c.nodes[2].state.has("doomed")
			})
			if tc.graceful {
				if err := gone.rep.Leave(5 * time.Second); err != nil {
					t.Fatal(err)
				}
			}
			if err := gone.rep.Shutdown(); err != nil {
				t.Fatal(err)
			}
			c.f.Endpoint(gone.name).Bind(nil)
			d := waitFor(t, tc.bound, "OnLeave everywhere", func() bool {
				for _, n := range c.nodes[:3] {
					if !n.isGone(gone.name) {
						return false
					}
				}
				return true
			})
			t.Logf("OnLeave at all 3 peers %v after the %s", d, tc.name)
			for _, n := range c.nodes[:3] {
				if n.state.has("doomed") {
					t.Fatalf("%s kept the departed peer's item", n.name)
				}
				if slices.Contains(n.rep.Members(), gone.name) {
					t.Fatalf("%s still counts the departed peer", n.name)
				}
			}
		})
	}
}

func TestReplicatorErrors(t *testing.T) {
	c := newCluster(t, replicatetest.Options{}, nil)
	// A bare config takes the defaults; a config without State does not go.
	bare, err := replicate.New(replicate.Config{Self: peer(5), State: newSetState(), Connect: c.f.Connect(peer(5))})
	if err != nil {
		t.Fatal(err)
	}
	if err := bare.Shutdown(); err != nil {
		t.Fatal(err)
	}
	if _, err := replicate.New(replicate.Config{Self: peer(6), Connect: c.f.Connect(peer(6))}); err == nil {
		t.Fatal("config without State accepted")
	}
	n := c.start(0)
	if err := n.rep.Broadcast(make([]byte, 64<<10)); !errors.Is(err, replicate.ErrTooLarge) {
		t.Fatalf("big broadcast: %v", err)
	}
	if err := n.rep.Broadcast(nil); err == nil {
		t.Fatal("empty broadcast accepted")
	}
	// Joining only ourselves, or nobody, contacts nobody.
	if j, err := n.rep.Join([]identity.PeerName{n.name}); j != 0 || err != nil {
		t.Fatalf("join self = %d, %v", j, err)
	}
	// A peer that never answers fails within TCPTimeout.
	c.f.Endpoint(peer(7))
	start := time.Now()
	if j, err := n.rep.Join([]identity.PeerName{peer(7)}); j != 0 || err == nil {
		t.Fatalf("join of a silent peer = %d, %v", j, err)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Fatalf("join took %v, want about TCPTimeout", d)
	}
	if got := n.rep.Members(); !slices.Equal(got, []identity.PeerName{n.name}) {
		t.Fatalf("members %v", got)
	}
	if err := n.rep.Shutdown(); err != nil {
		t.Fatal(err)
	}
	if err := n.rep.Broadcast([]byte("x")); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("broadcast after shutdown: %v", err)
	}
	if err := n.rep.Leave(time.Second); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("leave after shutdown: %v", err)
	}
	if err := n.rep.Shutdown(); err != nil {
		t.Fatalf("second shutdown: %v", err)
	}
	if errs := c.f.Errors(); len(errs) > 0 {
		t.Fatalf("receivers rejected messages: %v", errs)
	}
}
