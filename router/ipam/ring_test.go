package ipam

import (
	"errors"
	"slices"
	"testing"

	"github.com/weavelab/weave/mesh/identity"
)

// ent writes an entry tersely: token, owner, version, free.
func ent(token string, peer identity.PeerName, version, free uint32) Entry {
	return Entry{Token: mustAddr(token), Peer: peer, Version: version, Free: free}
}

// ring24 is a ring over 10.0.0.0/24 seeded by seeds, with entries.
func ring24(seeds []identity.PeerName, entries ...Entry) *Ring {
	return &Ring{Range: rangeOf("10.0.0.0/24"), Seeds: seeds, Entries: entries}
}

func sameRing(a, b *Ring) bool {
	return a.Range == b.Range && slices.Equal(a.Seeds, b.Seeds) && slices.Equal(a.Entries, b.Entries)
}

func TestRingSeed(t *testing.T) {
	tests := []struct {
		name  string
		rng   string
		peers []identity.PeerName
		want  []Entry
	}{
		{"one peer", "10.0.0.0/24", []identity.PeerName{7}, []Entry{ent("10.0.0.0", 7, 1, 254)}},
		{"sorted and deduplicated", "10.0.0.0/24", []identity.PeerName{3, 1, 3, 2}, []Entry{
			ent("10.0.0.0", 1, 1, 84), ent("10.0.0.85", 2, 1, 85), ent("10.0.0.170", 3, 1, 85),
		}},
		{"more peers than addresses", "10.0.0.0/30", []identity.PeerName{1, 2, 3, 4, 5, 6}, []Entry{
			ent("10.0.0.0", 2, 1, 0), ent("10.0.0.1", 3, 1, 1), ent("10.0.0.2", 5, 1, 1), ent("10.0.0.3", 6, 1, 0),
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := &Ring{Range: rangeOf(tt.rng)}
			r.seed(tt.peers)
			if !slices.Equal(r.Entries, tt.want) {
				t.Errorf("entries\n got  %s\n want %s", ringString(r), ringString(&Ring{Entries: tt.want}))
			}
			if err := r.validate(); err != nil {
				t.Error(err)
			}
			if !slices.IsSorted(r.Seeds) || len(slices.Compact(slices.Clone(r.Seeds))) != len(r.Seeds) {
				t.Errorf("seeds %v not sorted and unique", r.Seeds)
			}
			var sum uint64
			for _, sh := range r.Shares() {
				sum += sh.Size
			}
			if sum != r.Range.Size() {
				t.Errorf("shares sum to %d of %d", sum, r.Range.Size())
			}
		})
	}
}

func TestRingOwnership(t *testing.T) {
	r := ring24([]identity.PeerName{1, 2},
		ent("10.0.0.0", 1, 1, 10), ent("10.0.0.64", 1, 1, 64), ent("10.0.0.128", 2, 1, 5), ent("10.0.0.200", 1, 3, 56))
	for _, tt := range []struct {
		addr  string
		owner identity.PeerName
	}{
		{"10.0.0.0", 1}, {"10.0.0.63", 1}, {"10.0.0.64", 1}, {"10.0.0.128", 2}, {"10.0.0.199", 2}, {"10.0.0.200", 1}, {"10.0.0.255", 1},
	} {
		if got, ok := r.Owner(mustAddr(tt.addr)); !ok || got != tt.owner {
			t.Errorf("Owner(%s) = %v, %v; want %v", tt.addr, got, ok, tt.owner)
		}
	}
	if _, ok := r.Owner(mustAddr("10.0.1.0")); ok {
		t.Error("an address outside the range has an owner")
	}
	if _, ok := (&Ring{Range: r.Range}).Owner(mustAddr("10.0.0.1")); ok {
		t.Error("an unseeded ring has owners")
	}
	want := []Range{{Start: mustAddr("10.0.0.0"), End: uint64(mustAddr("10.0.0.128"))}, {Start: mustAddr("10.0.0.200"), End: r.Range.End}}
	if got := r.Owned(1); !slices.Equal(got, want) {
		t.Errorf("Owned(1) = %v, want %v (adjacent entries joined)", got, want)
	}
	sh := r.Shares()
	if sh[1] != (Share{Size: 184, Free: 130}) || sh[2] != (Share{Size: 72, Free: 5}) {
		t.Errorf("Shares = %+v", sh)
	}
}

func TestRingValidate(t *testing.T) {
	seeds := []identity.PeerName{1, 2}
	tests := []struct {
		name string
		r    *Ring
		ok   bool
	}{
		{"unseeded", ring24(nil), true},
		{"seeded", ring24(seeds, ent("10.0.0.0", 1, 1, 0), ent("10.0.0.128", 2, 1, 128)), true},
		{"bad range", &Ring{Range: Range{Start: 10, End: 10}}, false},
		{"range past the address space", &Ring{Range: Range{Start: 1 << 31, End: 1<<32 + 1}}, false},
		{"seeds not sorted", ring24([]identity.PeerName{2, 1}, ent("10.0.0.0", 1, 1, 0)), false},
		{"seeds without entries", ring24(seeds), false},
		{"entries without seeds", ring24(nil, ent("10.0.0.0", 1, 1, 0)), false},
		{"first token not at the start", ring24(seeds, ent("10.0.0.1", 1, 1, 0)), false},
		{"token outside the range", ring24(seeds, ent("10.0.0.0", 1, 1, 0), ent("10.0.1.0", 2, 1, 0)), false},
		{"tokens out of order", ring24(seeds, ent("10.0.0.0", 1, 1, 0), ent("10.0.0.200", 2, 1, 0), ent("10.0.0.100", 1, 1, 0)), false},
		{"duplicate token", ring24(seeds, ent("10.0.0.0", 1, 1, 0), ent("10.0.0.0", 2, 1, 0)), false},
		{"more free than addresses", ring24(seeds, ent("10.0.0.0", 1, 1, 0), ent("10.0.0.128", 2, 1, 129)), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.r.validate()
			if (err == nil) != tt.ok {
				t.Fatalf("validate = %v, want ok %v", err, tt.ok)
			}
			if err != nil && !errors.Is(err, ErrInvalid) {
				t.Errorf("error %v does not wrap ErrInvalid", err)
			}
		})
	}
}

func TestRingMerge(t *testing.T) {
	const us = 1
	seeds := []identity.PeerName{1, 2}
	// ours: 1 owns 0-127, 2 owns 128-191, 3 owns 192-255.
	ours := func() *Ring {
		return ring24(seeds, ent("10.0.0.0", 1, 4, 60), ent("10.0.0.128", 2, 3, 60), ent("10.0.0.192", 3, 2, 64))
	}
	tests := []struct {
		name    string
		theirs  *Ring
		err     error // nil: merges
		changed bool
		want    *Ring // nil: ours unchanged
	}{
		{
			name:   "identical",
			theirs: ours(),
		},
		{
			name:    "higher version wins",
			theirs:  ring24(seeds, ent("10.0.0.0", 1, 4, 60), ent("10.0.0.128", 2, 5, 10), ent("10.0.0.192", 3, 2, 64)),
			changed: true,
			want:    ring24(seeds, ent("10.0.0.0", 1, 4, 60), ent("10.0.0.128", 2, 5, 10), ent("10.0.0.192", 3, 2, 64)),
		},
		{
			name:   "lower version ignored",
			theirs: ring24(seeds, ent("10.0.0.0", 1, 3, 120), ent("10.0.0.128", 2, 1, 64), ent("10.0.0.192", 3, 1, 64)),
		},
		{
			name:    "new token in another peer's space",
			theirs:  ring24(seeds, ent("10.0.0.0", 1, 4, 60), ent("10.0.0.128", 2, 4, 30), ent("10.0.0.160", 3, 2, 0), ent("10.0.0.192", 3, 2, 64)),
			changed: true,
			want:    ring24(seeds, ent("10.0.0.0", 1, 4, 60), ent("10.0.0.128", 2, 4, 30), ent("10.0.0.160", 3, 2, 0), ent("10.0.0.192", 3, 2, 64)),
		},
		{
			name:    "space handed to us",
			theirs:  ring24(seeds, ent("10.0.0.0", 1, 4, 60), ent("10.0.0.128", 2, 4, 30), ent("10.0.0.160", 1, 2, 0), ent("10.0.0.192", 3, 2, 64)),
			changed: true,
			want:    ring24(seeds, ent("10.0.0.0", 1, 4, 60), ent("10.0.0.128", 2, 4, 30), ent("10.0.0.160", 1, 2, 0), ent("10.0.0.192", 3, 2, 64)),
		},
		{
			name:    "a shorter ring only adds what it knows",
			theirs:  ring24(seeds, ent("10.0.0.0", 1, 4, 60), ent("10.0.0.192", 3, 9, 1)),
			changed: true,
			want:    ring24(seeds, ent("10.0.0.0", 1, 4, 60), ent("10.0.0.128", 2, 3, 60), ent("10.0.0.192", 3, 9, 1)),
		},
		{
			name:   "token inserted in our space",
			theirs: ring24(seeds, ent("10.0.0.0", 1, 4, 60), ent("10.0.0.64", 2, 2, 64), ent("10.0.0.128", 2, 3, 60), ent("10.0.0.192", 3, 2, 64)),
			err:    ErrIncompatible,
		},
		{
			name:   "our entry taken by another peer",
			theirs: ring24(seeds, ent("10.0.0.0", 2, 4+reclaimBump, 0), ent("10.0.0.128", 2, 3, 60), ent("10.0.0.192", 3, 2, 64)),
			err:    ErrIncompatible,
		},
		{
			name:    "a newer version of our entry that we forgot (restart)",
			theirs:  ring24(seeds, ent("10.0.0.0", 1, 6, 55), ent("10.0.0.128", 2, 3, 60), ent("10.0.0.192", 3, 2, 64)),
			changed: true,
			want:    ring24(seeds, ent("10.0.0.0", 1, 7, 60), ent("10.0.0.128", 2, 3, 60), ent("10.0.0.192", 3, 2, 64)),
		},
		{
			name:    "another content of our entry at our version (restart)",
			theirs:  ring24(seeds, ent("10.0.0.0", 1, 4, 55), ent("10.0.0.128", 2, 3, 60), ent("10.0.0.192", 3, 2, 64)),
			changed: true,
			want:    ring24(seeds, ent("10.0.0.0", 1, 5, 60), ent("10.0.0.128", 2, 3, 60), ent("10.0.0.192", 3, 2, 64)),
		},
		{
			name:   "two versions of one entry",
			theirs: ring24(seeds, ent("10.0.0.0", 1, 4, 60), ent("10.0.0.128", 3, 3, 60), ent("10.0.0.192", 3, 2, 64)),
			err:    ErrInvalid,
		},
		{
			// In ours peer 2's entry at v4 spans 128-191 with 60 free; in
			// theirs an older version of it was split at 160. Both are
			// valid; merged, the entry would span 32 with 60 free.
			name:   "contradictory views",
			theirs: ring24(seeds, ent("10.0.0.0", 1, 4, 60), ent("10.0.0.128", 2, 2, 30), ent("10.0.0.160", 3, 2, 0), ent("10.0.0.192", 3, 2, 64)),
			err:    ErrIncompatible,
		},
		{
			name:   "other seeds",
			theirs: ring24([]identity.PeerName{1, 3}, ent("10.0.0.0", 1, 1, 128), ent("10.0.0.128", 3, 1, 128)),
			err:    ErrIncompatible,
		},
		{
			name:   "other range",
			theirs: &Ring{Range: rangeOf("10.0.1.0/24"), Seeds: seeds, Entries: []Entry{ent("10.0.1.0", 1, 1, 0)}},
			err:    ErrIncompatible,
		},
		{
			name:   "unseeded ring of the same range",
			theirs: ring24(nil),
		},
		{
			name:   "invalid ring",
			theirs: ring24(seeds, ent("10.0.0.0", 1, 9, 0), ent("10.0.0.200", 2, 9, 0), ent("10.0.0.100", 3, 9, 0)),
			err:    ErrInvalid,
		},
		{
			name:   "invalid ring: first token not at start",
			theirs: ring24(seeds, ent("10.0.0.5", 1, 9, 0)),
			err:    ErrInvalid,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := ours()
			before := r.Clone()
			theirs := tt.theirs.Clone()
			changed, err := r.merge(tt.theirs, us)
			if tt.err != nil {
				if !errors.Is(err, tt.err) {
					t.Fatalf("merge = %v, want %v", err, tt.err)
				}
			} else if err != nil {
				t.Fatalf("merge: %v", err)
			}
			if changed != tt.changed {
				t.Errorf("changed = %v, want %v", changed, tt.changed)
			}
			want := tt.want
			if want == nil {
				want = before
			}
			if !sameRing(r, want) {
				t.Errorf("ring after merge\n got  %s\n want %s", ringString(r), ringString(want))
			}
			if !sameRing(tt.theirs, theirs) {
				t.Error("merge changed its argument")
			}
			if err := r.validate(); err != nil {
				t.Errorf("merged ring invalid: %v", err)
			}
		})
	}
}

func TestRingMergeIntoUnseeded(t *testing.T) {
	r := ring24(nil)
	o := ring24([]identity.PeerName{1, 2}, ent("10.0.0.0", 1, 1, 127), ent("10.0.0.128", 2, 1, 127))
	changed, err := r.merge(o, 3)
	if err != nil || !changed || !sameRing(r, o) {
		t.Fatalf("merge into unseeded = %v, %v: %s", changed, err, ringString(r))
	}
	o.Entries[0].Free = 5
	o.Seeds[0] = 9
	if r.Entries[0].Free != 127 || r.Seeds[0] != 1 {
		t.Error("the merged ring shares memory with its source")
	}
}

// TestRingMergeConverges merges three views in every order and checks
// that all orders give the same ring, twice merging being a no-op.
func TestRingMergeConverges(t *testing.T) {
	seeds := []identity.PeerName{1, 2, 3}
	views := []*Ring{
		ring24(seeds, ent("10.0.0.0", 1, 2, 80), ent("10.0.0.85", 2, 1, 85), ent("10.0.0.170", 3, 1, 84)),
		ring24(seeds, ent("10.0.0.0", 1, 1, 84), ent("10.0.0.85", 2, 3, 30), ent("10.0.0.120", 1, 2, 0), ent("10.0.0.170", 3, 1, 84)),
		ring24(seeds, ent("10.0.0.0", 1, 1, 84), ent("10.0.0.85", 2, 1, 85), ent("10.0.0.170", 3, 4, 20), ent("10.0.0.250", 2, 2, 0)),
	}
	var first *Ring
	for _, order := range [][]int{{0, 1, 2}, {0, 2, 1}, {1, 0, 2}, {1, 2, 0}, {2, 0, 1}, {2, 1, 0}} {
		r := views[order[0]].Clone()
		for _, i := range order[1:] {
			if _, err := r.merge(views[i], 9); err != nil {
				t.Fatalf("order %v: %v", order, err)
			}
		}
		if changed, err := r.merge(r.Clone(), 9); changed || err != nil {
			t.Errorf("merging a ring into itself: %v, %v", changed, err)
		}
		if first == nil {
			first = r
		} else if !sameRing(r, first) {
			t.Errorf("order %v gives\n %s\nnot\n %s", order, ringString(r), ringString(first))
		}
	}
}

func TestRingTransfer(t *testing.T) {
	seeds := []identity.PeerName{1, 2}
	base := func() *Ring {
		return ring24(seeds, ent("10.0.0.0", 1, 3, 20), ent("10.0.0.128", 2, 2, 20))
	}
	tests := []struct {
		name    string
		from    identity.PeerName
		sp      Range
		want    []Entry
		wantErr bool
	}{
		{
			name: "middle of an entry",
			from: 1, sp: Range{Start: mustAddr("10.0.0.64"), End: uint64(mustAddr("10.0.0.96"))},
			want: []Entry{ent("10.0.0.0", 1, 3, 20), ent("10.0.0.64", 3, 2, 0), ent("10.0.0.96", 1, 1, 0), ent("10.0.0.128", 2, 2, 20)},
		},
		{
			name: "end of an entry",
			from: 1, sp: Range{Start: mustAddr("10.0.0.64"), End: uint64(mustAddr("10.0.0.128"))},
			want: []Entry{ent("10.0.0.0", 1, 3, 20), ent("10.0.0.64", 3, 2, 0), ent("10.0.0.128", 2, 2, 20)},
		},
		{
			name: "a whole entry",
			from: 1, sp: Range{Start: mustAddr("10.0.0.0"), End: uint64(mustAddr("10.0.0.128"))},
			want: []Entry{ent("10.0.0.0", 3, 4, 0), ent("10.0.0.128", 2, 2, 20)},
		},
		{
			name: "up to the end of the range",
			from: 2, sp: Range{Start: mustAddr("10.0.0.250"), End: rangeOf("10.0.0.0/24").End},
			want: []Entry{ent("10.0.0.0", 1, 3, 20), ent("10.0.0.128", 2, 2, 20), ent("10.0.0.250", 3, 2, 0)},
		},
		{name: "not all ours", from: 1, sp: Range{Start: mustAddr("10.0.0.100"), End: uint64(mustAddr("10.0.0.130"))}, wantErr: true},
		{name: "not ours at all", from: 1, sp: Range{Start: mustAddr("10.0.0.130"), End: uint64(mustAddr("10.0.0.140"))}, wantErr: true},
		{name: "outside the ring", from: 1, sp: rangeOf("10.0.1.0/30"), wantErr: true},
		{name: "empty", from: 1, sp: Range{Start: mustAddr("10.0.0.5"), End: uint64(mustAddr("10.0.0.5"))}, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := base()
			err := r.transfer(tt.from, 3, tt.sp)
			if tt.wantErr {
				if err == nil {
					t.Fatal("transfer succeeded")
				}
				if !sameRing(r, base()) {
					t.Errorf("a failed transfer changed the ring: %s", ringString(r))
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(r.Entries, tt.want) {
				t.Errorf("after transfer\n got  %s\n want %s", ringString(r), ringString(&Ring{Entries: tt.want}))
			}
			if err := r.validate(); err != nil {
				t.Error(err)
			}
			// Other peers accept the change.
			other := base()
			if changed, err := other.merge(r, 4); err != nil || !changed || !sameRing(other, r) {
				t.Errorf("peer 2 merging the transfer: %v, %v", changed, err)
			}
		})
	}
}

func TestRingReclaim(t *testing.T) {
	seeds := []identity.PeerName{1, 2, 3}
	r := ring24(seeds, ent("10.0.0.0", 1, 3, 10), ent("10.0.0.85", 2, 7, 5), ent("10.0.0.100", 3, 2, 1), ent("10.0.0.170", 2, 1, 86))
	before := r.Clone()
	if n := r.reclaim(2, 3); n != 15+86 {
		t.Errorf("reclaimed %d addresses, want %d", n, 15+86)
	}
	want := []Entry{ent("10.0.0.0", 1, 3, 10), ent("10.0.0.85", 3, 7+reclaimBump, 0), ent("10.0.0.100", 3, 2, 1), ent("10.0.0.170", 3, 1+reclaimBump, 0)}
	if !slices.Equal(r.Entries, want) {
		t.Errorf("after reclaim %s", ringString(r))
	}
	if n := r.reclaim(2, 3); n != 0 {
		t.Errorf("reclaiming twice took %d more", n)
	}
	// A third peer takes the reclaim over anything the dead peer may have
	// published meanwhile.
	third := before.Clone()
	third.Entries[1].Version += 1000
	third.Entries[1].Free = 0
	if changed, err := third.merge(r, 1); err != nil || !changed || !slices.Equal(third.Entries, want) {
		t.Errorf("third peer merging the reclaim: %v, %v: %s", changed, err, ringString(third))
	}
}
