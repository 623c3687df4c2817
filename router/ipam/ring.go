package ipam

import (
	"errors"
	"fmt"
	"slices"

	"github.com/weavelab/weave/mesh/identity"
)

// Errors of the ring that callers tell apart with errors.Is.
var (
	// ErrIncompatible: the other ring can never be merged with ours (another
	// range, or seeded apart); the peers belong to different networks.
	ErrIncompatible = errors.New("incompatible address rings")
	// ErrInvalid: a ring received from the network is malformed or breaks
	// the ownership rules; it is ignored.
	ErrInvalid = errors.New("invalid address ring")
)

// reclaimBump is added to an entry's version when a peer takes over the
// space of a dead one (rmpeer): the dead peer may have made changes we never
// saw, and the takeover must beat them all.
const reclaimBump = 1 << 20

// Entry is one token of the ring: Peer owns the addresses from Token up to
// the next entry's token (or the end of the range). Only the owner changes
// an entry or inserts tokens inside its space, and every change raises
// Version, so merging two views keeps, for each token, the higher version.
type Entry struct {
	Token   Addr              `json:"token"`
	Peer    identity.PeerName `json:"peer"`
	Version uint32            `json:"version"`
	// Free is how many of the entry's addresses the owner has not
	// allocated, as of Version; others use it to choose whom to ask for
	// space.
	Free uint32 `json:"free"`
}

// Ring is the division of the allocation range among peers. The zero
// Entries means not yet seeded (see consensus). Two rings merge only when
// they cover the same range and were seeded from the same peers.
type Ring struct {
	Range   Range               `json:"range"`
	Seeds   []identity.PeerName `json:"seeds"`
	Entries []Entry             `json:"entries"`
}

// Seeded reports whether the ring has been divided among peers.
func (r *Ring) Seeded() bool { return len(r.Entries) > 0 }

// Clone returns a deep copy.
func (r *Ring) Clone() *Ring {
	return &Ring{Range: r.Range, Seeds: slices.Clone(r.Seeds), Entries: slices.Clone(r.Entries)}
}

// seed divides the range evenly among peers (sorted, deduplicated).
func (r *Ring) seed(peers []identity.PeerName) {
	peers = slices.Clone(peers)
	slices.Sort(peers)
	peers = slices.Compact(peers)
	r.Seeds = peers
	r.Entries = make([]Entry, 0, len(peers))
	size := r.Range.Size()
	n := uint64(len(peers))
	for i, p := range peers {
		start := uint64(r.Range.Start) + size*uint64(i)/n
		end := uint64(r.Range.Start) + size*uint64(i+1)/n
		if end == start {
			continue // more peers than addresses: some get none
		}
		sp := Range{Start: Addr(start), End: end}
		free := sp.Size() - uint64(len(r.unusable(sp)))
		r.Entries = append(r.Entries, Entry{Token: Addr(start), Peer: p, Version: 1, Free: uint32(free)})
	}
}

// unusable returns the range's network and broadcast addresses that lie in
// sp: no subnet hands them out, so free counts leave them out.
func (r *Ring) unusable(sp Range) []Addr {
	var out []Addr
	if sp.Contains(r.Range.Start) {
		out = append(out, r.Range.Start)
	}
	if last := Addr(r.Range.End - 1); sp.Contains(last) && last != r.Range.Start {
		out = append(out, last)
	}
	return out
}

// end returns where entry i's space ends.
func (r *Ring) end(i int) uint64 {
	if i+1 < len(r.Entries) {
		return uint64(r.Entries[i+1].Token)
	}
	return r.Range.End
}

// span returns entry i's space.
func (r *Ring) span(i int) Range { return Range{Start: r.Entries[i].Token, End: r.end(i)} }

// find returns the index of the entry whose space holds a (-1 if a is
// outside the ring).
func (r *Ring) find(a Addr) int {
	if !r.Seeded() || !r.Range.Contains(a) {
		return -1
	}
	i, found := slices.BinarySearchFunc(r.Entries, a, func(e Entry, a Addr) int { return cmpAddr(e.Token, a) })
	if found {
		return i
	}
	return i - 1
}

func cmpAddr(a, b Addr) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// Owner returns the peer owning a, and false when a is outside the ring or
// the ring is not seeded.
func (r *Ring) Owner(a Addr) (identity.PeerName, bool) {
	i := r.find(a)
	if i < 0 {
		return 0, false
	}
	return r.Entries[i].Peer, true
}

// Owned returns the spaces peer owns, in address order, adjacent ones
// joined.
func (r *Ring) Owned(peer identity.PeerName) []Range {
	var out []Range
	for i, e := range r.Entries {
		if e.Peer != peer {
			continue
		}
		s := r.span(i)
		if n := len(out); n > 0 && out[n-1].End == uint64(s.Start) {
			out[n-1].End = s.End
			continue
		}
		out = append(out, s)
	}
	return out
}

// Shares sums, per peer, the size of its space and its advertised free
// addresses.
func (r *Ring) Shares() map[identity.PeerName]Share {
	out := make(map[identity.PeerName]Share)
	for i, e := range r.Entries {
		s := out[e.Peer]
		s.Size += r.span(i).Size()
		s.Free += uint64(e.Free)
		out[e.Peer] = s
	}
	return out
}

// Share is one peer's part of the ring.
type Share struct {
	Size uint64 // addresses owned
	Free uint64 // of which not allocated, as last advertised
}

// splitAt makes sure a token starts at a (which must lie in the ring),
// inserting one with the covering entry's owner. It reports the index of
// the token at a.
func (r *Ring) splitAt(a Addr) int {
	i := r.find(a)
	if r.Entries[i].Token == a {
		return i
	}
	e := Entry{Token: a, Peer: r.Entries[i].Peer, Version: 1}
	r.Entries = slices.Insert(r.Entries, i+1, e)
	return i + 1
}

// transfer gives the space sp, which from must own entirely, to to. It is
// called by from alone (the owner rule).
func (r *Ring) transfer(from, to identity.PeerName, sp Range) error {
	if sp.Size() == 0 || !r.Range.ContainsRange(sp) {
		return fmt.Errorf("transfer %s: not within the ring", sp)
	}
	for i := range r.Entries {
		if s := r.span(i).Intersect(sp); s.Size() > 0 && r.Entries[i].Peer != from {
			return fmt.Errorf("transfer %s: %s is owned by %s", sp, s, r.Entries[i].Peer)
		}
	}
	first := r.splitAt(sp.Start)
	if sp.End < r.Range.End {
		r.splitAt(Addr(sp.End))
	}
	for i := first; i < len(r.Entries) && uint64(r.Entries[i].Token) < sp.End; i++ {
		r.Entries[i].Peer = to
		r.Entries[i].Version++
		r.Entries[i].Free = 0 // the new owner advertises its own figure
	}
	return nil
}

// reclaim gives every entry of dead to us (rmpeer), beating any version
// dead may have published that we never saw. It returns the number of
// addresses taken over.
func (r *Ring) reclaim(dead, us identity.PeerName) uint64 {
	var n uint64
	for i := range r.Entries {
		if r.Entries[i].Peer == dead {
			r.Entries[i].Peer = us
			r.Entries[i].Version += reclaimBump
			r.Entries[i].Free = 0
			n += r.span(i).Size()
		}
	}
	return n
}

// setFree records the free count of our entry i, raising its version when
// it changed. It reports whether it did.
func (r *Ring) setFree(i int, free uint32) bool {
	if r.Entries[i].Free == free {
		return false
	}
	r.Entries[i].Free = free
	r.Entries[i].Version++
	return true
}

// validate checks a ring received from the network: tokens strictly
// increasing, within the range, the first at its start, seeds sorted.
func (r *Ring) validate() error {
	if r.Range.Size() == 0 || r.Range.End > 1<<32 {
		return fmt.Errorf("%w: bad range", ErrInvalid)
	}
	if !slices.IsSorted(r.Seeds) {
		return fmt.Errorf("%w: seeds not sorted", ErrInvalid)
	}
	if len(r.Entries) == 0 {
		if len(r.Seeds) > 0 {
			return fmt.Errorf("%w: seeds without entries", ErrInvalid)
		}
		return nil
	}
	if len(r.Seeds) == 0 {
		return fmt.Errorf("%w: entries without seeds", ErrInvalid)
	}
	if r.Entries[0].Token != r.Range.Start {
		return fmt.Errorf("%w: first token %s is not the range's start", ErrInvalid, r.Entries[0].Token)
	}
	for i, e := range r.Entries {
		if !r.Range.Contains(e.Token) {
			return fmt.Errorf("%w: token %s outside the range", ErrInvalid, e.Token)
		}
		if i > 0 && e.Token <= r.Entries[i-1].Token {
			return fmt.Errorf("%w: tokens out of order at %s", ErrInvalid, e.Token)
		}
		if uint64(e.Free) > r.span(i).Size() {
			return fmt.Errorf("%w: token %s has more free addresses than it spans", ErrInvalid, e.Token)
		}
	}
	return nil
}

// merge folds o into r from the point of view of us: per token the higher
// version wins, tokens are never removed. It refuses, changing nothing, a
// ring of another range or other seeds (ErrIncompatible), a malformed one
// (ErrInvalid), and one where another peer has changed entries or inserted
// tokens in space that we own (only we may do that; it means our space was
// reclaimed with rmpeer while we were alive, ErrIncompatible), or one that
// contradicts ours so that the merge would be invalid (ErrIncompatible). A
// newer or conflicting version of one of our entries that still names us
// is a change of ours we forgot across a restart: our entry wins, raised
// above it. It reports whether r changed.
func (r *Ring) merge(o *Ring, us identity.PeerName) (bool, error) {
	if err := o.validate(); err != nil {
		return false, err
	}
	if o.Range != r.Range {
		return false, fmt.Errorf("%w: their allocation range is %s, ours %s (--ipalloc-range must be the same on every peer)", ErrIncompatible, o.Range, r.Range)
	}
	if !o.Seeded() {
		return false, nil
	}
	if !r.Seeded() {
		r.Seeds = slices.Clone(o.Seeds)
		r.Entries = slices.Clone(o.Entries)
		return true, nil
	}
	if !slices.Equal(o.Seeds, r.Seeds) {
		return false, fmt.Errorf("%w: their ring was seeded by %s, ours by %s (two networks allocated addresses before they were connected; reset one of them with weave reset)",
			ErrIncompatible, peerList(o.Seeds), peerList(r.Seeds))
	}
	merged := make([]Entry, 0, max(len(r.Entries), len(o.Entries)))
	changed := false
	i, j := 0, 0
	for i < len(r.Entries) || j < len(o.Entries) {
		switch {
		case j == len(o.Entries) || (i < len(r.Entries) && r.Entries[i].Token < o.Entries[j].Token):
			merged = append(merged, r.Entries[i])
			i++
		case i == len(r.Entries) || o.Entries[j].Token < r.Entries[i].Token:
			// A token new to us: it must not cut into our own space.
			e := o.Entries[j]
			if k := r.find(e.Token); k >= 0 && r.Entries[k].Peer == us {
				return false, fmt.Errorf("%w: peer %s split our space at %s (was this peer removed with weave rmpeer while it was running? reset it with weave reset)", ErrIncompatible, e.Peer, e.Token)
			}
			merged = append(merged, e)
			changed = true
			j++
		default:
			mine, theirs := r.Entries[i], o.Entries[j]
			switch {
			case mine.Peer == us && theirs.Peer == us && theirs != mine && theirs.Version >= mine.Version:
				// A change of our own entry that we forgot: we restarted
				// from a state saved before it went out. Our entry as it
				// is now stays, above every version of it seen.
				mine.Version = theirs.Version + 1
				merged = append(merged, mine)
				changed = true
			case theirs.Version > mine.Version:
				if mine.Peer == us && theirs != mine {
					return false, fmt.Errorf("%w: peer %s took over our space at %s (was this peer removed with weave rmpeer while it was running? reset it with weave reset)", ErrIncompatible, theirs.Peer, mine.Token)
				}
				merged = append(merged, theirs)
				changed = true
			case theirs.Version == mine.Version && theirs != mine:
				return false, fmt.Errorf("%w: two versions of the entry at %s: owner %s and %s", ErrInvalid, mine.Token, mine.Peer, theirs.Peer)
			default:
				merged = append(merged, mine)
			}
			i++
			j++
		}
	}
	if changed {
		// Each side is valid, so the result can only be invalid when the
		// two contradict each other about who split whose space.
		res := Ring{Range: r.Range, Seeds: r.Seeds, Entries: merged}
		if err := res.validate(); err != nil {
			return false, fmt.Errorf("%w: merged with ours, their ring is contradictory (%v) (was a peer removed with weave rmpeer before all its changes had spread?)", ErrIncompatible, err)
		}
		r.Entries = merged
	}
	return changed, nil
}

func peerList(ps []identity.PeerName) string {
	s := ""
	for i, p := range ps {
		if i > 0 {
			s += ","
		}
		s += p.String()
	}
	return "[" + s + "]"
}
