package ipam

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"sort"
	"time"

	"github.com/weavelab/weave/mesh/identity"
)

// Errors that callers tell apart with errors.Is.
var (
	// ErrFull: no free address in the subnet anywhere in the ring.
	ErrFull = errors.New("no free address left")
	// ErrOutOfRange: a subnet that is not within the allocation range.
	ErrOutOfRange = errors.New("outside the allocation range")
	// ErrInUse: a static address already allocated to another container.
	ErrInUse = errors.New("address already in use")
	// ErrOwnedElsewhere: a static address in space another peer owns.
	ErrOwnedElsewhere = errors.New("address owned by another peer")
	// errWait: not possible yet; retry when the ring changes.
	errWait = errors.New("waiting for space")
)

// Alloc is one address allocated by this peer.
type Alloc struct {
	Addr   netip.Addr   `json:"addr"`
	Subnet netip.Prefix `json:"subnet"`
	ID     string       `json:"id"` // the container it belongs to
	// ReleaseAt, when set, is when the address of a dead container goes
	// back to the free pool unless the container comes back first.
	ReleaseAt time.Time `json:"release_at,omitzero"`
}

// Prefix is the address with its subnet's prefix length.
func (a Alloc) Prefix() netip.Prefix { return netip.PrefixFrom(a.Addr, a.Subnet.Bits()) }

// CoreConfig configures a Core.
type CoreConfig struct {
	Us identity.PeerName
	// Range is the whole allocation range (--ipalloc-range).
	Range netip.Prefix
	// Quorum is how many peers must agree on the ring's seeds.
	Quorum int
	// Observer peers never take part in seeding; they wait for a ring.
	Observer bool
	// Reachable tells whether the mesh has a route to a peer.
	Reachable func(identity.PeerName) bool
}

// Outgoing is a message the Core wants sent: to one peer, or broadcast.
type Outgoing struct {
	Broadcast bool
	To        identity.PeerName
	Msg       []byte
}

// Core is the allocator's state machine: the ring, the seeding consensus,
// and this peer's allocations. It does no I/O and reads no clock (callers
// pass the time), so a simulation can drive many peers deterministically.
// It is not safe for concurrent use.
type Core struct {
	cfg    CoreConfig
	rng    Range
	ring   *Ring
	cons   *consensus
	allocs map[Addr]*Alloc
	out    []Outgoing
	// dirty: persisted state changed since the last TakeDirty.
	dirty bool
	// asked: the last space request per subnet, to pace them.
	asked map[Subnet]askRecord
	// refused: per subnet, the peers that had no free address in it to
	// give, with a stamp of their entries then. They are not asked again
	// until those change; when every peer has refused, the subnet is full.
	refused map[Subnet]map[identity.PeerName]uint64
	// wanting: the subnets where an allocation lately found no free
	// address of ours, and when. We give none of their space away: the
	// space we were just given would go back and forth between peers
	// that each need it, and none would ever allocate.
	wanting map[Subnet]time.Time
	// proposedAt: when we last proposed, to retry a stalled consensus.
	proposedAt time.Time
	// heirAcked: set when the heir of Leave acknowledged.
	heirAcked identity.PeerName
	// leftTo: the heir of our Leave, until it acknowledges; Tick resends
	// it our space every askInterval from heirSentAt (a lost unicast
	// would otherwise leave Leave waiting for ever).
	leftTo     identity.PeerName
	heirSentAt time.Time
}

type askRecord struct {
	peer identity.PeerName
	at   time.Time
}

// Timing of retries, in the Core's notion of time.
const (
	askInterval     = 2 * time.Second
	proposeInterval = 5 * time.Second
)

// NewCore returns a Core with an empty ring.
func NewCore(cfg CoreConfig) (*Core, error) {
	r, err := checkRange(cfg.Range)
	if err != nil {
		return nil, err
	}
	if cfg.Reachable == nil {
		cfg.Reachable = func(identity.PeerName) bool { return true }
	}
	c := &Core{
		cfg:     cfg,
		rng:     r,
		ring:    &Ring{Range: r},
		cons:    newConsensus(cfg.Us, cfg.Quorum),
		allocs:  make(map[Addr]*Alloc),
		asked:   make(map[Subnet]askRecord),
		refused: make(map[Subnet]map[identity.PeerName]uint64),
		wanting: make(map[Subnet]time.Time),
	}
	return c, nil
}

// checkRange validates an allocation range.
func checkRange(p netip.Prefix) (Range, error) {
	if !p.IsValid() || !p.Addr().Is4() {
		return Range{}, fmt.Errorf("allocation range %s: must be an IPv4 CIDR", p)
	}
	if p.Bits() > 30 {
		return Range{}, fmt.Errorf("allocation range %s: too small (at most /30)", p)
	}
	if p.Bits() < 1 {
		return Range{}, fmt.Errorf("allocation range %s: too large", p)
	}
	return RangeOf(p), nil
}

// TakeOutgoing returns and clears the messages to send.
func (c *Core) TakeOutgoing() []Outgoing {
	out := c.out
	c.out = nil
	return out
}

// TakeDirty reports (and clears) whether persisted state changed.
func (c *Core) TakeDirty() bool {
	d := c.dirty
	c.dirty = false
	return d
}

// MarkDirty records that persisted state still has to be saved (after a
// failed save).
func (c *Core) MarkDirty() { c.dirty = true }

// Seeded reports whether the ring is divided among peers.
func (c *Core) Seeded() bool { return c.ring.Seeded() }

// Ring returns a copy of the ring.
func (c *Core) Ring() *Ring { return c.ring.Clone() }

// Allocs returns our allocations, in address order.
func (c *Core) Allocs() []Alloc {
	out := make([]Alloc, 0, len(c.allocs))
	for _, a := range c.allocs {
		out = append(out, *a)
	}
	slices.SortFunc(out, func(a, b Alloc) int { return a.Addr.Compare(b.Addr) })
	return out
}

// CheckSubnet checks that a subnet lies within the range.
func (c *Core) CheckSubnet(p netip.Prefix) (Subnet, error) {
	if !p.IsValid() || !p.Addr().Is4() {
		return Subnet{}, fmt.Errorf("subnet %s: must be an IPv4 CIDR", p)
	}
	p = p.Masked()
	if !c.rng.ContainsRange(RangeOf(p)) {
		return Subnet{}, fmt.Errorf("subnet %s: %w %s", p, ErrOutOfRange, c.cfg.Range)
	}
	if p.Bits() > 30 {
		return Subnet{}, fmt.Errorf("subnet %s: too small to allocate from (at most /30)", p)
	}
	return Subnet(p), nil
}

// InRange reports whether ip is in the allocation range.
func (c *Core) InRange(ip netip.Addr) bool { return ip.Is4() && c.rng.Contains(AddrFrom(ip)) }

// Lookup returns id's allocations (live or held), in address order.
func (c *Core) Lookup(id string) []Alloc {
	var out []Alloc
	for _, a := range c.Allocs() {
		if a.ID == id {
			out = append(out, a)
		}
	}
	return out
}

// Allocate gives id an address in subnet s: the one it already has there
// (taking it back if held), else the lowest free address in our space.
// When we own no free address in s it asks for space (starting the
// seeding consensus if there is no ring) and returns an error wrapping
// errWait; the caller retries after the next change. ErrFull: no peer has
// any to give.
func (c *Core) Allocate(id string, s Subnet, now time.Time) (netip.Prefix, error) {
	// id may have several addresses in s (claimed ones besides the
	// allocated one): answer the lowest, so that repeated calls agree.
	var have *Alloc
	for _, a := range c.allocs {
		if a.ID == id && a.Subnet == s.Prefix() && (have == nil || a.Addr.Less(have.Addr)) {
			have = a
		}
	}
	if have != nil {
		if !have.ReleaseAt.IsZero() {
			have.ReleaseAt = time.Time{}
			c.dirty = true
		}
		return have.Prefix(), nil
	}
	if !c.ring.Seeded() {
		c.needRing(now)
		return netip.Prefix{}, errWait
	}
	if a, ok := c.firstFree(s); ok {
		c.allocs[a] = &Alloc{Addr: a.IP(), Subnet: s.Prefix(), ID: id}
		c.dirty = true
		c.updateFree()
		delete(c.wanting, s)
		return c.allocs[a].Prefix(), nil
	}
	c.wanting[s] = now
	return netip.Prefix{}, c.askForSpace(s, now)
}

// Claim records a static address ip (in the range) for id. It must be in
// our space and not allocated to another container.
func (c *Core) Claim(id string, p netip.Prefix, now time.Time) error {
	a := AddrFrom(p.Addr())
	if !c.rng.Contains(a) {
		return nil // not ours to manage
	}
	if !c.ring.Seeded() {
		c.needRing(now)
		return errWait
	}
	if owner, _ := c.ring.Owner(a); owner != c.cfg.Us {
		return fmt.Errorf("%s: %w %s (inside --ipalloc-range %s): use net:CIDR, or a static address outside the range",
			p.Addr(), ErrOwnedElsewhere, owner, c.cfg.Range)
	}
	if cur, ok := c.allocs[a]; ok {
		if cur.ID != id {
			return fmt.Errorf("%s: %w by %s", p.Addr(), ErrInUse, cur.ID)
		}
		if !cur.ReleaseAt.IsZero() {
			cur.ReleaseAt = time.Time{}
			c.dirty = true
		}
		return nil
	}
	c.allocs[a] = &Alloc{Addr: p.Addr(), Subnet: p.Masked(), ID: id}
	c.dirty = true
	c.updateFree()
	return nil
}

// Release frees id's addresses at once: those given, or all when none.
// It returns the addresses freed.
func (c *Core) Release(id string, ips ...netip.Addr) []netip.Addr {
	var freed []netip.Addr
	for k, a := range c.allocs {
		if a.ID == id && (len(ips) == 0 || slices.Contains(ips, a.Addr)) {
			delete(c.allocs, k)
			freed = append(freed, a.Addr)
		}
	}
	if len(freed) > 0 {
		c.dirty = true
		c.updateFree()
	}
	slices.SortFunc(freed, func(a, b netip.Addr) int { return a.Compare(b) })
	return freed
}

// Hold marks id's addresses to be freed at until, unless the container
// comes back (Allocate or Claim by the same id) first. It returns how many
// it marked.
func (c *Core) Hold(id string, until time.Time) int {
	n := 0
	for _, a := range c.allocs {
		if a.ID == id && a.ReleaseAt.IsZero() {
			a.ReleaseAt = until
			n++
		}
	}
	if n > 0 {
		c.dirty = true
	}
	return n
}

// Tick frees held addresses whose time has come, retries a stalled
// consensus and an unacknowledged Leave, and reports the addresses it
// freed.
func (c *Core) Tick(now time.Time) []Alloc {
	var freed []Alloc
	for k, a := range c.allocs {
		if !a.ReleaseAt.IsZero() && !now.Before(a.ReleaseAt) {
			freed = append(freed, *a)
			delete(c.allocs, k)
		}
	}
	if len(freed) > 0 {
		c.dirty = true
		c.updateFree()
	}
	for s, at := range c.wanting {
		if now.Sub(at) >= 2*askInterval {
			delete(c.wanting, s) // its requests were given up
		}
	}
	if c.leftTo != 0 && c.heirAcked != c.leftTo {
		switch {
		case c.heirSentAt.IsZero():
			c.heirSentAt = now // Leave has no clock: count from here
		case now.Sub(c.heirSentAt) >= askInterval:
			c.heirSentAt = now
			c.out = append(c.out, Outgoing{To: c.leftTo, Msg: encode(&message{Ring: c.ring, Heir: true})})
		}
	}
	if !c.ring.Seeded() && c.cons.active() && !c.cfg.Observer && now.Sub(c.proposedAt) >= proposeInterval {
		if _, ok := c.cons.known[c.cfg.Us]; ok && c.cons.known[c.cfg.Us].Promise.Proposer == c.cfg.Us {
			c.propose(now) // our ballot stalled (lost messages, or outbid and silent)
		}
	}
	return freed
}

// needRing starts the seeding consensus (unless an observer, which waits).
func (c *Core) needRing(now time.Time) {
	if c.cfg.Observer {
		return
	}
	own, ok := c.cons.known[c.cfg.Us]
	if ok && !own.Promise.IsZero() && now.Sub(c.proposedAt) < proposeInterval {
		return // a ballot is under way
	}
	c.propose(now)
}

func (c *Core) propose(now time.Time) {
	c.proposedAt = now
	c.cons.propose()
	c.dirty = true
	c.afterConsensus(true)
}

// afterConsensus seeds the ring once a value is chosen, and gossips the
// new ring, or our claims when they changed (announce).
func (c *Core) afterConsensus(announce bool) {
	if seeds, ok := c.cons.chosen(); ok && !c.ring.Seeded() {
		c.ring.seed(seeds)
		c.dirty = true
		c.updateFree()
		announce = true
	}
	if announce {
		c.broadcast()
	}
}

// firstFree returns the lowest free address of s in our space.
func (c *Core) firstFree(s Subnet) (Addr, bool) {
	sr := s.Range()
	for _, own := range c.ring.Owned(c.cfg.Us) {
		r := own.Intersect(sr)
		for a := uint64(r.Start); a < r.End; a++ {
			if _, used := c.allocs[Addr(a)]; !used && !s.reserved(Addr(a)) {
				return Addr(a), true
			}
		}
	}
	return 0, false
}

// askForSpace asks the reachable peer advertising the most free space in s
// for some, at most every askInterval (alternating between donors). It
// returns ErrFull when no peer advertises any (or all that do said they
// have none in s), else errWait.
func (c *Core) askForSpace(s Subnet, now time.Time) error {
	sr := s.Range()
	type cand struct {
		peer identity.PeerName
		free uint64
	}
	byPeer := map[identity.PeerName]uint64{}
	unreachable := map[identity.PeerName]bool{}
	for i, e := range c.ring.Entries {
		if e.Peer == c.cfg.Us || e.Free == 0 || c.ring.span(i).Intersect(sr).Size() == 0 {
			continue
		}
		if st, ok := c.refused[s][e.Peer]; ok && st == c.stampIn(e.Peer, sr) {
			continue // it had nothing in s, and nothing changed since
		}
		if !c.cfg.Reachable(e.Peer) {
			unreachable[e.Peer] = true
			continue
		}
		byPeer[e.Peer] += uint64(e.Free)
	}
	if len(byPeer) == 0 {
		if len(unreachable) > 0 {
			return fmt.Errorf("%w: the peers with free space in %s are unreachable (%s)", errWait, s, peerList(sortedKeys(unreachable)))
		}
		return fmt.Errorf("subnet %s: %w", s, ErrFull)
	}
	var cands []cand
	for p, f := range byPeer {
		cands = append(cands, cand{p, f})
	}
	sort.Slice(cands, func(i, j int) bool {
		if cands[i].free != cands[j].free {
			return cands[i].free > cands[j].free
		}
		return cands[i].peer < cands[j].peer
	})
	last, ok := c.asked[s]
	if ok && now.Sub(last.at) < askInterval {
		return errWait
	}
	pick := cands[0].peer
	if ok && pick == last.peer && len(cands) > 1 {
		pick = cands[1].peer
	}
	c.asked[s] = askRecord{peer: pick, at: now}
	c.out = append(c.out, Outgoing{To: pick, Msg: encode(&message{Ring: c.ring, Ask: &askSpace{Subnet: s}})})
	return errWait
}

func sortedKeys(m map[identity.PeerName]bool) []identity.PeerName {
	var out []identity.PeerName
	for p := range m {
		out = append(out, p)
	}
	slices.Sort(out)
	return out
}

// donate hands half of our largest free run in s (all of it when it is a
// single address) to peer, keeping what we need ourselves (wanting). It
// reports false when we have no free address in s to give.
func (c *Core) donate(peer identity.PeerName, s Subnet) bool {
	sr := s.Range()
	var best Range
	for _, own := range c.ring.Owned(c.cfg.Us) {
		r := own.Intersect(sr)
		runStart := uint64(r.Start)
		for a := uint64(r.Start); a <= r.End; a++ {
			if a < r.End {
				// s's network and broadcast addresses are of no use to
				// the asker, and those we need ourselves are not ours
				// to give: they end runs like allocated ones.
				if _, used := c.allocs[Addr(a)]; !used && !s.reserved(Addr(a)) && !c.wanted(Addr(a)) {
					continue
				}
			}
			if run := (Range{Start: Addr(runStart), End: a}); run.Size() > best.Size() {
				best = run
			}
			runStart = a + 1
		}
	}
	if best.Size() == 0 {
		return false
	}
	// Give the upper half: the lower stays with the addresses we use.
	give := Range{Start: Addr(uint64(best.Start) + best.Size()/2), End: best.End}
	if err := c.ring.transfer(c.cfg.Us, peer, give); err != nil {
		return false // cannot happen: we own it
	}
	c.dirty = true
	c.updateFree()
	c.broadcast()
	return true
}

// wanted reports whether a lies in a subnet we lately ran out of.
func (c *Core) wanted(a Addr) bool {
	for s := range c.wanting {
		if s.Range().Contains(a) {
			return true
		}
	}
	return false
}

// updateFree refreshes the free counts of our entries and queues a
// broadcast of the ring when one changed. Only changes of our own entries
// are broadcast: the mesh carries each peer's broadcast to every peer, and
// relaying what we merely learned would cost O(peers²) messages per
// change (periodic gossip repairs losses).
func (c *Core) updateFree() {
	used := make([]Addr, 0, len(c.allocs))
	for a := range c.allocs {
		used = append(used, a)
	}
	slices.Sort(used)
	changed := false
	for i, e := range c.ring.Entries {
		if e.Peer != c.cfg.Us {
			continue
		}
		sp := c.ring.span(i)
		lo, _ := slices.BinarySearch(used, sp.Start)
		hi := lo
		for hi < len(used) && uint64(used[hi]) < sp.End {
			hi++
		}
		free := sp.Size() - uint64(hi-lo)
		// The range's network and broadcast addresses are in no
		// subnet's pool: advertised, they would draw asks for nothing.
		for _, a := range c.ring.unusable(sp) {
			if c.allocs[a] == nil {
				free--
			}
		}
		if c.ring.setFree(i, uint32(free)) {
			changed = true
		}
	}
	if changed {
		c.dirty = true
		c.broadcast()
	}
}

// stampIn sums up peer's entries that meet sr: it changes whenever peer
// changes one of them (its free count, say) or gains one there.
func (c *Core) stampIn(peer identity.PeerName, sr Range) uint64 {
	var h uint64 = 14695981039346656037
	for i, e := range c.ring.Entries {
		if e.Peer == peer && c.ring.span(i).Intersect(sr).Size() > 0 {
			h = (h ^ (uint64(e.Token)<<32 | uint64(e.Version))) * 1099511628211
		}
	}
	return h
}

// ownStamp sums up our entries, to tell whether a merge changed them.
func (c *Core) ownStamp() [2]uint64 {
	var n, v uint64
	for _, e := range c.ring.Entries {
		if e.Peer == c.cfg.Us {
			n++
			v += uint64(e.Version)
		}
	}
	return [2]uint64{n, v}
}

// broadcast queues our state for every peer (one per burst of changes).
func (c *Core) broadcast() {
	for _, o := range c.out {
		if o.Broadcast {
			return // the state is encoded when sent: see Flush
		}
	}
	c.out = append(c.out, Outgoing{Broadcast: true})
}

// Flush fills in the state of queued broadcasts (encoded once, after the
// burst of changes) and returns what to send.
func (c *Core) Flush() []Outgoing {
	out := c.TakeOutgoing()
	var state []byte
	for i := range out {
		if out[i].Broadcast && out[i].Msg == nil {
			if state == nil {
				state = c.Gossip()
			}
			out[i].Msg = state
		}
	}
	return out
}

// Gossip encodes our whole state: the ring, and the consensus claims while
// there is no ring.
func (c *Core) Gossip() []byte {
	m := &message{Ring: c.ring}
	if !c.ring.Seeded() && len(c.cons.known) > 0 {
		m.Claims = c.cons.snapshot()
	}
	return encode(m)
}

// OnMessage handles a message from src (unicast true for a message to us
// alone). It returns whether our state changed, and errors wrapping
// ErrIncompatible (the peers can never agree: disconnect) or ErrInvalid.
func (c *Core) OnMessage(src identity.PeerName, b []byte, unicast bool) (bool, error) {
	m, err := decode(b)
	if err != nil {
		return false, err
	}
	own := c.ownStamp()
	changed, err := c.ring.merge(m.Ring, c.cfg.Us)
	if err != nil {
		return false, err
	}
	if changed {
		c.dirty = true
		c.updateFree() // entries handed to us need our free counts
		if c.ownStamp() != own {
			c.broadcast() // space handed to us, or a forgotten change of ours overridden
		}
	}
	if !c.ring.Seeded() && len(m.Claims) > 0 {
		before, wasActive := c.cons.known[c.cfg.Us]
		if c.cons.merge(m.Claims, c.cfg.Observer) {
			changed = true
			c.dirty = true
			// Gossip our claims only when they changed: relaying the
			// others' would cost O(peers²) messages too.
			after := c.cons.known[c.cfg.Us]
			c.afterConsensus(c.cons.active() && (!wasActive || after.Promise != before.Promise || after.Accepted != before.Accepted))
		}
	}
	if !unicast {
		return changed, nil
	}
	switch {
	case m.Ask != nil:
		// Answer with our ring either way, so the asker learns where
		// the space is, saying so when we have none in the subnet.
		reply := &message{Ring: c.ring}
		// Space given to a peer we can no longer reach would be lost
		// until rmpeer: it may have died since it asked.
		if c.ring.Seeded() && c.cfg.Reachable(src) {
			if c.donate(src, m.Ask.Subnet) {
				changed = true
			} else {
				reply.Refuse = m.Ask
			}
		}
		c.out = append(c.out, Outgoing{To: src, Msg: encode(reply)})
	case m.Refuse != nil:
		s := m.Refuse.Subnet
		if c.refused[s] == nil {
			c.refused[s] = make(map[identity.PeerName]uint64)
		}
		c.refused[s][src] = c.stampIn(src, s.Range())
	case m.Heir:
		c.out = append(c.out, Outgoing{To: src, Msg: encode(&message{Ring: c.ring, Ack: true})})
	case m.Ack:
		c.heirAcked = src
	}
	return changed, nil
}

// RmPeer takes over the space of dead, which must not be us. It returns how
// many addresses that was.
func (c *Core) RmPeer(dead identity.PeerName) (uint64, error) {
	if dead == c.cfg.Us {
		return 0, errors.New("cannot remove ourselves: use weave reset on this host")
	}
	n := c.ring.reclaim(dead, c.cfg.Us)
	if n > 0 {
		c.dirty = true
		c.updateFree()
		c.broadcast()
	}
	return n, nil
}

// Leave gives all our space to heir and forgets our allocations (weave
// reset). It queues the hand-over to heir, and Tick sends it again until
// heir acknowledges; HeirAcked tells when it has.
func (c *Core) Leave(heir identity.PeerName) uint64 {
	var n uint64
	for i := range c.ring.Entries {
		if c.ring.Entries[i].Peer == c.cfg.Us {
			n += c.ring.span(i).Size()
			c.ring.Entries[i].Peer = heir
			c.ring.Entries[i].Version++
			c.ring.Entries[i].Free = 0
		}
	}
	clear(c.allocs)
	c.dirty = true
	c.heirAcked = 0
	c.leftTo, c.heirSentAt = heir, time.Time{}
	c.broadcast()
	c.out = append(c.out, Outgoing{To: heir, Msg: encode(&message{Ring: c.ring, Heir: true})})
	return n
}

// HeirAcked reports whether heir acknowledged our Leave.
func (c *Core) HeirAcked(heir identity.PeerName) bool { return c.heirAcked == heir }
