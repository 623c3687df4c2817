package ipam

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/weavelab/weave/mesh"
	"github.com/weavelab/weave/mesh/identity"
)

// memNet carries Allocators' messages like the mesh's gossip channel:
// Broadcast and Unicast only queue (so the actor that calls them never
// blocks), and one goroutine delivers in order to OnGossip and OnUnicast.
// Peers in down are unreachable: they neither send nor receive.
type memNet struct {
	mu       sync.Mutex
	cond     *sync.Cond
	peers    map[identity.PeerName]*Allocator
	down     map[identity.PeerName]bool
	queue    []memMsg
	inflight int // queued or being delivered
	// dropUnicast, when set, says whether to lose a unicast.
	dropUnicast func(src, dst identity.PeerName, msg []byte) bool
	closed      bool
	done        chan struct{}
}

type memMsg struct {
	src, dst identity.PeerName // dst 0: broadcast
	msg      []byte
}

func newMemNet(tb testing.TB) *memNet {
	n := &memNet{peers: make(map[identity.PeerName]*Allocator), down: make(map[identity.PeerName]bool), done: make(chan struct{})}
	n.cond = sync.NewCond(&n.mu)
	go n.run()
	tb.Cleanup(n.close)
	return n
}

func (n *memNet) close() {
	n.mu.Lock()
	n.closed = true
	n.cond.Broadcast()
	n.mu.Unlock()
	<-n.done
}

func (n *memNet) run() {
	defer close(n.done)
	for {
		n.mu.Lock()
		for len(n.queue) == 0 && !n.closed {
			n.cond.Wait()
		}
		if n.closed {
			n.mu.Unlock()
			return
		}
		m := n.queue[0]
		n.queue = n.queue[1:]
		var dsts []*Allocator
		for name, a := range n.peers {
			if name != m.src && !n.down[name] && !n.down[m.src] && (m.dst == 0 || m.dst == name) {
				dsts = append(dsts, a)
			}
		}
		n.mu.Unlock()
		for _, a := range dsts {
			if m.dst == 0 {
				a.OnGossip(m.src, m.msg)
			} else {
				a.OnUnicast(m.src, m.msg)
			}
		}
		n.mu.Lock()
		n.inflight--
		n.cond.Broadcast()
		n.mu.Unlock()
	}
}

// sender is one peer's end of the network: a Sender.
type sender struct {
	n  *memNet
	us identity.PeerName
}

var _ Sender = sender{}

func (s sender) Broadcast(msg []byte) { s.n.enqueue(memMsg{src: s.us, msg: msg}) }

func (s sender) Unicast(dst identity.PeerName, msg []byte) error {
	s.n.mu.Lock()
	_, ok := s.n.peers[dst]
	ok = ok && !s.n.down[dst] && !s.n.down[s.us]
	drop := s.n.dropUnicast != nil && s.n.dropUnicast(s.us, dst, msg)
	s.n.mu.Unlock()
	if !ok {
		return fmt.Errorf("gossip to %s: %w", dst, mesh.ErrNoRoute)
	}
	if !drop {
		s.n.enqueue(memMsg{src: s.us, dst: dst, msg: msg})
	}
	return nil
}

func (n *memNet) enqueue(m memMsg) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.closed {
		return
	}
	n.queue = append(n.queue, m)
	n.inflight++
	n.cond.Broadcast()
}

func (n *memNet) reachable(from identity.PeerName) func(identity.PeerName) bool {
	return func(p identity.PeerName) bool {
		n.mu.Lock()
		defer n.mu.Unlock()
		_, ok := n.peers[p]
		return ok && p != from && !n.down[p] && !n.down[from]
	}
}

func (n *memNet) peerList(from identity.PeerName) func() []identity.PeerName {
	return func() []identity.PeerName {
		n.mu.Lock()
		defer n.mu.Unlock()
		var out []identity.PeerName
		for p := range n.peers {
			if p != from && !n.down[p] && !n.down[from] {
				out = append(out, p)
			}
		}
		return out
	}
}

func (n *memNet) setDown(p identity.PeerName, down bool) {
	n.mu.Lock()
	n.down[p] = down
	n.mu.Unlock()
}

// quiet waits until no message is in flight and no actor has any left to
// send: a call through each actor runs after its previous settle, so two
// rounds of calls that find nothing in flight mean nothing is coming.
func (n *memNet) quiet(tb testing.TB) {
	tb.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		n.mu.Lock()
		for n.inflight > 0 && time.Now().Before(deadline) {
			n.cond.Wait()
		}
		stuck := n.inflight > 0
		peers := make([]*Allocator, 0, len(n.peers))
		for _, a := range n.peers {
			peers = append(peers, a)
		}
		n.mu.Unlock()
		if stuck {
			tb.Fatal("messages still in flight after 20s")
		}
		for range 2 {
			for _, a := range peers {
				a.Status()
			}
		}
		n.mu.Lock()
		idle := n.inflight == 0
		n.mu.Unlock()
		if idle {
			return
		}
	}
}

// gossip sends every peer's whole state to every other, as periodic
// gossip would, and waits until quiet.
func (n *memNet) gossip(tb testing.TB) {
	tb.Helper()
	n.mu.Lock()
	for name, a := range n.peers {
		if !n.down[name] {
			n.queue = append(n.queue, memMsg{src: name, msg: a.Gossip()})
			n.inflight++
		}
	}
	n.cond.Broadcast()
	n.mu.Unlock()
	n.quiet(tb)
}

// fakeClock is a settable clock for Config.Now.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// config is an Allocator's configuration on the network n.
func (n *memNet) config(name identity.PeerName, rng string, quorum int) Config {
	return Config{
		Peer:      name,
		Range:     pfx(rng),
		Quorum:    quorum,
		Reachable: n.reachable(name),
		Peers:     n.peerList(name),
		Tick:      5 * time.Millisecond,
	}
}

// start creates and starts an Allocator on n, closed at the test's end.
// It joins the network once started, and exchanges whole states with
// every peer, as mesh neighbours do when they connect. (Joining before
// Start returns would race with Start: see TestAllocatorStartRace.)
func (n *memNet) start(tb testing.TB, cfg Config) *Allocator {
	tb.Helper()
	a, err := New(cfg)
	if err != nil {
		tb.Fatal(err)
	}
	a.Start(context.Background(), sender{n: n, us: cfg.Peer})
	tb.Cleanup(func() { a.Close() })
	n.mu.Lock()
	n.peers[cfg.Peer] = a
	for name, b := range n.peers {
		if name != cfg.Peer && !n.down[name] {
			n.queue = append(n.queue, memMsg{src: name, dst: 0, msg: b.Gossip()}, memMsg{src: cfg.Peer, msg: a.Gossip()})
			n.inflight += 2
		}
	}
	n.cond.Broadcast()
	n.mu.Unlock()
	return a
}

// stop closes a and takes it off the network.
func (n *memNet) stop(a *Allocator) {
	a.Close()
	n.mu.Lock()
	delete(n.peers, a.cfg.Peer)
	n.mu.Unlock()
}

func ctxTimeout(tb testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	tb.Cleanup(cancel)
	return ctx
}
