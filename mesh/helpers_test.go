package mesh

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/weavelab/weave/mesh/identity"
	"github.com/weavelab/weave/mesh/meshtest"
)

var _ Transport = (*meshtest.Host)(nil)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// testLogger discards logs unless MESH_TEST_LOG is set.
func testLogger() *slog.Logger {
	if os.Getenv("MESH_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// fastConfig returns a config with short timings for peer number i on the
// in-memory network host h.
func fastConfig(i int, h *meshtest.Host) Config {
	cfg := DefaultConfig()
	cfg.Key = meshtest.Key(i)
	cfg.Peer = identity.Peer{Name: name(i), NickName: fmt.Sprintf("p%d", i), UID: identity.UID(1000 + i)}
	cfg.Transport = h
	cfg.Logger = testLogger()
	cfg.HeartbeatInterval = 50 * time.Millisecond
	cfg.DeadAfter = 40
	cfg.HandshakeTimeout = 5 * time.Second
	cfg.BackoffBase = 10 * time.Millisecond
	cfg.BackoffMax = 200 * time.Millisecond
	cfg.GossipInterval = 100 * time.Millisecond
	cfg.ConnLimit = 0
	return cfg
}

// sim is a set of routers on one in-memory network.
type sim struct {
	tb      testing.TB
	net     *meshtest.Network
	routers []*Router
}

func newSim(tb testing.TB) *sim {
	return &sim{tb: tb, net: meshtest.NewNetwork()}
}

func hostIP(i int) string { i++; return fmt.Sprintf("10.%d.%d.%d", i>>16&0xff, i>>8&0xff, i&0xff) }

func addrOf(i int) string { return fmt.Sprintf("%s:%d", hostIP(i), DefaultPort) }

// start starts router number i, with cfg adjusted by mod.
func (s *sim) start(i int, mod func(*Config)) *Router {
	s.tb.Helper()
	cfg := fastConfig(i, s.net.Host(hostIP(i)))
	if mod != nil {
		mod(&cfg)
	}
	r, err := New(cfg)
	if err != nil {
		s.tb.Fatal(err)
	}
	if err := r.Start(context.Background()); err != nil {
		s.tb.Fatal(err)
	}
	s.tb.Cleanup(func() { r.Close() })
	for len(s.routers) <= i {
		s.routers = append(s.routers, nil)
	}
	s.routers[i] = r
	return r
}

func (s *sim) connect(from int, to ...int) {
	s.tb.Helper()
	var addrs []string
	for _, t := range to {
		addrs = append(addrs, addrOf(t))
	}
	if err := s.routers[from].Connect(addrs, false); err != nil {
		s.tb.Fatal(err)
	}
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(tb testing.TB, timeout time.Duration, what string, cond func() bool) {
	tb.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// connected reports whether r has an established connection to peer.
func connected(r *Router, peer identity.PeerName) bool {
	for _, c := range r.Status().Connections {
		if c.Peer.Name == peer && c.State == StateEstablished {
			return true
		}
	}
	return false
}

func name(i int) identity.PeerName { return meshtest.Name(i) }

// index is the inverse of name: the test peer number whose key names p.
func index(p identity.PeerName) int {
	indexOf.Lock()
	defer indexOf.Unlock()
	if indexOf.m == nil {
		indexOf.m = make(map[identity.PeerName]int)
	}
	for {
		if i, ok := indexOf.m[p]; ok {
			return i
		}
		if indexOf.next > 10000 {
			return -1
		}
		indexOf.m[name(indexOf.next)] = indexOf.next
		indexOf.next++
	}
}

var indexOf struct {
	sync.Mutex
	m    map[identity.PeerName]int
	next int
}

// digest returns r's topology digest and size; ok is false while changes
// wait to be published or fetched (the routes may lag the topology).
func (r *Router) digest() (d uint64, n int, ok bool) {
	ok = r.call(func() {
		d, n = r.topo.Digest(), r.topo.Len()
		ok = r.gossip.settled()
	}) && ok
	return d, n, ok
}

// knows reports whether r's topology has an entry for name.
func (r *Router) knows(name identity.PeerName) bool {
	var found bool
	r.call(func() { _, found = r.topo.Get(name) })
	return found
}
