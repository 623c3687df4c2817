package ipam

// The simulator's assertions: the invariants checked after every step,
// and the convergence and liveness checked at the end of a run.

import (
	"container/heap"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/weavelab/weave/mesh/identity"
)

// check asserts the safety invariants across live peers: valid rings, no
// address held by two containers, every allocation in its peer's own
// space, and advertised free counts that match the allocations.
func (s *sim) check() {
	s.tb.Helper()
	holder := make(map[Addr]string)
	for _, p := range s.peers {
		if !p.alive {
			continue
		}
		r := p.core.ring
		if err := r.validate(); err != nil {
			s.fatalf("%s: invalid ring: %v", p.name, err)
		}
		for k, a := range p.core.allocs {
			if o, ok := r.Owner(k); !ok || o != p.name {
				s.fatalf("%s: allocation %s of %s lies in space its ring gives to %s", p.name, a.Addr, a.ID, o)
			}
			who := fmt.Sprintf("%s on %s", a.ID, p.name)
			if prev, dup := holder[k]; dup {
				s.fatalf("address %s held by %s and by %s", a.Addr, prev, who)
			}
			holder[k] = who
		}
		for i, e := range r.Entries {
			if e.Peer != p.name {
				continue
			}
			if want := s.free(p, r.span(i)); uint64(e.Free) != want {
				s.fatalf("%s: entry %s advertises %d free, has %d", p.name, e.Token, e.Free, want)
			}
		}
	}
}

// free counts the addresses of sp that p could still allocate: neither
// allocated nor the range's network or broadcast address.
func (s *sim) free(p *simPeer, sp Range) uint64 {
	n := sp.Size()
	for a := range p.core.allocs {
		if sp.Contains(a) {
			n--
		}
	}
	for _, a := range simReservedFree(s.rng) {
		if sp.Contains(a) && p.core.allocs[a] == nil {
			n--
		}
	}
	return n
}

// finish heals the network, lets it settle, removes the dead, and asserts
// convergence; then it fills the whole range from random peers and
// asserts every address but the range's network and broadcast went out.
func (s *sim) finish() {
	s.tb.Helper()
	s.cfg.Drop, s.cfg.Dup = 0, 0
	s.endLeaves(true)
	s.opHeal()
	for _, p := range s.peers {
		p.pending = nil
	}
	s.converge("after healing")
	// rmpeer every dead peer that still owns space: also those removed
	// already, which a live peer may have given space to since (answering
	// an ask that was in flight when they died).
	owners := s.live()[0].core.ring.Shares()
	for _, d := range s.peers {
		if !d.alive && (!d.removed || owners[d.name].Size > 0) {
			p := pick(s.r, s.live())
			if !s.knowsAllOf(p, d) {
				s.fatalf("%s does not know all of %s after converging", p.name, d.name)
			}
			if _, err := p.core.RmPeer(d.name); err != nil {
				s.fatalf("%s: rmpeer %s: %v", p.name, d.name, err)
			}
			d.removed = true
			s.settle(p)
		}
	}
	s.converge("after rmpeer")
	ring := s.live()[0].core.ring
	if !ring.Seeded() {
		s.fatalf("not seeded after healing")
	}
	var sum uint64
	for p, sh := range ring.Shares() {
		if q := s.peer(p); q == nil || !q.alive {
			s.fatalf("dead peer %s still owns %d addresses", p, sh.Size)
		}
		sum += sh.Size
	}
	if sum != s.rng.Size() {
		s.fatalf("shares sum to %d, the range has %d", sum, s.rng.Size())
	}
	for a := uint64(s.rng.Start); a < s.rng.End; a++ {
		if _, ok := ring.Owner(Addr(a)); !ok {
			s.fatalf("nobody owns %s", Addr(a))
		}
	}
	s.fill()
	s.converge("after filling")
}

// converge delivers everything and exchanges whole states between all
// pairs until nothing changes, then asserts identical rings.
func (s *sim) converge(when string) {
	s.tb.Helper()
	for round := 0; round < 50; round++ {
		s.now = s.now.Add(time.Second)
		s.wantRing()
		s.drain()
		before := s.fingerprint()
		for _, a := range s.live() {
			for _, b := range s.live() {
				if a != b {
					s.deliver(a, b, a.core.Gossip(), false)
				}
			}
		}
		s.drain()
		s.tickAll()
		s.drain()
		s.check()
		if s.fingerprint() == before && s.agree() {
			return
		}
	}
	s.fatalf("no convergence %s", when)
}

// wantRing has every peer that can take part and has no ring ask for one,
// as an Allocator does while an allocation waits: seeding must complete
// even when the ballot everybody promised was a dead peer's.
func (s *sim) wantRing() {
	for i, p := range s.peers {
		if p.alive && !s.cfg.Observer[i] && !p.core.Seeded() {
			p.core.needRing(s.now)
			s.settle(p)
		}
	}
}

// drain delivers every message in flight (and those they cause).
func (s *sim) drain() {
	for n := 0; len(s.queue) > 0; n++ {
		if n > 1_000_000 {
			s.fatalf("message storm: %d in flight", len(s.queue))
		}
		m := heap.Pop(&s.queue).(*simMsg)
		if m.at.After(s.now) {
			s.now = m.at
		}
		src, dst := s.peer(m.src), s.peer(m.dst)
		if dst.alive && src.group == dst.group {
			s.deliver(src, dst, m.msg, m.unicast)
		}
	}
}

func (s *sim) fingerprint() string {
	var b strings.Builder
	for _, p := range s.live() {
		b.Write(p.core.Gossip())
	}
	return b.String()
}

// agree reports whether every live peer has the same ring.
func (s *sim) agree() bool {
	live := s.live()
	for _, p := range live[1:] {
		if !slices.Equal(p.core.ring.Seeds, live[0].core.ring.Seeds) || !slices.Equal(p.core.ring.Entries, live[0].core.ring.Entries) {
			return false
		}
	}
	return true
}

// fill allocates from random live peers until every one of them reports
// ErrFull, then asserts that the whole range went out. Each peer
// allocates in a burst, as the Allocator settles after a burst.
func (s *sim) fill() {
	s.tb.Helper()
	full := make(map[identity.PeerName]bool)
	for tries := 0; ; tries++ {
		var open []*simPeer
		for _, p := range s.live() {
			if !full[p.name] {
				open = append(open, p)
			}
		}
		if len(open) == 0 {
			break
		}
		if tries > 4*int(s.rng.Size())+100 {
			s.fatalf("filling the range does not end (%d tries)", tries)
		}
		p := pick(s.r, open)
		for waits := 0; ; {
			p.nextID++
			id := fmt.Sprintf("%d-fill%d", p.name&0xff, p.nextID)
			_, err := p.core.Allocate(id, s.def, s.now)
			if err == nil {
				s.stats.FillAllocs++
				clear(full) // space moved: ask everybody again
				waits = 0
				continue
			}
			s.settle(p)
			if errors.Is(err, ErrFull) {
				full[p.name] = true
				break
			}
			if !errors.Is(err, errWait) || waits > 10 {
				s.fatalf("%s: allocate while filling: %v (after %d waits)", p.name, err, waits)
			}
			waits++
			s.now = s.now.Add(askInterval)
			s.drain()
		}
		s.drain()
		s.check()
	}
	n := 0
	for _, p := range s.live() {
		n += len(p.core.allocs)
	}
	if want := int(s.rng.Size()) - 2; n != want {
		s.fatalf("range filled with %d addresses, want %d", n, want)
	}
}

// simReservedFree lists the addresses advertised free counts leave out.
func simReservedFree(r Range) []Addr { return []Addr{r.Start, Addr(r.End - 1)} }
