package ipam

// The simulator's random operations: what the peers and the operator do.

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/weavelab/weave/mesh/identity"
)

// try runs one request and checks its outcome.
func (s *sim) try(p *simPeer, q simReq) error {
	if q.claim.IsValid() {
		err := p.core.Claim(q.id, q.claim, s.now)
		switch {
		case err == nil:
			s.stats.Claimed++
			s.logf("%s: claimed %s for %s", p.name, q.claim, q.id)
			if a := p.core.allocs[AddrFrom(q.claim.Addr())]; a == nil || a.ID != q.id {
				s.fatalf("%s: claim of %s for %s succeeded but records %+v", p.name, q.claim, q.id, a)
			}
		case errors.Is(err, errWait):
			s.stats.Waits++
		case errors.Is(err, ErrOwnedElsewhere), errors.Is(err, ErrInUse):
		default:
			s.fatalf("%s: claim %s for %s: unexpected error %v", p.name, q.claim, q.id, err)
		}
		return err
	}
	had := p.core.Lookup(q.id)
	got, err := p.core.Allocate(q.id, q.subnet, s.now)
	switch {
	case err == nil:
		s.stats.Allocated++
		s.logf("%s: allocated %s to %s in %s", p.name, got, q.id, q.subnet)
		a := AddrFrom(got.Addr())
		if !q.subnet.Range().Contains(a) || got.Bits() != q.subnet.Prefix().Bits() {
			s.fatalf("%s: allocated %s for %s outside subnet %s", p.name, got, q.id, q.subnet)
		}
		if q.subnet.reserved(a) {
			s.fatalf("%s: allocated the reserved address %s of %s", p.name, got, q.subnet)
		}
		for _, h := range had { // in address order: the first is the answer
			if h.Subnet == q.subnet.Prefix() {
				if h.Addr != got.Addr() {
					s.fatalf("%s: %s had %s in %s, Allocate gave %s", p.name, q.id, h.Addr, q.subnet, got)
				}
				break
			}
		}
	case errors.Is(err, errWait):
		s.stats.Waits++
	case errors.Is(err, ErrFull):
		s.stats.Full++
	default:
		s.fatalf("%s: allocate for %s in %s: unexpected error %v", p.name, q.id, q.subnet, err)
	}
	return err
}

// randomSubnet is the default subnet or a random aligned subnet of the
// range (at most a /30).
func (s *sim) randomSubnet() Subnet {
	if s.r.IntN(5) < 3 {
		return s.def
	}
	bits := s.cfg.Range.Bits() + 1 + s.r.IntN(30-s.cfg.Range.Bits())
	n := uint64(1) << (bits - s.cfg.Range.Bits())
	start := uint64(s.rng.Start) + s.r.Uint64N(n)<<(32-bits)
	return Subnet(netip.PrefixFrom(Addr(start).IP(), bits))
}

// containerID is a new id for p, or one it already has.
func (s *sim) containerID(p *simPeer) string {
	if ids := s.ids(p); len(ids) > 0 && s.r.IntN(4) == 0 {
		return pick(s.r, ids)
	}
	p.nextID++
	return fmt.Sprintf("%d-c%d", p.name&0xff, p.nextID)
}

func (s *sim) ids(p *simPeer) []string {
	var ids []string
	for _, a := range p.core.Allocs() {
		if !slices.Contains(ids, a.ID) {
			ids = append(ids, a.ID)
		}
	}
	return ids
}

func (s *sim) opAllocate() {
	p := pick(s.r, s.active())
	q := simReq{id: s.containerID(p), subnet: s.randomSubnet(), deadline: s.now.Add(time.Duration(5+s.r.IntN(30)) * time.Second)}
	if err := s.try(p, q); errors.Is(err, errWait) {
		p.pending = append(p.pending, q)
	}
	s.settle(p)
}

// opClaim claims a random address of a random subnet (never that subnet's
// network or broadcast address).
func (s *sim) opClaim() {
	p := pick(s.r, s.active())
	sub := s.randomSubnet()
	r := sub.Range()
	a := Addr(uint64(r.Start) + 1 + s.r.Uint64N(r.Size()-2))
	q := simReq{id: s.containerID(p), claim: netip.PrefixFrom(a.IP(), sub.Prefix().Bits()), deadline: s.now.Add(10 * time.Second)}
	if err := s.try(p, q); errors.Is(err, errWait) {
		p.pending = append(p.pending, q)
	}
	s.settle(p)
}

func (s *sim) opRelease() {
	p := pick(s.r, s.active())
	allocs := p.core.Allocs()
	if len(allocs) == 0 {
		return
	}
	a := pick(s.r, allocs)
	var freed []netip.Addr
	if s.r.IntN(2) == 0 {
		freed = p.core.Release(a.ID)
	} else {
		freed = p.core.Release(a.ID, a.Addr)
	}
	s.stats.Released += len(freed)
	s.logf("%s: released %v of %s", p.name, freed, a.ID)
	if len(p.core.Lookup(a.ID)) > 0 && len(freed) == 0 {
		s.fatalf("%s: Release(%s) freed nothing", p.name, a.ID)
	}
	s.settle(p)
}

func (s *sim) opHold() {
	p := pick(s.r, s.active())
	ids := s.ids(p)
	if len(ids) == 0 {
		return
	}
	id := pick(s.r, ids)
	n := p.core.Hold(id, s.now.Add(s.cfg.Grace))
	s.stats.Held += n
	s.logf("%s: holding %d addresses of %s", p.name, n, id)
	s.settle(p)
}

// opGossip sends one peer's whole state to a connected one, as the mesh's
// periodic gossip does.
func (s *sim) opGossip() {
	src := pick(s.r, s.live())
	var dsts []*simPeer
	for _, d := range s.peers {
		if s.reachable(src, d) {
			dsts = append(dsts, d)
		}
	}
	if len(dsts) == 0 {
		return
	}
	s.stats.Gossip++
	s.enqueue(src, pick(s.r, dsts), src.core.Gossip(), false)
}

func (s *sim) opPartition() {
	groups := 2 + s.r.IntN(2)
	for _, p := range s.peers {
		p.group = s.r.IntN(groups)
	}
	s.stats.Parts++
	var g []string
	for _, p := range s.peers {
		g = append(g, fmt.Sprint(p.group))
	}
	s.logf("partition %s", strings.Join(g, ""))
}

// opHeal joins every group; newly connected peers exchange their whole
// state, as mesh neighbours do on connecting.
func (s *sim) opHeal() {
	old := make([]int, len(s.peers))
	for i, p := range s.peers {
		old[i] = p.group
		p.group = 0
	}
	s.logf("heal")
	for i, a := range s.peers {
		for j, b := range s.peers {
			if old[i] != old[j] && s.reachable(a, b) {
				s.enqueue(a, b, a.core.Gossip(), false)
			}
		}
	}
}

// canDie reports whether p may die and still leave enough live
// participants for every quorum, so that seeding stays possible.
func (s *sim) canDie(p *simPeer) bool {
	live := s.active()
	if len(live) <= 2 {
		return false
	}
	voters, need := 0, 0
	for i, q := range s.peers {
		if q.alive && q.leaving == 0 && q != p && !s.cfg.Observer[i] {
			voters++
		}
		need = max(need, s.cfg.Quorum[i])
	}
	return voters >= need
}

func (s *sim) kill(p *simPeer, why string) {
	p.alive = false
	p.pending = nil
	s.stats.Killed++
	s.logf("%s: %s", p.name, why)
}

func (s *sim) opKill() {
	p := pick(s.r, s.live())
	if s.canDie(p) {
		s.kill(p, "killed")
	}
}

// opRmPeer has a live peer take over the space of a dead one. The
// simulated operator runs rmpeer once per dead peer, and (unless
// LaxRmpeer) only on a peer that knows all that any live peer or message
// in flight knows about the dead peer's space.
func (s *sim) opRmPeer() {
	var dead []*simPeer
	for _, p := range s.peers {
		if !p.alive && !p.removed {
			dead = append(dead, p)
		}
	}
	if len(dead) == 0 {
		return
	}
	d := pick(s.r, dead)
	var ok []*simPeer
	for _, p := range s.active() {
		// On an unseeded ring rmpeer finds nothing to take (and the dead
		// peer may yet be among the seeds): the operator tries later.
		if p.core.Seeded() && (s.cfg.LaxRmpeer || s.knowsAllOf(p, d)) {
			ok = append(ok, p)
		}
	}
	if len(ok) == 0 {
		return
	}
	p := pick(s.r, ok)
	n, err := p.core.RmPeer(d.name)
	if err != nil {
		s.fatalf("%s: rmpeer %s: %v", p.name, d.name, err)
	}
	d.removed = true
	s.stats.Removed++
	s.logRing(p.core.ring, "%s: rmpeer %s took %d addresses", p.name, d.name, n)
	s.settle(p)
}

// knowsAllOf reports whether p's view of dead's space is as new as that
// of every live peer and every message in flight.
func (s *sim) knowsAllOf(p, dead *simPeer) bool {
	for _, q := range s.live() {
		if !covers(p.core.ring, q.core.ring, dead.name) {
			return false
		}
	}
	for _, m := range s.queue {
		msg, err := decode(m.msg)
		if err != nil {
			s.fatalf("in flight: %v", err)
		}
		if !covers(p.core.ring, msg.Ring, dead.name) {
			return false
		}
	}
	return true
}

// covers reports whether r knows all that o knows of dead's space: every
// entry o gives dead, at least as new, and for every entry r gives dead,
// no newer version in o and no token inside it that r lacks.
func covers(r, o *Ring, dead identity.PeerName) bool {
	for _, f := range o.Entries {
		if f.Peer != dead {
			continue
		}
		if i := r.find(f.Token); i < 0 || r.Entries[i].Token != f.Token || r.Entries[i].Version < f.Version {
			return false
		}
	}
	for i, e := range r.Entries {
		if e.Peer != dead {
			continue
		}
		end := r.end(i)
		for _, f := range o.Entries {
			if (f.Token == e.Token && f.Version > e.Version) || (f.Token > e.Token && uint64(f.Token) < end) {
				return false
			}
		}
	}
	return true
}

// opRestart restarts a peer from its saved state, as after weave stop and
// weave launch: containers keep their addresses, waiting requests fail.
func (s *sim) opRestart() {
	p := pick(s.r, s.active())
	c, err := NewCore(p.cfg)
	if err != nil {
		s.fatalf("NewCore: %v", err)
	}
	if p.saved != nil {
		b, err := json.Marshal(p.saved)
		if err != nil {
			s.fatalf("%s: save: %v", p.name, err)
		}
		var st persisted
		if err := json.Unmarshal(b, &st); err != nil {
			s.fatalf("%s: load: %v", p.name, err)
		}
		if err := c.restore(st); err != nil {
			s.fatalf("%s: restore: %v", p.name, err)
		}
	}
	before := p.core.Allocs()
	p.core = c
	p.pending = nil
	s.stats.Restarts++
	s.logRing(c.ring, "%s: restarted", p.name)
	if after := c.Allocs(); !slices.EqualFunc(before, after, sameAlloc) {
		s.fatalf("%s: restart changed allocations:\n before %v\n after  %v", p.name, before, after)
	}
	c.broadcast() // the Allocator says who it is once started
	s.settle(p)
}

func sameAlloc(a, b Alloc) bool {
	return a.Addr == b.Addr && a.Subnet == b.Subnet && a.ID == b.ID && a.ReleaseAt.Equal(b.ReleaseAt)
}

// opLeave has a peer hand its space to a reachable peer (weave reset),
// then stop for good.
func (s *sim) opLeave() {
	p := pick(s.r, s.active())
	if !p.core.Seeded() || !s.canDie(p) {
		return
	}
	var heirs []*simPeer
	for _, q := range s.peers {
		if s.reachable(p, q) {
			heirs = append(heirs, q)
		}
	}
	if len(heirs) == 0 {
		return
	}
	h := pick(s.r, heirs)
	n := p.core.Leave(h.name)
	s.stats.Leaves++
	s.logf("%s: leaving, %d addresses to %s", p.name, n, h.name)
	p.pending = nil
	p.leaving, p.leaveBy = h.name, s.now.Add(10*time.Second)
	s.settle(p)
}

// endLeaves stops the leaving peers whose heir acknowledged, or that gave
// up waiting (force: all of them).
func (s *sim) endLeaves(force bool) {
	for _, p := range s.peers {
		if p.alive && p.leaving != 0 && (force || p.core.HeirAcked(p.leaving) || s.now.After(p.leaveBy)) {
			if p.core.HeirAcked(p.leaving) {
				s.stats.LeavesAcked++
			}
			p.left = true
			s.kill(p, fmt.Sprintf("left (acked: %v)", p.core.HeirAcked(p.leaving)))
		}
	}
}
