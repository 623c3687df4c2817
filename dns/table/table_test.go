package table

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestNew(t *testing.T) {
	for _, tc := range []struct {
		name string
		edit func(*Config)
		ok   bool
	}{
		{"defaults", func(*Config) {}, true},
		{"no rand", func(c *Config) { c.Rand = nil }, true},
		{"zero self", func(c *Config) { c.Self = 0 }, false},
		{"self above 48 bits", func(c *Config) { c.Self = 1 << 48 }, false},
		{"zero expiry", func(c *Config) { c.TombstoneExpiry = 0 }, false},
		{"negative expiry", func(c *Config) { c.TombstoneExpiry = -time.Second }, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := DefaultConfig()
			cfg.Self = pn(1)
			cfg.Rand = rand.NewPCG(1, 2)
			tc.edit(&cfg)
			tbl, err := New(cfg)
			if (err == nil) != tc.ok {
				t.Fatalf("New = %v, want ok=%v", err, tc.ok)
			}
			if tc.ok && tbl.Self() != pn(1) {
				t.Fatalf("Self = %s", tbl.Self())
			}
		})
	}
	if DefaultConfig().TombstoneExpiry != 10*time.Minute {
		t.Fatal("default expiry is not 10 minutes")
	}
}

func TestAdd(t *testing.T) {
	tbl := newTable(t, 1)
	delta := mustAdd(t, tbl, "c1", "DB.Weave.Local", "10.32.0.1", "fd00::1")
	want := "db.weave.local. 10.32.0.1 c1 02:00:00:00:00:01 v1\n" +
		"db.weave.local. fd00::1 c1 02:00:00:00:00:01 v2\n"
	if got := show(delta); got != want {
		t.Fatalf("delta:\n%swant\n%s", got, want)
	}
	// Idempotent: the same again, or one more address, only adds what is new.
	if d := mustAdd(t, tbl, "c1", "db.weave.local.", "10.32.0.1", "fd00::1"); d != nil {
		t.Fatalf("re-add gave delta\n%s", show(d))
	}
	// An IPv4-mapped address is the IPv4 address.
	if d := mustAdd(t, tbl, "c1", "db.weave.local", "::ffff:10.32.0.1", "10.32.0.2", "10.32.0.2"); show(d) != "db.weave.local. 10.32.0.2 c1 02:00:00:00:00:01 v3\n" {
		t.Fatalf("delta\n%s", show(d))
	}
	if got := sortedAddrs(tbl.Lookup("db.weave.local")); !slices.Equal(got, []string{"10.32.0.1", "10.32.0.2", "fd00::1"}) {
		t.Fatalf("Lookup = %v", got)
	}
	checkIndexes(t, tbl)
}

func TestAddInvalidChangesNothing(t *testing.T) {
	for _, tc := range []struct {
		name, container, fqdn string
		addrs                 []netip.Addr
	}{
		{"bad container", "a b", "db.", []netip.Addr{ip("10.0.0.1")}},
		{"bad name", "c1", "d b.", []netip.Addr{ip("10.0.0.1")}},
		{"no addrs", "c1", "db.", nil},
		{"one bad addr", "c1", "db.", []netip.Addr{ip("10.0.0.1"), {}}},
		{"zone", "c1", "db.", []netip.Addr{ip("fe80::1%eth0")}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tbl := newTable(t, 1)
			delta, err := tbl.Add(tc.container, tc.fqdn, tc.addrs...)
			if !errors.Is(err, ErrInvalid) || delta != nil {
				t.Fatalf("Add = %v, %v; want ErrInvalid", delta, err)
			}
			if len(tbl.All()) != 0 || counter(tbl) != 0 {
				t.Fatalf("table changed: %s", show(tbl.All()))
			}
		})
	}
}

// removeFixture is our table with three containers' entries plus one of
// another origin that no Remove may touch.
func removeFixture(t *testing.T) *Table {
	tbl := newTable(t, 1)
	mustAdd(t, tbl, "c1", "db.weave.local", "10.0.0.1", "10.0.0.2")
	mustAdd(t, tbl, "c1", "alias.weave.local", "10.0.0.1")
	mustAdd(t, tbl, "c2", "db.weave.local", "10.0.0.3")
	mustAdd(t, tbl, ContainerExtern, "ext.weave.local", "192.0.2.1", "192.0.2.2")
	mustMerge(t, tbl, t0, live(2, "c9", "db.weave.local.", "10.0.0.1", 1))
	return tbl
}

func TestRemove(t *testing.T) {
	for _, tc := range []struct {
		name    string
		m       Match
		removed []string // "name addr container" of the tombstones
	}{
		{"exact key", Match{Container: "c1", Name: "db.weave.local", Addrs: []netip.Addr{ip("10.0.0.2")}},
			[]string{"db.weave.local. 10.0.0.2 c1"}},
		{"container and name", Match{Container: "c1", Name: "DB.weave.local."},
			[]string{"db.weave.local. 10.0.0.1 c1", "db.weave.local. 10.0.0.2 c1"}},
		{"container and addrs", Match{Container: "c1", Addrs: []netip.Addr{ip("10.0.0.1")}},
			[]string{"alias.weave.local. 10.0.0.1 c1", "db.weave.local. 10.0.0.1 c1"}},
		{"container", Match{Container: "c1"},
			[]string{"alias.weave.local. 10.0.0.1 c1", "db.weave.local. 10.0.0.1 c1", "db.weave.local. 10.0.0.2 c1"}},
		{"addrs and name, extern", Match{Container: ContainerExtern, Name: "ext.weave.local", Addrs: []netip.Addr{ip("192.0.2.2")}},
			[]string{"ext.weave.local. 192.0.2.2 weave:extern"}},
		{"name across containers", Match{Name: "db.weave.local"},
			[]string{"db.weave.local. 10.0.0.1 c1", "db.weave.local. 10.0.0.2 c1", "db.weave.local. 10.0.0.3 c2"}},
		{"addrs only", Match{Addrs: []netip.Addr{ip("::ffff:10.0.0.3"), ip("192.0.2.1")}},
			[]string{"db.weave.local. 10.0.0.3 c2", "ext.weave.local. 192.0.2.1 weave:extern"}},
		{"nothing matches", Match{Container: "c3"}, nil},
		{"name of another container", Match{Container: "c2", Name: "alias.weave.local"}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tbl := removeFixture(t)
			before := counter(tbl)
			delta, err := tbl.Remove(t0, tc.m)
			if err != nil {
				t.Fatalf("Remove: %v", err)
			}
			var got []string
			for i, e := range delta {
				if !e.Tombstone || e.Origin != pn(1) || e.Version != before+uint64(i)+1 || !e.DeletedAt.Equal(t0) {
					t.Fatalf("delta entry %d is not a fresh tombstone of ours:\n%s", i, show(delta))
				}
				got = append(got, e.Name+" "+e.Addr.String()+" "+e.Container)
			}
			if !slices.Equal(got, tc.removed) {
				t.Fatalf("removed %q, want %q", got, tc.removed)
			}
			// Removing again changes nothing; the other origin's entry stays.
			if again, err := tbl.Remove(t0, tc.m); err != nil || again != nil {
				t.Fatalf("second Remove = %v, %v", again, err)
			}
			if !slices.Contains(tbl.LookupAddr(ip("10.0.0.1")), "db.weave.local.") {
				t.Fatal("the other origin's entry for db.weave.local 10.0.0.1 went")
			}
			checkIndexes(t, tbl)
		})
	}
}

func TestRemoveInvalid(t *testing.T) {
	for _, tc := range []struct {
		name string
		m    Match
	}{
		{"empty", Match{}},
		{"bad container", Match{Container: "a b"}},
		{"bad name", Match{Name: "-x."}},
		{"bad addr", Match{Container: "c1", Addrs: []netip.Addr{{}}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tbl := removeFixture(t)
			before := show(tbl.All())
			if d, err := tbl.Remove(t0, tc.m); !errors.Is(err, ErrInvalid) || d != nil {
				t.Fatalf("Remove = %v, %v; want ErrInvalid", d, err)
			}
			if after := show(tbl.All()); after != before {
				t.Fatalf("table changed:\n%s", after)
			}
		})
	}
}

func TestRemoveContainerAndReAdd(t *testing.T) {
	tbl := removeFixture(t)
	delta := tbl.RemoveContainer(t0, "c1")
	if got := NamesOf(delta); !slices.Equal(got, []string{"alias.weave.local.", "db.weave.local."}) {
		t.Fatalf("names removed %v", got)
	}
	if tbl.Lookup("alias.weave.local") != nil {
		t.Fatal("alias still resolves")
	}
	if got := sortedAddrs(tbl.Lookup("db.weave.local")); !slices.Equal(got, []string{"10.0.0.1", "10.0.0.3"}) {
		t.Fatalf("db resolves to %v (10.0.0.1 is the other origin's)", got)
	}
	if tbl.RemoveContainer(t0, "c1") != nil || tbl.RemoveContainer(t0, "") != nil || tbl.RemoveContainer(t0, "no such") != nil {
		t.Fatal("RemoveContainer of nothing gave a delta")
	}
	// Re-adding after a remove makes a newer live version of the same key.
	re := mustAdd(t, tbl, "c1", "alias.weave.local", "10.0.0.1")
	if len(re) != 1 || re[0].Tombstone || re[0].Version <= delta[len(delta)-1].Version {
		t.Fatalf("re-add delta\n%s", show(re))
	}
	if got := tbl.Lookup("alias.weave.local"); len(got) != 1 || got[0] != ip("10.0.0.1") {
		t.Fatalf("alias resolves to %v after re-add", got)
	}
	checkIndexes(t, tbl)
}

func TestLookup(t *testing.T) {
	tbl := newTable(t, 1)
	mustAdd(t, tbl, "c1", "db.weave.local", "10.0.0.1", "fd00::1")
	mustAdd(t, tbl, "c2", "DB.weave.local", "10.0.0.1") // same address, other container
	mustAdd(t, tbl, "c3", "web.weave.local", "10.0.0.9")
	mustMerge(t, tbl, t0,
		live(2, "c4", "db.weave.local.", "10.0.0.1", 1), // same address, other origin
		live(2, "c5", "db.weave.local.", "10.0.0.2", 2),
		dead(2, "c6", "db.weave.local.", "10.0.0.3", 3, t0),
		dead(2, "c7", "gone.weave.local.", "10.0.0.4", 4, t0),
	)
	for _, tc := range []struct {
		query string
		want  []string
	}{
		{"db.weave.local.", []string{"10.0.0.1", "10.0.0.2", "fd00::1"}},
		{"db.weave.local", []string{"10.0.0.1", "10.0.0.2", "fd00::1"}},
		{"Db.WEAVE.local", []string{"10.0.0.1", "10.0.0.2", "fd00::1"}},
		{"web.weave.local", []string{"10.0.0.9"}},
		{"gone.weave.local", nil},
		{"weave.local", nil},
		{"db", nil},
		{"", nil},
		{"not a name", nil},
	} {
		t.Run(tc.query, func(t *testing.T) {
			got := tbl.Lookup(tc.query)
			if tc.want == nil {
				if got != nil {
					t.Fatalf("Lookup = %v, want nil", got)
				}
				return
			}
			if s := sortedAddrs(got); !slices.Equal(s, tc.want) {
				t.Fatalf("Lookup = %v, want %v", s, tc.want)
			}
		})
	}
}

func TestLookupShuffles(t *testing.T) {
	tbl := newTable(t, 1)
	var addrs []string
	for i := 1; i <= 8; i++ {
		addrs = append(addrs, netip.AddrFrom4([4]byte{10, 0, 0, byte(i)}).String())
	}
	mustAdd(t, tbl, "c1", "many.weave.local", addrs...)
	orders := map[string]int{}
	firsts := map[netip.Addr]int{}
	const n = 400
	for range n {
		got := tbl.Lookup("many.weave.local")
		if s := sortedAddrs(got); !slices.Equal(s, addrs) {
			t.Fatalf("Lookup = %v, not a permutation of %v", got, addrs)
		}
		orders[strings.Join(addrStrings(got), ",")]++
		firsts[got[0]]++
	}
	// 8! = 40320 orders: 400 draws should be nearly all distinct, and each
	// address should come first about n/8 = 50 times.
	if len(orders) < n*9/10 {
		t.Fatalf("only %d distinct orders in %d lookups", len(orders), n)
	}
	for a, c := range firsts {
		if c < 20 || c > 90 {
			t.Errorf("%s first %d times of %d", a, c, n)
		}
	}
	if len(firsts) != len(addrs) {
		t.Errorf("only %d addresses ever came first", len(firsts))
	}
}

// addrStrings renders addrs in their given order.
func addrStrings(addrs []netip.Addr) []string {
	out := make([]string, len(addrs))
	for i, a := range addrs {
		out[i] = a.String()
	}
	return out
}

// The injected source makes answers reproducible.
func TestLookupSeeded(t *testing.T) {
	run := func() []netip.Addr {
		tbl := newTable(t, 7)
		mustAdd(t, tbl, "c1", "x.weave.local", "10.0.0.1", "10.0.0.2", "10.0.0.3", "10.0.0.4")
		var all []netip.Addr
		for range 10 {
			all = append(all, tbl.Lookup("x.weave.local")...)
		}
		return all
	}
	if a, b := run(), run(); !slices.Equal(a, b) {
		t.Fatalf("same seed, different answers:\n%v\n%v", a, b)
	}
}

func TestLookupAddr(t *testing.T) {
	tbl := newTable(t, 1)
	mustAdd(t, tbl, "c1", "db.weave.local", "10.0.0.1", "fd00::1")
	mustAdd(t, tbl, "c1", "alias.weave.local", "10.0.0.1")
	mustAdd(t, tbl, "c2", "db.weave.local", "10.0.0.1")
	mustMerge(t, tbl, t0,
		live(2, "c3", "other.weave.local.", "10.0.0.1", 1),
		dead(2, "c3", "gone.weave.local.", "10.0.0.1", 2, t0),
	)
	for _, tc := range []struct {
		addr string
		want []string
	}{
		{"10.0.0.1", []string{"alias.weave.local.", "db.weave.local.", "other.weave.local."}},
		{"::ffff:10.0.0.1", []string{"alias.weave.local.", "db.weave.local.", "other.weave.local."}},
		{"fd00::1", []string{"db.weave.local."}},
		{"fd00::1%eth0", []string{"db.weave.local."}},
		{"10.0.0.2", nil},
	} {
		t.Run(tc.addr, func(t *testing.T) {
			if got := tbl.LookupAddr(ip(tc.addr)); !slices.Equal(got, tc.want) {
				t.Fatalf("LookupAddr = %v, want %v", got, tc.want)
			}
		})
	}
	tbl.RemoveContainer(t0, "c1")
	if got := tbl.LookupAddr(ip("10.0.0.1")); !slices.Equal(got, []string{"db.weave.local.", "other.weave.local."}) {
		t.Fatalf("after removing c1: %v", got)
	}
	if got := tbl.LookupAddr(ip("fd00::1")); got != nil {
		t.Fatalf("fd00::1 still has %v", got)
	}
	checkIndexes(t, tbl)
}

func TestListings(t *testing.T) {
	tbl := newTable(t, 2)
	mustAdd(t, tbl, "c1", "b.weave.local", "10.0.0.2")
	mustAdd(t, tbl, "c1", "a.weave.local", "10.0.0.1")
	tbl.Remove(t0, Match{Name: "b.weave.local"})
	mustMerge(t, tbl, t0,
		live(1, "c9", "a.weave.local.", "10.0.0.1", 5),
		live(3, "c8", "c.weave.local.", "10.0.0.3", 1),
		dead(3, "c8", "d.weave.local.", "10.0.0.4", 2, t0),
	)
	if got := tbl.Names(); !slices.Equal(got, []string{"a.weave.local.", "c.weave.local."}) {
		t.Fatalf("Names = %v", got)
	}
	wantLive := "a.weave.local. 10.0.0.1 c1 02:00:00:00:00:02 v2\n" +
		"a.weave.local. 10.0.0.1 c9 02:00:00:00:00:01 v5\n" +
		"c.weave.local. 10.0.0.3 c8 02:00:00:00:00:03 v1\n"
	if got := show(tbl.Live()); got != wantLive {
		t.Fatalf("Live:\n%swant\n%s", got, wantLive)
	}
	wantAll := "a.weave.local. 10.0.0.1 c1 02:00:00:00:00:02 v2\n" +
		"a.weave.local. 10.0.0.1 c9 02:00:00:00:00:01 v5\n" +
		"b.weave.local. 10.0.0.2 c1 02:00:00:00:00:02 v3 dead@" + itoa(t0.Unix()) + "\n" +
		"c.weave.local. 10.0.0.3 c8 02:00:00:00:00:03 v1\n" +
		"d.weave.local. 10.0.0.4 c8 02:00:00:00:00:03 v2 dead@" + itoa(t0.Unix()) + "\n"
	if got := show(tbl.All()); got != wantAll {
		t.Fatalf("All:\n%swant\n%s", got, wantAll)
	}
	wantOwn := "a.weave.local. 10.0.0.1 c1 02:00:00:00:00:02 v2\n" +
		"b.weave.local. 10.0.0.2 c1 02:00:00:00:00:02 v3 dead@" + itoa(t0.Unix()) + "\n"
	if got := show(tbl.Own()); got != wantOwn {
		t.Fatalf("Own:\n%swant\n%s", got, wantOwn)
	}
	// Returned slices are the caller's.
	l := tbl.Live()
	l[0].Name = "changed."
	if tbl.Live()[0].Name != "a.weave.local." {
		t.Fatal("Live shares memory with the table")
	}
}

func itoa(v int64) string { return strconv.FormatInt(v, 10) }

// Lookups run while merges and local changes go on; run with -race.
func TestConcurrentUse(t *testing.T) {
	for _, seeded := range []bool{true, false} {
		t.Run(fmt.Sprintf("seeded=%v", seeded), func(t *testing.T) {
			cfg := DefaultConfig()
			cfg.Self = pn(1)
			if seeded {
				cfg.Rand = rand.NewPCG(1, 2)
			}
			tbl, err := New(cfg)
			if err != nil {
				t.Fatal(err)
			}
			mustAdd(t, tbl, "c0", "x.weave.local", "10.0.0.1", "10.0.0.2")
			var wg sync.WaitGroup
			for g := range 4 {
				wg.Go(func() {
					for i := range 300 {
						a := netip.AddrFrom4([4]byte{10, 1, byte(g), byte(i)})
						switch g {
						case 0:
							if _, err := tbl.Add("c1", "x.weave.local", a); err != nil {
								t.Error(err)
							}
							tbl.RemoveContainer(t0, "c1")
						case 1:
							e := live(2, "c2", "x.weave.local.", a.String(), uint64(i+1))
							if _, err := tbl.Merge(t0, []Entry{e}); err != nil {
								t.Error(err)
							}
							tbl.GC(t0.Add(time.Hour))
						default:
							if got := tbl.Lookup("X.weave.local"); len(got) < 2 {
								t.Errorf("Lookup = %v", got)
							}
							tbl.LookupAddr(ip("10.0.0.1"))
							tbl.Live()
							tbl.Names()
						}
					}
				})
			}
			wg.Wait()
			checkIndexes(t, tbl)
		})
	}
}
