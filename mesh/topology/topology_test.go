package topology

import (
	"errors"
	"math/rand/v2"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/weavelab/weave/mesh/identity"
)

func TestNew(t *testing.T) {
	topo := newTopo(t, 1)
	if topo.Len() != 1 {
		t.Fatalf("Len = %d, want 1", topo.Len())
	}
	our := topo.Our()
	if our.Name != pn(1) || our.UID != 1001 || our.Version != 1 || len(our.Conns) != 0 {
		t.Fatalf("our entry = %+v", our)
	}
	if p, ok := topo.Get(pn(1)); !ok || !reflect.DeepEqual(p, our) {
		t.Fatalf("Get(us) = %+v, %v", p, ok)
	}
	if _, ok := topo.Get(pn(2)); ok {
		t.Fatal("Get of unknown peer succeeded")
	}
}

func TestMergeRules(t *testing.T) {
	// We are pn(1) with UID 1001 at version 1 (5 after the bump in setup).
	type stamp struct {
		uid     identity.UID
		version uint64
	}
	tests := []struct {
		name        string
		known       []Peer // merged first
		update      []Peer
		wantErr     string
		wantChanged []identity.PeerName
		want        map[identity.PeerName]stamp // stored afterwards
	}{
		{
			name:        "new peer added",
			update:      []Peer{mk(2, 7, 3, est(1))},
			wantChanged: []identity.PeerName{pn(2)},
			want:        map[identity.PeerName]stamp{pn(2): {7, 3}},
		},
		{
			name:        "newer version replaces",
			known:       []Peer{mk(2, 7, 3)},
			update:      []Peer{mk(2, 7, 4, est(1))},
			wantChanged: []identity.PeerName{pn(2)},
			want:        map[identity.PeerName]stamp{pn(2): {7, 4}},
		},
		{
			name:   "older version ignored",
			known:  []Peer{mk(2, 7, 3)},
			update: []Peer{mk(2, 7, 2, est(1))},
			want:   map[identity.PeerName]stamp{pn(2): {7, 3}},
		},
		{
			name:   "same version same uid ignored",
			known:  []Peer{mk(2, 7, 3)},
			update: []Peer{mk(2, 7, 3, est(1))},
			want:   map[identity.PeerName]stamp{pn(2): {7, 3}},
		},
		{
			name:        "other uid with higher version wins",
			known:       []Peer{mk(2, 7, 3)},
			update:      []Peer{mk(2, 5, 4)},
			wantChanged: []identity.PeerName{pn(2)},
			want:        map[identity.PeerName]stamp{pn(2): {5, 4}},
		},
		{
			name:   "other uid with lower version loses (restarted peer not yet caught up)",
			known:  []Peer{mk(2, 7, 3)},
			update: []Peer{mk(2, 9, 1)},
			want:   map[identity.PeerName]stamp{pn(2): {7, 3}},
		},
		{
			name:        "other uid same version: higher uid wins",
			known:       []Peer{mk(2, 7, 3)},
			update:      []Peer{mk(2, 8, 3)},
			wantChanged: []identity.PeerName{pn(2)},
			want:        map[identity.PeerName]stamp{pn(2): {8, 3}},
		},
		{
			name:   "other uid same version: lower uid loses",
			known:  []Peer{mk(2, 7, 3)},
			update: []Peer{mk(2, 6, 3)},
			want:   map[identity.PeerName]stamp{pn(2): {7, 3}},
		},
		{
			name:   "our name with our uid is ignored even when newer",
			update: []Peer{mk(1, 1001, 99, est(2))},
			want:   map[identity.PeerName]stamp{pn(1): {1001, 5}},
		},
		{
			name:   "our name with other uid and lower version ignored",
			update: []Peer{mk(1, 3, 4, est(2))},
			want:   map[identity.PeerName]stamp{pn(1): {1001, 5}},
		},
		{
			name:   "our name with other uid, same version, lower uid ignored",
			update: []Peer{mk(1, 3, 5, est(2))},
			want:   map[identity.PeerName]stamp{pn(1): {1001, 5}},
		},
		{
			name:        "our name with other uid and higher version: we bump above it",
			update:      []Peer{mk(1, 3, 40, est(2))},
			wantChanged: []identity.PeerName{pn(1)},
			want:        map[identity.PeerName]stamp{pn(1): {1001, 41}},
		},
		{
			name:        "our name with other uid, same version, higher uid: we bump",
			update:      []Peer{mk(1, 5000, 5)},
			wantChanged: []identity.PeerName{pn(1)},
			want:        map[identity.PeerName]stamp{pn(1): {1001, 6}},
		},
		{
			name:        "several entries, changed sorted by name",
			known:       []Peer{mk(3, 7, 3)},
			update:      []Peer{mk(4, 1, 1), mk(3, 7, 9), mk(2, 1, 1), mk(5, 1, 1)},
			wantChanged: []identity.PeerName{pn(2), pn(3), pn(4), pn(5)},
			want:        map[identity.PeerName]stamp{pn(2): {1, 1}, pn(3): {7, 9}, pn(4): {1, 1}, pn(5): {1, 1}},
		},
		{
			name:    "version 0 rejects the whole update",
			known:   []Peer{mk(3, 7, 3)},
			update:  []Peer{mk(2, 1, 1), mk(3, 7, 0)},
			wantErr: "version 0",
			want:    map[identity.PeerName]stamp{pn(3): {7, 3}},
		},
		{
			name:    "connection to self",
			update:  []Peer{mk(2, 1, 1, est(1)), mk(3, 1, 1, est(3))},
			wantErr: "connection to itself",
		},
		{name: "zero uid", update: []Peer{mk(2, 0, 1)}, wantErr: "zero uid"},
		{name: "zero name", update: []Peer{{Peer: identity.Peer{UID: 1}, Version: 1}}, wantErr: "zero name"},
		{name: "version above max", update: []Peer{mk(2, 1, MaxVersion+1)}, wantErr: "above max"},
		{
			name:   "our name at max version cannot be outbid and is ignored",
			update: []Peer{mk(1, 5000, MaxVersion)},
			want:   map[identity.PeerName]stamp{pn(1): {1001, 5}},
		},
		{
			name:        "our name just below max version: we bump to max",
			update:      []Peer{mk(1, 5000, MaxVersion-1)},
			wantChanged: []identity.PeerName{pn(1)},
			want:        map[identity.PeerName]stamp{pn(1): {1001, MaxVersion}},
		},
		{name: "peer twice", update: []Peer{mk(2, 1, 1), mk(2, 1, 2)}, wantErr: "listed twice"},
		{name: "conn twice", update: []Peer{mk(2, 1, 1, est(3), pend(3))}, wantErr: "listed twice"},
		{name: "conn to zero name", update: []Peer{mk(2, 1, 1, Conn{})}, wantErr: "zero name"},
		{
			name:    "nickname too long",
			update:  []Peer{{Peer: identity.Peer{Name: pn(2), UID: 1, NickName: strings.Repeat("x", MaxNickNameLen+1)}, Version: 1}},
			wantErr: "nickname",
		},
		{
			name:    "nickname not utf-8",
			update:  []Peer{{Peer: identity.Peer{Name: pn(2), UID: 1, NickName: "\xff"}, Version: 1}},
			wantErr: "nickname",
		},
		{
			name:    "address too long",
			update:  []Peer{mk(2, 1, 1, Conn{Remote: pn(3), RemoteAddr: strings.Repeat("a", MaxAddrLen+1)})},
			wantErr: "address",
		},
		{
			name: "too many conns",
			update: func() []Peer {
				p := mk(2, 1, 1)
				for i := range MaxConnsPerPeer + 1 {
					p.Conns = append(p.Conns, pend(100+i))
				}
				return []Peer{p}
			}(),
			wantErr: "connections",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			topo := newTopo(t, 1)
			for range 4 {
				topo.SetOurConns(nil) // our version is now 5
			}
			mustMerge(t, topo, tc.known...)
			before := topo.Peers()
			changed, err := topo.Merge(tc.update)
			if tc.wantErr != "" {
				if err == nil || !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want ErrInvalid containing %q", err, tc.wantErr)
				}
				if changed != nil {
					t.Errorf("changed = %v on error", changed)
				}
				if after := topo.Peers(); !reflect.DeepEqual(before, after) {
					t.Errorf("invalid update changed the topology:\nbefore %+v\nafter  %+v", before, after)
				}
			} else if err != nil {
				t.Fatalf("merge: %v", err)
			}
			var names []identity.PeerName
			for _, p := range changed {
				names = append(names, p.Name)
				stored, _ := topo.Get(p.Name)
				if !reflect.DeepEqual(stored, p) {
					t.Errorf("changed entry %+v differs from stored %+v", p, stored)
				}
			}
			if !slices.Equal(names, tc.wantChanged) {
				t.Errorf("changed = %v, want %v", names, tc.wantChanged)
			}
			for name, w := range tc.want {
				p, ok := topo.Get(name)
				if !ok || p.UID != w.uid || p.Version != w.version {
					t.Errorf("stored %s = uid %d version %d (known %v), want uid %d version %d", name, p.UID, p.Version, ok, w.uid, w.version)
				}
			}
			if our := topo.Our(); our.UID != 1001 {
				t.Errorf("our entry replaced by %+v", our)
			}
		})
	}
}

func TestMergeCopies(t *testing.T) {
	topo := newTopo(t, 1)
	update := []Peer{mk(2, 1, 1, est(4), est(3))}
	changed := mustMerge(t, topo, update...)
	update[0].Conns[0].Remote = pn(9)
	changed[0].Conns[0].Remote = pn(9)
	got, _ := topo.Get(pn(2))
	want := []Conn{est(3), est(4)} // stored sorted by remote
	if !reflect.DeepEqual(got.Conns, want) {
		t.Fatalf("stored conns = %+v, want %+v (aliasing or not sorted)", got.Conns, want)
	}
	got.Conns[0].Remote = pn(9)
	for _, p := range topo.Peers() {
		p.Conns = append(p.Conns[:0], Conn{Remote: pn(8)})
	}
	if again, _ := topo.Get(pn(2)); !reflect.DeepEqual(again.Conns, want) {
		t.Fatalf("Get/Peers returned aliased conns: %+v", again.Conns)
	}
}

// Merging the same set of updates in any order, any number of times, gives
// the same topology: the merge rule is a join.
func TestMergeOrderIndependent(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for round := range 50 {
		var updates []Peer
		for range 40 {
			// A (name, uid, version) triple always carries the same content,
			// as it does when only the named peer makes its entries.
			i, uid, v := 2+rng.IntN(8), 1+rng.IntN(3), 1+rng.IntN(4)
			updates = append(updates, mk(i, identity.UID(uid), uint64(v), est(10+uid*4+v)))
		}
		var want []Peer
		for k := range 5 {
			topo := newTopo(t, 1)
			rng.Shuffle(len(updates), func(a, b int) { updates[a], updates[b] = updates[b], updates[a] })
			for _, u := range updates {
				mustMerge(t, topo, u)
				if k%2 == 0 {
					mustMerge(t, topo, u) // idempotent
				}
			}
			got := topo.Peers()
			if k == 0 {
				want = got
			} else if !reflect.DeepEqual(got, want) {
				t.Fatalf("round %d order %d: got %#v, want %#v", round, k, got, want)
			}
		}
	}
}

// A peer restarts with a new UID at version 1. Its old entry (version 10)
// still circulates; when the new run hears it, it bumps above it and its new
// entry then wins everywhere.
func TestRestartedPeerWinsAfterBump(t *testing.T) {
	other := newTopo(t, 1)
	mustMerge(t, other, mk(2, 77, 10, est(1)))

	restarted := New(identity.Peer{Name: pn(2), NickName: "host2", UID: 88})
	update := restarted.SetOurConns([]Conn{est(1)})
	if changed := mustMerge(t, other, update...); len(changed) != 0 {
		t.Fatalf("stale-version new run replaced the old entry: %+v", changed)
	}
	changed := mustMerge(t, restarted, other.NewerThan(restarted.Summary())...)
	if len(changed) != 2 || changed[1].Name != pn(2) || changed[1].UID != 88 || changed[1].Version != 11 {
		t.Fatalf("restarted peer's changed = %+v, want pn(1) and our entry bumped to 11", changed)
	}
	mustMerge(t, other, changed...)
	if p, _ := other.Get(pn(2)); p.UID != 88 || p.Version != 11 {
		t.Fatalf("other holds %+v, want the new run at version 11", p)
	}
}

func TestSetOurConns(t *testing.T) {
	topo := newTopo(t, 1)
	long := Conn{Remote: pn(6), RemoteAddr: strings.Repeat("a", MaxAddrLen+1)}
	update := topo.SetOurConns([]Conn{est(4), pend(1), {}, pend(3), est(3), long})
	want := Peer{
		Peer:    identity.Peer{Name: pn(1), NickName: "host1", UID: 1001},
		Version: 2,
		Conns:   []Conn{est(3), est(4), {Remote: pn(6)}},
	}
	if len(update) != 1 || !reflect.DeepEqual(update[0], want) {
		t.Fatalf("update = %+v, want [%+v]", update, want)
	}
	if err := update[0].Validate(); err != nil {
		t.Fatalf("our entry invalid: %v", err)
	}
	if our := topo.Our(); !reflect.DeepEqual(our, want) {
		t.Fatalf("Our() = %+v", our)
	}
	if u := topo.SetOurConns(nil); u[0].Version != 3 || u[0].Conns != nil && len(u[0].Conns) != 0 {
		t.Fatalf("second update = %+v", u)
	}
	// The update merges cleanly elsewhere.
	other := newTopo(t, 2)
	if changed := mustMerge(t, other, update...); len(changed) != 1 {
		t.Fatalf("changed = %+v", changed)
	}
}

func TestGC(t *testing.T) {
	tests := []struct {
		name        string
		ourConns    []Conn
		others      []Peer
		wantRemoved []identity.PeerName
	}{
		{name: "nothing known"},
		{
			name:     "chain kept, established or not",
			ourConns: []Conn{pend(2)},
			others:   []Peer{mk(2, 1, 1, est(3)), mk(3, 1, 1, pend(4)), mk(4, 1, 1)},
		},
		{
			name:        "peer listing us but listed by nobody goes",
			ourConns:    []Conn{est(2)},
			others:      []Peer{mk(2, 1, 1, est(1)), mk(5, 1, 1, est(1), est(2))},
			wantRemoved: []identity.PeerName{pn(5)},
		},
		{
			name:        "separate component goes",
			ourConns:    []Conn{est(2)},
			others:      []Peer{mk(2, 1, 1), mk(6, 1, 1, est(7)), mk(7, 1, 1, est(6))},
			wantRemoved: []identity.PeerName{pn(6), pn(7)},
		},
		{
			name:     "reached through a peer listed only by a far peer",
			ourConns: []Conn{est(2)},
			others:   []Peer{mk(2, 1, 1, est(3)), mk(3, 1, 1, est(4)), mk(4, 1, 1)},
		},
		{
			name:        "link through a peer with no entry does not count",
			ourConns:    []Conn{est(2)},
			others:      []Peer{mk(3, 1, 1, est(4)), mk(4, 1, 1)},
			wantRemoved: []identity.PeerName{pn(3), pn(4)},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			topo := newTopo(t, 1)
			topo.SetOurConns(tc.ourConns)
			mustMerge(t, topo, tc.others...)
			r := topo.Routes()
			removed := topo.GC()
			if !slices.Equal(removed, tc.wantRemoved) {
				t.Fatalf("removed = %v, want %v", removed, tc.wantRemoved)
			}
			if topo.Len() != 1+len(tc.others)-len(removed) {
				t.Errorf("Len = %d after removing %d of %d", topo.Len(), len(removed), 1+len(tc.others))
			}
			for _, n := range removed {
				if _, ok := topo.Get(n); ok {
					t.Errorf("%s still present", n)
				}
			}
			if len(removed) > 0 && topo.Routes() == r {
				t.Error("routes not recomputed after GC")
			}
			if again := topo.GC(); again != nil {
				t.Errorf("second GC removed %v", again)
			}
		})
	}
}

// A dead peer's neighbours drop their connections to it; its own stale entry
// still lists them, but it goes at the next GC.
func TestGCDeadPeer(t *testing.T) {
	topo := newTopo(t, 1)
	topo.SetOurConns([]Conn{est(2), est(3)})
	mustMerge(t, topo, mk(2, 1, 1, est(1), est(3)), mk(3, 1, 1, est(1), est(2)))
	if removed := topo.GC(); removed != nil {
		t.Fatalf("removed %v from a healthy mesh", removed)
	}
	topo.SetOurConns([]Conn{est(2)})
	mustMerge(t, topo, mk(2, 1, 2, est(1)))
	if removed := topo.GC(); !slices.Equal(removed, []identity.PeerName{pn(3)}) {
		t.Fatalf("removed = %v, want [%s]", removed, pn(3))
	}
}

func TestKnownAddrs(t *testing.T) {
	topo := newTopo(t, 1)
	topo.SetOurConns([]Conn{{Remote: pn(2), RemoteAddr: "h2:6783", Outbound: true}, {Remote: pn(3), RemoteAddr: "h3:40000"}})
	mustMerge(t, topo,
		mk(2, 1, 1, Conn{Remote: pn(3), RemoteAddr: "h3:6783", Outbound: true}, Conn{Remote: pn(1), RemoteAddr: "h1:6783", Outbound: true}),
		mk(4, 1, 1, Conn{Remote: pn(3), RemoteAddr: "h3:6783", Outbound: true}, Conn{Remote: pn(2), RemoteAddr: "h2b:6783", Outbound: true}))
	want := map[identity.PeerName][]string{pn(2): {"h2:6783", "h2b:6783"}, pn(3): {"h3:6783"}}
	if got := topo.KnownAddrs(); !reflect.DeepEqual(got, want) {
		t.Fatalf("KnownAddrs = %v, want %v", got, want)
	}
}

func TestOurVersionSaturates(t *testing.T) {
	topo := newTopo(t, 1)
	mustMerge(t, topo, mk(1, 5000, MaxVersion-1))
	if u := topo.SetOurConns(nil); u[0].Version != MaxVersion {
		t.Fatalf("version = %d, want saturated at %d", u[0].Version, uint64(MaxVersion))
	}
}

func TestInternerSharesEqualEntries(t *testing.T) {
	in := NewInterner()
	a, b := newTopo(t, 1), newTopo(t, 2)
	a.ShareEntries(in)
	b.ShareEntries(in)
	upd := a.SetOurConns([]Conn{est(2)})
	if _, err := b.Merge(upd); err != nil {
		t.Fatal(err)
	}
	pa, _ := a.Entry(pn(1))
	pb, _ := b.Entry(pn(1))
	if pa != pb {
		t.Fatal("equal entries stored twice")
	}
	// Same stamp, other content (a forgery in an unsigned topology): not shared.
	c := newTopo(t, 3)
	c.ShareEntries(in)
	forged := upd[0].Clone()
	forged.Conns = nil
	if _, err := c.Merge([]Peer{forged}); err != nil {
		t.Fatal(err)
	}
	if pc, _ := c.Entry(pn(1)); pc == pa || len(pc.Conns) != 0 {
		t.Fatalf("forged entry stored as %+v", pc)
	}
}
