package ipam

import (
	"container/heap"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/weavelab/weave/mesh/identity"
)

// This file is a deterministic simulator of many Cores on a faulty network:
// virtual time, one random source, no goroutines. Messages arrive after a
// random delay, sometimes twice, sometimes never, and not while a
// partition separates their ends; periodic full-state gossip between
// connected peers repairs losses, as the mesh does. Peers allocate, claim,
// release and hold addresses, restart from their saved state, leave, and
// die; live peers remove dead ones with rmpeer. check() asserts the safety
// invariants after every step; finish() heals everything and asserts that
// the peers converge on one ring and that the whole range can be handed
// out.

// simConfig shapes one run.
type simConfig struct {
	Peers     int
	Range     netip.Prefix
	Steps     int
	Quorum    []int  // per peer
	Observer  []bool // per peer
	Drop, Dup float64
	MaxDelay  time.Duration
	Grace     time.Duration
	// LaxRmpeer lets rmpeer run on a live peer that may not have heard the
	// dead peer's last changes yet (see TestRmPeerStaleView). By default
	// the simulated operator waits until it has.
	LaxRmpeer bool
}

// randomSimConfig draws a configuration: 3 to maxPeers peers, a /25 to
// /28 range (small, so that peers run short and ask each other for
// space), majority quorums (some peers asking for more), now and then an
// observer.
func randomSimConfig(r *rand.Rand, maxPeers, steps int) simConfig {
	n := 3 + r.IntN(maxPeers-2)
	cfg := simConfig{
		Peers:    n,
		Range:    netip.PrefixFrom(netip.MustParseAddr("10.32.0.0"), 25+r.IntN(4)),
		Steps:    steps,
		Quorum:   make([]int, n),
		Observer: make([]bool, n),
		Drop:     []float64{0, 0.02, 0.1, 0.3}[r.IntN(4)],
		Dup:      []float64{0, 0.05, 0.2}[r.IntN(3)],
		MaxDelay: []time.Duration{10 * time.Millisecond, 300 * time.Millisecond, 3 * time.Second}[r.IntN(3)],
		Grace:    time.Duration(1+r.IntN(10)) * time.Second,
	}
	if n >= 5 && r.IntN(3) == 0 {
		cfg.Observer[r.IntN(n)] = true
	}
	maj := n/2 + 1
	for i := range cfg.Quorum {
		cfg.Quorum[i] = maj
		if r.IntN(4) == 0 {
			cfg.Quorum[i] += r.IntN(2) // mixed, still a majority of all peers
		}
	}
	return cfg
}

func (cfg simConfig) String() string {
	obs := 0
	for _, o := range cfg.Observer {
		if o {
			obs++
		}
	}
	return fmt.Sprintf("%d peers (%d observers), range %s, quorums %v, drop %.2f dup %.2f delay<=%s, grace %s, %d steps",
		cfg.Peers, obs, cfg.Range, cfg.Quorum, cfg.Drop, cfg.Dup, cfg.MaxDelay, cfg.Grace, cfg.Steps)
}

type simPeer struct {
	name    identity.PeerName
	cfg     CoreConfig
	core    *Core
	alive   bool
	left    bool              // handed its space over with Leave, then stopped
	leaving identity.PeerName // Leave called with this heir: waits for its ack
	leaveBy time.Time         // ...until then
	removed bool              // dead, and rmpeer'd by a live peer
	group   int               // partition: peers talk only within a group
	saved   *persisted        // JSON-encoded only on restart, for speed
	pending []simReq
	nextID  int
}

// simReq is an allocation or claim waiting for space, retried every step
// as the Allocator does, until its deadline.
type simReq struct {
	id       string
	subnet   Subnet
	claim    netip.Prefix
	deadline time.Time
}

type simMsg struct {
	at       time.Time
	seq      uint64
	src, dst identity.PeerName
	msg      []byte
	unicast  bool
}

type msgQueue []*simMsg

func (q msgQueue) Len() int { return len(q) }
func (q msgQueue) Less(i, j int) bool {
	if !q[i].at.Equal(q[j].at) {
		return q[i].at.Before(q[j].at)
	}
	return q[i].seq < q[j].seq
}
func (q msgQueue) Swap(i, j int) { q[i], q[j] = q[j], q[i] }
func (q *msgQueue) Push(x any)   { *q = append(*q, x.(*simMsg)) }
func (q *msgQueue) Pop() any {
	old := *q
	m := old[len(old)-1]
	*q = old[:len(old)-1]
	return m
}

// simStats counts what a run did, to show that runs exercise the paths
// they claim to.
type simStats struct {
	Steps, Allocated, Claimed, Released, Held, Expired     int
	Waits, Full, Killed, Removed, Restarts, Leaves, Parts  int
	LeavesAcked, Refused                                   int
	Sent, Delivered, Dropped, Duplicated, Gossip, Transfer int
	FillAllocs                                             int
}

func (s *simStats) add(o simStats) {
	s.Steps += o.Steps
	s.Allocated += o.Allocated
	s.Claimed += o.Claimed
	s.Released += o.Released
	s.Held += o.Held
	s.Expired += o.Expired
	s.Waits += o.Waits
	s.Full += o.Full
	s.Killed += o.Killed
	s.Removed += o.Removed
	s.Restarts += o.Restarts
	s.Leaves += o.Leaves
	s.LeavesAcked += o.LeavesAcked
	s.Refused += o.Refused
	s.Parts += o.Parts
	s.Sent += o.Sent
	s.Delivered += o.Delivered
	s.Dropped += o.Dropped
	s.Duplicated += o.Duplicated
	s.Gossip += o.Gossip
	s.Transfer += o.Transfer
	s.FillAllocs += o.FillAllocs
}

type sim struct {
	tb    testing.TB
	seed  string
	r     *rand.Rand
	cfg   simConfig
	rng   Range
	def   Subnet
	now   time.Time
	peers []*simPeer
	queue msgQueue
	seq   uint64
	stats simStats
	trace []simEvent // the last events, printed on failure
	// onSend, when set, sees every message sent (the fuzz corpus is made
	// of them).
	onSend func(msg []byte, unicast bool)
}

// simEvent is a line of the trace, with a ring formatted only on failure.
type simEvent struct {
	line string
	ring *Ring
}

const simTraceLen = 150

func newSim(tb testing.TB, seed string, src rand.Source, cfg simConfig) *sim {
	tb.Helper()
	s := &sim{tb: tb, seed: seed, r: rand.New(src), cfg: cfg, now: time.Unix(1_000_000, 0)}
	s.rng = RangeOf(cfg.Range)
	s.def = Subnet(cfg.Range)
	for i := range cfg.Peers {
		p := &simPeer{name: identity.PeerName(0x0200_0000_0001 + i), alive: true}
		p.cfg = CoreConfig{
			Us:        p.name,
			Range:     cfg.Range,
			Quorum:    cfg.Quorum[i],
			Observer:  cfg.Observer[i],
			Reachable: func(q identity.PeerName) bool { return s.reachable(p, s.peer(q)) },
		}
		c, err := NewCore(p.cfg)
		if err != nil {
			tb.Fatalf("NewCore: %v", err)
		}
		p.core = c
		s.peers = append(s.peers, p)
	}
	return s
}

func (s *sim) peer(n identity.PeerName) *simPeer {
	i := int(n - 0x0200_0000_0001)
	if i < 0 || i >= len(s.peers) {
		return nil
	}
	return s.peers[i]
}

func (s *sim) reachable(a, b *simPeer) bool {
	return a != nil && b != nil && a != b && a.alive && b.alive && a.group == b.group
}

func (s *sim) logf(format string, args ...any) { s.logRing(nil, format, args...) }

// logRing traces an event and the ring it led to.
func (s *sim) logRing(r *Ring, format string, args ...any) {
	if len(s.trace) == simTraceLen {
		s.trace = s.trace[1:]
	}
	if r != nil {
		r = r.Clone()
	}
	line := fmt.Sprintf("%8.3fs ", s.now.Sub(time.Unix(1_000_000, 0)).Seconds()) + fmt.Sprintf(format, args...)
	s.trace = append(s.trace, simEvent{line, r})
}

func (s *sim) fatalf(format string, args ...any) {
	s.tb.Helper()
	var b strings.Builder
	fmt.Fprintf(&b, "seed %s (%s): step %d: %s\n", s.seed, s.cfg, s.stats.Steps, fmt.Sprintf(format, args...))
	b.WriteString("last events:\n")
	for _, e := range s.trace {
		b.WriteString("  " + e.line)
		if e.ring != nil {
			b.WriteString(": ring " + ringString(e.ring))
		}
		b.WriteString("\n")
	}
	for _, p := range s.peers {
		fmt.Fprintf(&b, "peer %s alive=%v left=%v removed=%v group=%d ring=%s allocs=%d\n",
			p.name, p.alive, p.left, p.removed, p.group, ringString(p.core.ring), len(p.core.allocs))
	}
	fmt.Fprintf(&b, "replay: IPAM_SIM_SEED=%s go test -run 'TestSimulation$' -v ./router/ipam/", s.seed)
	s.tb.Fatal(b.String())
}

func ringString(r *Ring) string {
	if !r.Seeded() {
		return "(unseeded)"
	}
	var parts []string
	for _, e := range r.Entries {
		parts = append(parts, fmt.Sprintf("%s:%d@%d/%d", e.Token, e.Peer&0xff, e.Version, e.Free))
	}
	return strings.Join(parts, " ")
}

// active lists the live peers that are not leaving: those that take new
// requests.
func (s *sim) active() []*simPeer {
	var out []*simPeer
	for _, p := range s.peers {
		if p.alive && p.leaving == 0 {
			out = append(out, p)
		}
	}
	return out
}

func (s *sim) live() []*simPeer {
	var out []*simPeer
	for _, p := range s.peers {
		if p.alive {
			out = append(out, p)
		}
	}
	return out
}

func pick[T any](r *rand.Rand, xs []T) T { return xs[r.IntN(len(xs))] }

// settle persists p's state if it changed, then sends what it queued: the
// order the Allocator must keep (nothing leaves before it is on disk).
func (s *sim) settle(p *simPeer) {
	if p.core.TakeDirty() {
		st := p.core.snapshot()
		p.saved = &st
	}
	for _, o := range p.core.Flush() {
		s.route(p, o)
	}
}

func (s *sim) route(src *simPeer, o Outgoing) {
	if o.Broadcast {
		for _, d := range s.peers {
			if s.reachable(src, d) {
				s.enqueue(src, d, o.Msg, false)
			}
		}
		return
	}
	if d := s.peer(o.To); s.reachable(src, d) {
		s.enqueue(src, d, o.Msg, true)
	} else {
		s.stats.Dropped++ // the mesh has no route: Unicast fails
	}
}

func (s *sim) enqueue(src, dst *simPeer, msg []byte, unicast bool) {
	s.stats.Sent++
	if unicast && corpusKind(msg) == "refuse" {
		s.stats.Refused++
	}
	if s.onSend != nil {
		s.onSend(msg, unicast)
	}
	if s.r.Float64() < s.cfg.Drop {
		s.stats.Dropped++
		return
	}
	n := 1
	if s.r.Float64() < s.cfg.Dup {
		n = 2
		s.stats.Duplicated++
	}
	for range n {
		s.seq++
		delay := time.Duration(s.r.Int64N(int64(s.cfg.MaxDelay) + 1))
		heap.Push(&s.queue, &simMsg{at: s.now.Add(delay), seq: s.seq, src: src.name, dst: dst.name, msg: msg, unicast: unicast})
	}
}

// deliverDue delivers the messages whose time has come. A message is lost
// when its destination is dead or a partition separates the two ends.
func (s *sim) deliverDue() {
	for len(s.queue) > 0 && !s.queue[0].at.After(s.now) {
		m := heap.Pop(&s.queue).(*simMsg)
		src, dst := s.peer(m.src), s.peer(m.dst)
		if !dst.alive || src.group != dst.group {
			s.stats.Dropped++
			continue
		}
		s.deliver(src, dst, m.msg, m.unicast)
	}
}

func (s *sim) deliver(src, dst *simPeer, msg []byte, unicast bool) {
	s.stats.Delivered++
	before := len(dst.core.ring.Entries)
	changed, err := dst.core.OnMessage(src.name, msg, unicast)
	if err != nil {
		s.fatalf("%s -> %s (unicast %v): %v\n  message: %.600s", src.name, dst.name, unicast, err, msg)
	}
	if changed {
		s.logRing(dst.core.ring, "%s <- %s%s", dst.name, src.name, map[bool]string{true: " (unicast)"}[unicast])
	}
	if after := len(dst.core.ring.Entries); before > 0 && after > before {
		s.stats.Transfer++
	}
	s.settle(dst)
}

// step advances time, delivers what is due, does one random thing, runs
// every live peer's timers and waiting requests, and checks the
// invariants.
func (s *sim) step() {
	s.stats.Steps++
	s.now = s.now.Add(time.Duration(s.r.IntN(400)) * time.Millisecond)
	s.deliverDue()
	switch op := s.r.IntN(1000); {
	case op < 280:
		s.opAllocate()
	case op < 330:
		s.opClaim()
	case op < 480:
		s.opRelease()
	case op < 560:
		s.opHold()
	case op < 740:
		s.opGossip()
	case op < 770:
		s.opPartition()
	case op < 800:
		s.opHeal()
	case op < 812:
		s.opKill()
	case op < 840:
		s.opRmPeer()
	case op < 860:
		s.opRestart()
	case op < 866:
		s.opLeave()
	}
	s.tickAll()
	s.endLeaves(false)
	s.check()
}

func (s *sim) tickAll() {
	for _, p := range s.live() {
		for _, a := range p.core.Tick(s.now) {
			s.stats.Expired++
			s.logf("%s: grace over, freed %s of %s", p.name, a.Addr, a.ID)
		}
		s.retry(p)
		s.settle(p)
	}
}

// retry runs p's waiting requests again, as the Allocator does after each
// burst of changes.
func (s *sim) retry(p *simPeer) {
	kept := p.pending[:0]
	for _, q := range p.pending {
		if s.now.After(q.deadline) {
			continue // the caller's context ended
		}
		if err := s.try(p, q); errors.Is(err, errWait) {
			kept = append(kept, q)
		}
	}
	p.pending = kept
}

// run does the random steps, then finish.
func (s *sim) run() {
	s.tb.Helper()
	for range s.cfg.Steps {
		s.step()
	}
	s.finish()
}

// byteSource is a rand.Source that reads its numbers from fuzz input, so
// that the fuzzer steers the simulation; past the input's end it goes on
// with a PCG seeded from it.
type byteSource struct {
	b   []byte
	pcg *rand.PCG
}

func newByteSource(b []byte) *byteSource {
	var h uint64 = 14695981039346656037
	for _, c := range b {
		h = (h ^ uint64(c)) * 1099511628211
	}
	return &byteSource{b: b, pcg: rand.NewPCG(h, uint64(len(b)))}
}

func (s *byteSource) Uint64() uint64 {
	if len(s.b) >= 8 {
		v := binary.LittleEndian.Uint64(s.b)
		s.b = s.b[8:]
		return v
	}
	return s.pcg.Uint64()
}
