package table

import (
	"errors"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"
)

// Merge rules for entries of another origin (pn(2)) arriving at pn(1).
func TestMergeRules(t *testing.T) {
	const n, a = "db.weave.local.", "10.0.0.1"
	later := t0.Add(time.Minute)
	expired := t0.Add(-DefaultTombstoneExpiry)
	for _, tc := range []struct {
		name   string
		have   []Entry // merged first
		in     Entry
		now    time.Time // t0 unless set
		delta  bool      // whether in is new to us (passed on)
		stored string    // show() of what the table holds for the key afterwards
		lookup bool      // whether n resolves afterwards
	}{
		{name: "new live entry", in: live(2, "c", n, a, 3),
			delta: true, stored: "v3", lookup: true},
		{name: "new tombstone", in: dead(2, "c", n, a, 3, t0),
			delta: true, stored: "v3 dead", lookup: false},
		{name: "higher version wins", have: []Entry{live(2, "c", n, a, 3)}, in: live(2, "c", n, a, 4),
			delta: true, stored: "v4", lookup: true},
		{name: "lower version loses", have: []Entry{live(2, "c", n, a, 3)}, in: live(2, "c", n, a, 2),
			stored: "v3", lookup: true},
		{name: "duplicate is not news", have: []Entry{live(2, "c", n, a, 3)}, in: live(2, "c", n, a, 3),
			stored: "v3", lookup: true},
		{name: "tombstone beats older add", have: []Entry{live(2, "c", n, a, 3)}, in: dead(2, "c", n, a, 4, t0),
			delta: true, stored: "v4 dead", lookup: false},
		{name: "older add loses to tombstone", have: []Entry{dead(2, "c", n, a, 4, t0)}, in: live(2, "c", n, a, 3),
			stored: "v4 dead", lookup: false},
		{name: "re-add after remove", have: []Entry{live(2, "c", n, a, 3), dead(2, "c", n, a, 4, t0)}, in: live(2, "c", n, a, 5),
			delta: true, stored: "v5", lookup: true},
		{name: "tombstone beats live at equal version", have: []Entry{live(2, "c", n, a, 3)}, in: dead(2, "c", n, a, 3, t0),
			delta: true, stored: "v3 dead", lookup: false},
		{name: "live loses to tombstone at equal version", have: []Entry{dead(2, "c", n, a, 3, t0)}, in: live(2, "c", n, a, 3),
			stored: "v3 dead", lookup: false},
		{name: "copies of a tombstone with other times", have: []Entry{dead(2, "c", n, a, 3, t0)}, in: dead(2, "c", n, a, 3, later), now: later,
			stored: "v3 dead", lookup: false},
		{name: "tombstone from the future is dated now", in: dead(2, "c", n, a, 3, t0.Add(time.Hour)),
			delta: true, stored: "v3 dead", lookup: false},
		{name: "expired tombstone still cancels", have: []Entry{live(2, "c", n, a, 3)}, in: dead(2, "c", n, a, 4, expired),
			delta: true, stored: "", lookup: false},
		{name: "expired tombstone alone is not kept", in: dead(2, "c", n, a, 4, expired),
			stored: "", lookup: false},
		{name: "expired tombstone loses to newer add", have: []Entry{live(2, "c", n, a, 5)}, in: dead(2, "c", n, a, 4, expired),
			stored: "v5", lookup: true},
		{name: "other container is another key", have: []Entry{dead(2, "c", n, a, 4, t0)}, in: live(2, "d", n, a, 1),
			delta: true, stored: "v4 dead", lookup: true},
		{name: "other origin is another key", have: []Entry{dead(2, "c", n, a, 4, t0)}, in: live(3, "c", n, a, 1),
			delta: true, stored: "v4 dead", lookup: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			now := tc.now
			if now.IsZero() {
				now = t0
			}
			tbl := newTable(t, 1)
			for _, e := range tc.have {
				mustMerge(t, tbl, t0, e)
			}
			delta := mustMerge(t, tbl, now, tc.in)
			if got := len(delta) > 0; got != tc.delta {
				t.Fatalf("delta\n%swant news=%v", show(delta), tc.delta)
			}
			stored := ""
			for _, e := range tbl.All() {
				if e.Key == (Key{Origin: pn(2), Container: "c", Name: n, Addr: ip(a)}) {
					stored = strings.Fields(show([]Entry{e}))[4]
					if e.Tombstone {
						stored += " dead"
						if e.DeletedAt.After(now) {
							t.Fatalf("stored tombstone dated %v, after now %v", e.DeletedAt, now)
						}
					}
				}
			}
			if stored != tc.stored {
				t.Fatalf("stored %q, want %q\n%s", stored, tc.stored, show(tbl.All()))
			}
			if got := tbl.Lookup(n) != nil; got != tc.lookup {
				t.Fatalf("resolves=%v, want %v", got, tc.lookup)
			}
			// Merging the same again is never news.
			if again := mustMerge(t, tbl, now, tc.in); again != nil {
				t.Fatalf("second merge gave\n%s", show(again))
			}
			checkIndexes(t, tbl)
		})
	}
}

func TestMergeInvalidChangesNothing(t *testing.T) {
	tbl := newTable(t, 1)
	bad := live(2, "c", "DB.weave.local.", "10.0.0.2", 1)
	delta, err := tbl.Merge(t0, []Entry{live(2, "c", "ok.weave.local.", "10.0.0.1", 1), bad})
	if !errors.Is(err, ErrInvalid) || delta != nil {
		t.Fatalf("Merge = %v, %v; want ErrInvalid", delta, err)
	}
	if len(tbl.All()) != 0 {
		t.Fatalf("table changed:\n%s", show(tbl.All()))
	}
}

// Entries claiming to be ours (pn(1)) that we did not make in this run.
func TestMergeOwnConflicts(t *testing.T) {
	const n, a = "db.weave.local.", "10.0.0.1"
	later := t0.Add(time.Minute)
	for _, tc := range []struct {
		name    string
		setup   func(*testing.T, *Table) // our state: counter ends at 2
		claim   Entry
		delta   string // show() of the delta; versions after 2 are ours
		counter uint64 // our counter afterwards
		lookup  bool
	}{
		{name: "forgotten live entry is tombstoned above it",
			setup: func(t *testing.T, tbl *Table) { mustAdd(t, tbl, "c", "x.weave.local", "10.0.0.9", "10.0.0.8") },
			claim: live(1, "c", n, a, 7),
			delta: "db.weave.local. 10.0.0.1 c 02:00:00:00:00:01 v8 dead@" + itoa(later.Unix()) + "\n", counter: 8, lookup: false},
		{name: "forgotten live entry below our counter is tombstoned too",
			setup: func(t *testing.T, tbl *Table) { mustAdd(t, tbl, "c", "x.weave.local", "10.0.0.9", "10.0.0.8") },
			claim: live(1, "c", n, a, 1),
			delta: "db.weave.local. 10.0.0.1 c 02:00:00:00:00:01 v3 dead@" + itoa(later.Unix()) + "\n", counter: 3, lookup: false},
		{name: "tombstone above our live entry is outbid",
			setup: func(t *testing.T, tbl *Table) { mustAdd(t, tbl, "c", n, a, "10.0.0.8") },
			claim: dead(1, "c", n, a, 9, t0),
			delta: "db.weave.local. 10.0.0.1 c 02:00:00:00:00:01 v10\n", counter: 10, lookup: true},
		{name: "tombstone at our live entry's version is outbid",
			setup: func(t *testing.T, tbl *Table) { mustAdd(t, tbl, "c", n, a, "10.0.0.8") },
			claim: dead(1, "c", n, a, 1, t0),
			delta: "db.weave.local. 10.0.0.1 c 02:00:00:00:00:01 v3\n", counter: 3, lookup: true},
		{name: "newer copy of our live entry is restamped",
			setup: func(t *testing.T, tbl *Table) { mustAdd(t, tbl, "c", n, a, "10.0.0.8") },
			claim: live(1, "c", n, a, 5),
			delta: "db.weave.local. 10.0.0.1 c 02:00:00:00:00:01 v6\n", counter: 6, lookup: true},
		{name: "live claim above our tombstone is re-tombstoned",
			setup: func(t *testing.T, tbl *Table) {
				mustAdd(t, tbl, "c", n, a)
				tbl.RemoveContainer(t0, "c")
			},
			claim: live(1, "c", n, a, 4),
			delta: "db.weave.local. 10.0.0.1 c 02:00:00:00:00:01 v5 dead@" + itoa(later.Unix()) + "\n", counter: 5, lookup: false},
		{name: "forgotten tombstone is kept and raises our counter",
			setup: func(t *testing.T, tbl *Table) { mustAdd(t, tbl, "c", "x.weave.local", "10.0.0.9", "10.0.0.8") },
			claim: dead(1, "c", n, a, 40, t0),
			delta: "db.weave.local. 10.0.0.1 c 02:00:00:00:00:01 v40 dead@" + itoa(t0.Unix()) + "\n", counter: 40, lookup: false},
		{name: "older copy of our entry changes nothing",
			setup: func(t *testing.T, tbl *Table) {
				mustAdd(t, tbl, "c", "x.weave.local", "10.0.0.8")
				mustAdd(t, tbl, "c", n, a)
			},
			claim: dead(1, "c", n, a, 1, t0),
			delta: "", counter: 2, lookup: true},
		{name: "our own entry echoed back changes nothing",
			setup: func(t *testing.T, tbl *Table) {
				mustAdd(t, tbl, "c", "x.weave.local", "10.0.0.8")
				mustAdd(t, tbl, "c", n, a)
			},
			claim: live(1, "c", n, a, 2),
			delta: "", counter: 2, lookup: true},
		{name: "expired forgotten tombstone is not kept",
			setup: func(t *testing.T, tbl *Table) { mustAdd(t, tbl, "c", "x.weave.local", "10.0.0.9", "10.0.0.8") },
			claim: dead(1, "c", n, a, 40, later.Add(-DefaultTombstoneExpiry)),
			delta: "", counter: 40, lookup: false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tbl := newTable(t, 1)
			tc.setup(t, tbl)
			if counter(tbl) != 2 {
				t.Fatalf("setup left counter at %d", counter(tbl))
			}
			delta := mustMerge(t, tbl, later, tc.claim)
			if got := show(delta); got != tc.delta {
				t.Fatalf("delta:\n%swant\n%s", got, tc.delta)
			}
			if got := counter(tbl); got != tc.counter {
				t.Fatalf("counter %d, want %d", got, tc.counter)
			}
			if got := tbl.Lookup(n) != nil; got != tc.lookup {
				t.Fatalf("resolves=%v, want %v", got, tc.lookup)
			}
			// A peer that believed the claim takes our answer over it.
			peer := newTable(t, 2)
			mustMerge(t, peer, later, tc.claim)
			mustMerge(t, peer, later, tbl.Own()...)
			if got := peer.Lookup(n) != nil; got != tc.lookup {
				t.Fatalf("peer resolves=%v, want %v", got, tc.lookup)
			}
			// Our next change is above the claim.
			d := mustAdd(t, tbl, "c", "next.weave.local", "10.0.0.7")
			if d[0].Version <= tc.claim.Version {
				t.Fatalf("next version %d not above the claim's %d", d[0].Version, tc.claim.Version)
			}
			// The answer is stable: the claim again is not news.
			if again := mustMerge(t, tbl, later, tc.claim); again != nil {
				t.Fatalf("claim again gave\n%s", show(again))
			}
			checkIndexes(t, tbl)
		})
	}
}

func TestMergeOwnVersionExhausted(t *testing.T) {
	tbl := newTable(t, 1)
	delta, err := tbl.Merge(t0, []Entry{live(1, "c", "a.weave.local.", "10.0.0.1", MaxVersion), live(2, "c", "b.weave.local.", "10.0.0.2", 1)})
	if !errors.Is(err, ErrVersionExhausted) {
		t.Fatalf("err = %v, want ErrVersionExhausted", err)
	}
	if show(delta) != "b.weave.local. 10.0.0.2 c 02:00:00:00:00:02 v1\n" {
		t.Fatalf("the rest of the merge was not done:\n%s", show(delta))
	}
	if _, err := tbl.Add("c", "c.weave.local", ip("10.0.0.3")); !errors.Is(err, ErrVersionExhausted) {
		t.Fatalf("Add err = %v, want ErrVersionExhausted", err)
	}
}

func TestGC(t *testing.T) {
	exp := DefaultTombstoneExpiry
	tbl := newTable(t, 1)
	mustAdd(t, tbl, "c1", "live.weave.local", "10.0.0.1")
	mustAdd(t, tbl, "c1", "old.weave.local", "10.0.0.2")
	tbl.Remove(t0, Match{Name: "old.weave.local"})
	mustAdd(t, tbl, "c1", "new.weave.local", "10.0.0.3")
	tbl.Remove(t0.Add(5*time.Minute), Match{Name: "new.weave.local"})
	mustMerge(t, tbl, t0.Add(time.Second), dead(2, "c2", "peer.weave.local.", "10.0.0.4", 1, t0.Add(time.Second)))

	for _, tc := range []struct {
		now     time.Time
		dropped int
		left    []string // names of the entries left, live or not
	}{
		{t0, 0, []string{"live.weave.local.", "new.weave.local.", "old.weave.local.", "peer.weave.local."}},
		{t0.Add(exp - time.Second), 0, []string{"live.weave.local.", "new.weave.local.", "old.weave.local.", "peer.weave.local."}},
		{t0.Add(exp), 1, []string{"live.weave.local.", "new.weave.local.", "peer.weave.local."}},
		{t0.Add(exp + time.Second), 1, []string{"live.weave.local.", "new.weave.local."}},
		{t0.Add(exp + 5*time.Minute), 1, []string{"live.weave.local."}},
		{t0.Add(100 * exp), 0, []string{"live.weave.local."}},
	} {
		if got := tbl.GC(tc.now); got != tc.dropped {
			t.Fatalf("GC(%v) dropped %d, want %d", tc.now, got, tc.dropped)
		}
		if got := NamesOf(tbl.All()); !slices.Equal(got, tc.left) {
			t.Fatalf("after GC(%v): %v, want %v", tc.now, got, tc.left)
		}
	}
	checkIndexes(t, tbl)
}

// A shorter expiry from the config is honoured.
func TestGCConfiguredExpiry(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Self, cfg.TombstoneExpiry = pn(1), time.Minute
	tbl, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	mustAdd(t, tbl, "c1", "x.weave.local", "10.0.0.1")
	tbl.RemoveContainer(t0, "c1")
	if tbl.GC(t0.Add(59*time.Second)) != 0 || tbl.GC(t0.Add(time.Minute)) != 1 {
		t.Fatal("tombstone not dropped after exactly the configured minute")
	}
}

func TestDropOrigin(t *testing.T) {
	tbl := newTable(t, 1)
	mustAdd(t, tbl, "c1", "db.weave.local", "10.0.0.1")
	mustMerge(t, tbl, t0,
		live(2, "c2", "db.weave.local.", "10.0.0.2", 1),
		live(2, "c2", "web.weave.local.", "10.0.0.2", 2),
		live(2, "c3", "web.weave.local.", "10.0.0.3", 3),
		dead(2, "c4", "gone.weave.local.", "10.0.0.4", 4, t0),
		live(3, "c5", "web.weave.local.", "10.0.0.5", 1),
	)
	for _, tc := range []struct {
		peer  int
		names []string
		left  string
	}{
		{9, nil, ""},
		{1, nil, ""}, // ourselves: never dropped
		{2, []string{"db.weave.local.", "web.weave.local."},
			"db.weave.local. 10.0.0.1 c1 02:00:00:00:00:01 v1\n" +
				"web.weave.local. 10.0.0.5 c5 02:00:00:00:00:03 v1\n"},
		{2, nil, ""},
		{3, []string{"web.weave.local."}, "db.weave.local. 10.0.0.1 c1 02:00:00:00:00:01 v1\n"},
	} {
		got := tbl.DropOrigin(pn(tc.peer))
		if !slices.Equal(got, tc.names) {
			t.Fatalf("DropOrigin(%s) = %v, want %v", pn(tc.peer), got, tc.names)
		}
		if tc.left != "" && show(tbl.All()) != tc.left {
			t.Fatalf("after DropOrigin(%s):\n%swant\n%s", pn(tc.peer), show(tbl.All()), tc.left)
		}
	}
	if got := sortedAddrs(tbl.Lookup("db.weave.local")); !slices.Equal(got, []string{"10.0.0.1"}) {
		t.Fatalf("db resolves to %v", got)
	}
	if tbl.Lookup("web.weave.local") != nil || tbl.LookupAddr(ip("10.0.0.2")) != nil {
		t.Fatal("dropped entries still resolve")
	}
	checkIndexes(t, tbl)
}

// A router restarted with its state dir restores its entries with LoadOwn
// and re-announces them; peers that dropped it take them back, and its next
// changes beat everything it made before.
func TestRestartReannounce(t *testing.T) {
	a := newTable(t, 1)
	b := newTable(t, 2) // a peer that dropped a while it was down
	c := newTable(t, 3) // a peer that kept a's entries
	mustAdd(t, a, "c1", "db.weave.local", "10.0.0.1", "fd00::1")
	mustAdd(t, a, "c2", "web.weave.local", "10.0.0.2")
	a.RemoveContainer(t0, "c2")
	for _, p := range []*Table{b, c} {
		mustMerge(t, p, t0, a.All()...)
	}
	persisted := Encode(a.Own()) // what the state dir holds

	b.DropOrigin(pn(1))
	if b.Lookup("db.weave.local") != nil {
		t.Fatal("b still resolves db after dropping a")
	}

	restarted := newTable(t, 1)
	own, err := Decode(persisted, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := restarted.LoadOwn(own); err != nil {
		t.Fatalf("LoadOwn: %v", err)
	}
	if show(restarted.All()) != show(a.All()) {
		t.Fatalf("restored\n%swant\n%s", show(restarted.All()), show(a.All()))
	}
	if counter(restarted) != 4 {
		t.Fatalf("counter %d after LoadOwn, want 4", counter(restarted))
	}
	announce := restarted.Own()
	if d := mustMerge(t, b, t0, announce...); len(d) != 3 {
		t.Fatalf("b took\n%s", show(d))
	}
	if d := mustMerge(t, c, t0, announce...); d != nil {
		t.Fatalf("c, which kept the entries, took\n%s", show(d))
	}
	for _, p := range []*Table{b, c} {
		if got := sortedAddrs(p.Lookup("db.weave.local")); !slices.Equal(got, []string{"10.0.0.1", "fd00::1"}) {
			t.Fatalf("peer resolves db to %v", got)
		}
		if p.Lookup("web.weave.local") != nil {
			t.Fatal("peer resolves web, removed before the restart")
		}
	}
	// The restarted router's next change wins everywhere.
	d, _ := restarted.Remove(t0, Match{Container: "c1", Addrs: []netip.Addr{ip("fd00::1")}})
	if len(d) != 1 || d[0].Version != 5 {
		t.Fatalf("remove after restart\n%s", show(d))
	}
	for _, p := range []*Table{b, c} {
		mustMerge(t, p, t0, d...)
		if got := sortedAddrs(p.Lookup("db.weave.local")); !slices.Equal(got, []string{"10.0.0.1"}) {
			t.Fatalf("peer resolves db to %v", got)
		}
	}
}

func TestLoadOwnRejects(t *testing.T) {
	for _, tc := range []struct {
		name    string
		entries []Entry
	}{
		{"other origin", []Entry{live(1, "c", "a.", "10.0.0.1", 1), live(2, "c", "b.", "10.0.0.2", 1)}},
		{"invalid", []Entry{live(1, "c", "a.", "10.0.0.1", 1), live(1, "c", "B.", "10.0.0.2", 1)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tbl := newTable(t, 1)
			if err := tbl.LoadOwn(tc.entries); !errors.Is(err, ErrInvalid) {
				t.Fatalf("LoadOwn = %v, want ErrInvalid", err)
			}
			if len(tbl.All()) != 0 || counter(tbl) != 0 {
				t.Fatal("LoadOwn changed the table on error")
			}
		})
	}
}

// A router restarted without its state meets its old entries in a peer's
// full state and takes them back, keeping only what this run added.
func TestRestartWithoutState(t *testing.T) {
	a := newTable(t, 1)
	b := newTable(t, 2)
	mustAdd(t, a, "c1", "old.weave.local", "10.0.0.1")
	mustAdd(t, a, "c1", "kept.weave.local", "10.0.0.2")
	mustAdd(t, a, "c1", "x.weave.local", "10.0.0.3")
	a.Remove(t0, Match{Name: "x.weave.local"})
	mustMerge(t, b, t0, a.All()...)

	fresh := newTable(t, 1)
	mine := mustAdd(t, fresh, "c1", "kept.weave.local", "10.0.0.2") // version 1, loses to b's copy at 2
	mine = append(mine, mustAdd(t, fresh, "c9", "new.weave.local", "10.0.0.9")...)
	mustMerge(t, b, t0, mine...)

	// Full state exchange both ways, until quiet.
	for round := 0; ; round++ {
		if round == 5 {
			t.Fatal("no convergence after 5 rounds")
		}
		d1 := mustMerge(t, fresh, t0, b.All()...)
		d2 := mustMerge(t, b, t0, fresh.All()...)
		if d1 == nil && d2 == nil {
			break
		}
	}
	for _, p := range []*Table{fresh, b} {
		if got := p.Names(); !slices.Equal(got, []string{"kept.weave.local.", "new.weave.local."}) {
			t.Fatalf("%s resolves %v", p.Self(), got)
		}
	}
	if show(fresh.All()) != show(b.All()) {
		t.Fatalf("tables differ:\n%s\n%s", show(fresh.All()), show(b.All()))
	}
}
