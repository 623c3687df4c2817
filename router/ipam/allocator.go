package ipam

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/weavelab/weave/mesh"
	"github.com/weavelab/weave/mesh/identity"
)

// Defaults, as in Weave Net.
var DefaultRange = netip.MustParsePrefix("10.32.0.0/12")

const (
	// DefaultGrace is how long a dead container's addresses wait for it
	// to come back before they are freed.
	DefaultGrace = 30 * time.Second
	// ChannelName is the gossip channel the allocators replicate on.
	ChannelName = "ipam"
)

// Sender sends on the gossip channel; *mesh.GossipChannel is one.
type Sender interface {
	Broadcast(update []byte)
	Unicast(dst identity.PeerName, msg []byte) error
}

// Config configures an Allocator. Zero fields take defaults.
type Config struct {
	Peer identity.PeerName
	// Range is --ipalloc-range (default 10.32.0.0/12); DefaultSubnet is
	// what an allocation with no subnet comes from (default Range).
	Range         netip.Prefix
	DefaultSubnet netip.Prefix
	// Quorum of the seeding consensus (default 1).
	Quorum   int
	Observer bool
	// Grace before a dead container's addresses are freed.
	Grace    time.Duration
	StateDir string
	// Reachable tells whether the mesh has a route to a peer; Peers lists
	// the peers reachable now. Both are called from the actor.
	Reachable func(identity.PeerName) bool
	Peers     func() []identity.PeerName
	// Tick is how often held addresses are checked and stalled requests
	// retried (default 500ms).
	Tick   time.Duration
	Now    func() time.Time
	Logger *slog.Logger
}

func (c Config) withDefaults() Config {
	if !c.Range.IsValid() {
		c.Range = DefaultRange
	}
	c.Range = c.Range.Masked()
	if !c.DefaultSubnet.IsValid() {
		c.DefaultSubnet = c.Range
	}
	c.DefaultSubnet = c.DefaultSubnet.Masked()
	if c.Quorum < 1 {
		c.Quorum = 1
	}
	if c.Grace == 0 {
		c.Grace = DefaultGrace
	}
	if c.Reachable == nil {
		c.Reachable = func(identity.PeerName) bool { return true }
	}
	if c.Peers == nil {
		c.Peers = func() []identity.PeerName { return nil }
	}
	if c.Tick == 0 {
		c.Tick = 500 * time.Millisecond
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c
}

// Allocator hands out addresses to this peer's containers from the ring it
// replicates with every other peer over the mesh's gossip channel. One
// actor goroutine owns the Core; every method hands it a closure. It
// implements mesh.Gossiper.
type Allocator struct {
	cfg     Config
	log     *slog.Logger
	core    *Core
	defSub  Subnet
	actions chan func()
	ctx     context.Context
	cancel  context.CancelFunc
	wg      sync.WaitGroup
	started atomic.Bool
	gossip  atomic.Pointer[[]byte]

	// Owned by the actor.
	send    Sender
	pending []*request
}

var _ mesh.Gossiper = (*Allocator)(nil)

// request is an allocation or claim waiting for space.
type request struct {
	id     string
	subnet Subnet       // allocate from this subnet, or
	claim  netip.Prefix // claim this static address
	reply  chan result  // buffered; gets exactly one result
	why    error        // the last reason it had to wait
}

type result struct {
	p   netip.Prefix
	err error
}

// New checks cfg and loads the state dir's allocations; it does not start.
func New(cfg Config) (*Allocator, error) {
	cfg = cfg.withDefaults()
	core, err := NewCore(CoreConfig{Us: cfg.Peer, Range: cfg.Range, Quorum: cfg.Quorum, Observer: cfg.Observer, Reachable: cfg.Reachable})
	if err != nil {
		return nil, err
	}
	def, err := core.CheckSubnet(cfg.DefaultSubnet)
	if err != nil {
		return nil, fmt.Errorf("default subnet: %w", err)
	}
	p, ok, err := loadFile(cfg.StateDir)
	if err != nil {
		return nil, err
	}
	if ok {
		if p.Peer != cfg.Peer {
			cfg.Logger.Warn("ipam: ignoring the state of another peer name", "file_peer", p.Peer.String())
		} else if err := core.restore(p); err != nil {
			return nil, fmt.Errorf("ipam state: %w", err)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	a := &Allocator{cfg: cfg, log: cfg.Logger, core: core, defSub: def, actions: make(chan func(), 256), ctx: ctx, cancel: cancel}
	a.publish()
	return a, nil
}

// Start runs the actor until ctx ends or Close; send carries its messages.
func (a *Allocator) Start(ctx context.Context, send Sender) {
	if !a.started.CompareAndSwap(false, true) {
		return
	}
	a.send = send
	st := a.core.Status() // before the actor owns the Core
	stop := context.AfterFunc(ctx, a.cancel)
	a.wg.Add(1)
	go func() {
		defer a.wg.Done()
		defer stop()
		a.loop()
	}()
	a.log.Info("ipam started", "range", a.cfg.Range, "default_subnet", a.cfg.DefaultSubnet, "state", st.State, "allocated", st.Allocated, "quorum", a.cfg.Quorum)
}

// Close stops the actor and waits for it; pending requests fail.
func (a *Allocator) Close() error {
	a.cancel()
	a.wg.Wait()
	return nil
}

func (a *Allocator) loop() {
	t := time.NewTicker(a.cfg.Tick)
	defer t.Stop()
	// Say who we are to the neighbours we have.
	a.core.broadcast()
	a.settle()
	// Settle after each burst of actions, and at least every
	// settleEvery actions under steady traffic, so that waiting requests
	// are retried and changes saved.
	const settleEvery = 32
	unsettled := 0
	for {
		select {
		case f := <-a.actions:
			f()
		case <-t.C:
			for _, al := range a.core.Tick(a.cfg.Now()) {
				a.log.Info("ipam: released the address of a container that did not come back", "container", al.ID, "addr", al.Addr)
			}
		case <-a.ctx.Done():
			for _, r := range a.pending {
				r.reply <- result{err: errors.New("router stopping")}
			}
			a.pending = nil
			return
		}
		if unsettled++; len(a.actions) == 0 || unsettled >= settleEvery {
			unsettled = 0
			a.settle()
		}
	}
}

// settle runs after each burst: retry waiting requests, persist, then
// answer and send (in that order: nothing leaves before it is on disk).
func (a *Allocator) settle() {
	now := a.cfg.Now()
	var answered []*request
	var results []result
	var fresh []bool // the answer is an address the container did not have
	kept := a.pending[:0]
	for _, r := range a.pending {
		had := map[netip.Addr]bool{}
		for _, al := range a.core.Lookup(r.id) {
			had[al.Addr] = true
		}
		p, err := a.try(r, now)
		if errors.Is(err, errWait) {
			r.why = err
			kept = append(kept, r)
			continue
		}
		answered = append(answered, r)
		results = append(results, result{p, err})
		fresh = append(fresh, err == nil && !had[p.Addr()])
	}
	a.pending = kept
	changed := a.core.TakeDirty()
	if changed {
		if err := saveFile(a.cfg.StateDir, a.core.snapshot()); err != nil {
			// Nothing that is not on disk may be handed out or sent:
			// undo the new allocations, keep the messages for later
			// and try to save again at the next settle.
			a.log.Error("ipam: cannot save state; failing the allocations made since", "err", err)
			for i, r := range answered {
				if results[i].err == nil && fresh[i] {
					a.core.Release(r.id, results[i].p.Addr())
					results[i] = result{err: err}
				}
			}
			a.core.MarkDirty()
			for i, r := range answered {
				r.reply <- results[i]
			}
			return
		}
	}
	for i, r := range answered {
		r.reply <- results[i]
	}
	out := a.core.Flush()
	if changed || len(out) > 0 {
		a.publish()
	}
	for _, o := range out {
		if a.send == nil {
			continue
		}
		if o.Broadcast {
			a.send.Broadcast(o.Msg)
		} else if err := a.send.Unicast(o.To, o.Msg); err != nil {
			a.log.Debug("ipam: unicast failed", "peer", o.To.String(), "err", err)
		}
	}
}

func (a *Allocator) try(r *request, now time.Time) (netip.Prefix, error) {
	if r.claim.IsValid() {
		return r.claim, a.core.Claim(r.id, r.claim, now)
	}
	return a.core.Allocate(r.id, r.subnet, now)
}

func (a *Allocator) publish() {
	g := a.core.Gossip()
	a.gossip.Store(&g)
}

// do runs f in the actor and waits for it.
func (a *Allocator) do(f func()) error {
	if !a.started.Load() {
		return errors.New("ipam not running")
	}
	done := make(chan struct{})
	select {
	case a.actions <- func() { f(); close(done) }:
	case <-a.ctx.Done():
		return errors.New("ipam stopped")
	}
	select {
	case <-done:
		return nil
	case <-a.ctx.Done():
		return errors.New("ipam stopped")
	}
}

// InRange reports whether ip is managed by IPAM.
func (a *Allocator) InRange(ip netip.Addr) bool { return a.core.InRange(ip) }

// CheckSubnet checks that a net:CIDR subnet lies in the range; the zero
// prefix means the default subnet.
func (a *Allocator) CheckSubnet(p netip.Prefix) (netip.Prefix, error) {
	if !p.IsValid() {
		return a.defSub.Prefix(), nil
	}
	s, err := a.core.CheckSubnet(p) // reads only the immutable range
	return s.Prefix(), err
}

// Allocate returns an address for container id in subnet (the default
// subnet when zero): the one it already has there, else a free one. It
// waits, until ctx ends, while this peer must first get space (from the
// seeding consensus or from another peer).
func (a *Allocator) Allocate(ctx context.Context, id string, subnet netip.Prefix) (netip.Prefix, error) {
	sp, err := a.CheckSubnet(subnet)
	if err != nil {
		return netip.Prefix{}, err
	}
	return a.wait(ctx, &request{id: id, subnet: Subnet(sp), reply: make(chan result, 1)})
}

// Claim records a static address for container id. Addresses outside the
// range are not IPAM's and always succeed; inside it, the address must be
// in this peer's space and not allocated to another container.
func (a *Allocator) Claim(ctx context.Context, id string, p netip.Prefix) error {
	if !a.InRange(p.Addr()) {
		return nil
	}
	_, err := a.wait(ctx, &request{id: id, claim: p, reply: make(chan result, 1)})
	return err
}

func (a *Allocator) wait(ctx context.Context, r *request) (netip.Prefix, error) {
	if err := a.do(func() { a.pending = append(a.pending, r) }); err != nil {
		return netip.Prefix{}, err
	}
	select {
	case res := <-r.reply:
		return res.p, res.err
	case <-ctx.Done():
	}
	var why error
	var res *result
	a.do(func() {
		why = r.why
		if i := slices.Index(a.pending, r); i >= 0 {
			a.pending = slices.Delete(a.pending, i, i+1)
			return
		}
		got := <-r.reply // answered meanwhile: the caller keeps it
		res = &got
	})
	if res != nil && res.err == nil {
		return res.p, nil // it did succeed: keep it
	}
	what := "no free address could be obtained in time"
	if !a.Status().Ready() {
		what = "the address ring is not seeded yet (waiting for a quorum of peers to agree; see weave status ipam)"
	} else if why != nil && why.Error() != errWait.Error() {
		what = why.Error()
	}
	return netip.Prefix{}, fmt.Errorf("allocate for %s: %w: %s", r.id, ctx.Err(), what)
}

// Release frees container id's addresses now (the given ones, or all).
func (a *Allocator) Release(id string, ips ...netip.Addr) []netip.Addr {
	var freed []netip.Addr
	a.do(func() { freed = a.core.Release(id, ips...) })
	return freed
}

// Hold keeps container id's addresses for the grace period, then frees
// them unless the container is given them again.
func (a *Allocator) Hold(id string) int {
	n := 0
	a.do(func() { n = a.core.Hold(id, a.cfg.Now().Add(a.cfg.Grace)) })
	return n
}

// Lookup returns container id's allocations, live or held.
func (a *Allocator) Lookup(id string) []Alloc {
	var out []Alloc
	a.do(func() { out = a.core.Lookup(id) })
	return out
}

// Allocs returns every allocation of this peer.
func (a *Allocator) Allocs() []Alloc {
	var out []Alloc
	a.do(func() { out = a.core.Allocs() })
	return out
}

// RmPeer takes over the space of peer, which must be unreachable (stopped
// for good). It returns the number of addresses taken over.
func (a *Allocator) RmPeer(peer identity.PeerName) (uint64, error) {
	var n uint64
	var err error
	derr := a.do(func() {
		if a.cfg.Reachable(peer) {
			err = fmt.Errorf("peer %s is reachable: stop it first (weave stop, or weave reset there to hand its space over)", peer)
			return
		}
		n, err = a.core.RmPeer(peer)
	})
	if derr != nil {
		return 0, derr
	}
	if err == nil && n > 0 {
		a.log.Info("ipam: took over the space of a removed peer", "removed", peer.String(), "addresses", n)
	}
	return n, err
}

// Leave hands all our space to a reachable peer and forgets our
// allocations (weave reset), waiting until that peer has it or ctx ends.
// With no reachable peer, or no ring, there is nothing to hand over.
func (a *Allocator) Leave(ctx context.Context) (identity.PeerName, error) {
	var heir identity.PeerName
	err := a.do(func() {
		if !a.core.Seeded() || len(a.core.ring.Owned(a.cfg.Peer)) == 0 {
			return
		}
		peers := slices.Clone(a.cfg.Peers())
		slices.Sort(peers)
		for _, p := range peers {
			if p != a.cfg.Peer && a.cfg.Reachable(p) {
				heir = p
				break
			}
		}
		if heir == 0 {
			return
		}
		for _, r := range a.pending {
			r.reply <- result{err: errors.New("this router is leaving (weave reset)")}
		}
		a.pending = nil
		n := a.core.Leave(heir)
		a.log.Info("ipam: handing our space to another peer", "heir", heir.String(), "addresses", n)
	})
	if err != nil || heir == 0 {
		if err == nil {
			a.log.Warn("ipam: no reachable peer to hand our space to; it stays ours until weave rmpeer on another peer")
		}
		return 0, err
	}
	for {
		acked := false
		if err := a.do(func() { acked = a.core.HeirAcked(heir) }); err != nil {
			return heir, err
		}
		if acked {
			return heir, nil
		}
		select {
		case <-ctx.Done():
			return heir, fmt.Errorf("hand space to %s: %w", heir, ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// Status reports the allocator's state.
func (a *Allocator) Status() Status {
	var st Status
	if err := a.do(func() {
		st = a.core.Status()
		st.Pending = len(a.pending)
	}); err != nil {
		st = Status{Range: a.cfg.Range, State: "stopped"}
	}
	st.DefaultSubnet = a.cfg.DefaultSubnet
	return st
}

// Ready reports whether the ring is seeded.
func (s Status) Ready() bool { return s.State == "ready" }

// OnGossip implements mesh.Gossiper: merge a peer's state; the delta
// passed on is our whole new state (the ring is small).
func (a *Allocator) OnGossip(src identity.PeerName, msg []byte) ([]byte, error) {
	return a.onMessage(src, msg, false)
}

// OnUnicast implements mesh.Gossiper.
func (a *Allocator) OnUnicast(src identity.PeerName, msg []byte) error {
	_, err := a.onMessage(src, msg, true)
	return err
}

func (a *Allocator) onMessage(src identity.PeerName, msg []byte, unicast bool) ([]byte, error) {
	var changed bool
	var err error
	var delta []byte
	if derr := a.do(func() {
		changed, err = a.core.OnMessage(src, msg, unicast)
		if err != nil || !changed {
			return
		}
		// What we pass on must be on disk first (a donation we received
		// and relayed, then forgot in a crash, would be owned twice).
		if a.core.TakeDirty() {
			if serr := saveFile(a.cfg.StateDir, a.core.snapshot()); serr != nil {
				a.core.MarkDirty()
				err = fmt.Errorf("cannot save state: %w", serr)
				return
			}
		}
		a.publish()
		delta = *a.gossip.Load()
	}); derr != nil {
		return nil, derr
	}
	if errors.Is(err, ErrIncompatible) {
		a.log.Error("ipam: refusing peer", "remote", src.String(), "err", err)
		return nil, fmt.Errorf("%w: ipam: %w", mesh.ErrIncompatible, err)
	}
	if err != nil {
		return nil, fmt.Errorf("ipam: %w", err)
	}
	if !changed {
		return nil, nil
	}
	return delta, nil
}

// Gossip implements mesh.Gossiper: our whole state.
func (a *Allocator) Gossip() []byte { return *a.gossip.Load() }
