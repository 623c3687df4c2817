package table

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/weavelab/weave/mesh/identity"
)

// t0 is the tests' "now"; tombstones made at t0 expire at t0+expiry.
var t0 = time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)

// pn returns a deterministic test peer name; names sort like i.
func pn(i int) identity.PeerName { return identity.PeerName(0x02_00_00_00_00_00 + i) }

func ip(s string) netip.Addr { return netip.MustParseAddr(s) }

// newTable returns a table for us = pn(self) with a shuffle seeded by self.
func newTable(tb testing.TB, self int) *Table {
	tb.Helper()
	cfg := DefaultConfig()
	cfg.Self = pn(self)
	cfg.Rand = rand.NewPCG(uint64(self), 42)
	t, err := New(cfg)
	if err != nil {
		tb.Fatalf("New: %v", err)
	}
	return t
}

// live returns a live entry of origin pn(origin).
func live(origin int, container, name, addr string, version uint64) Entry {
	return Entry{Key: Key{Origin: pn(origin), Container: container, Name: name, Addr: ip(addr)}, Version: version}
}

// dead returns a tombstone of origin pn(origin) made at `at`.
func dead(origin int, container, name, addr string, version uint64, at time.Time) Entry {
	e := live(origin, container, name, addr, version)
	e.Tombstone, e.DeletedAt = true, deletionTime(at)
	return e
}

func mustAdd(tb testing.TB, t *Table, container, name string, addrs ...string) []Entry {
	tb.Helper()
	as := make([]netip.Addr, len(addrs))
	for i, a := range addrs {
		as[i] = ip(a)
	}
	delta, err := t.Add(container, name, as...)
	if err != nil {
		tb.Fatalf("Add(%s, %s, %v): %v", container, name, addrs, err)
	}
	return delta
}

func mustMerge(tb testing.TB, t *Table, now time.Time, entries ...Entry) []Entry {
	tb.Helper()
	delta, err := t.Merge(now, entries)
	if err != nil {
		tb.Fatalf("Merge: %v", err)
	}
	return delta
}

// show renders entries one per line, for comparisons with readable diffs:
// "name addr container origin vN" plus " dead@unix" for tombstones.
func show(entries []Entry) string {
	var b strings.Builder
	for _, e := range entries {
		fmt.Fprintf(&b, "%s %s %s %s v%d", e.Name, e.Addr, e.Container, e.Origin, e.Version)
		if e.Tombstone {
			fmt.Fprintf(&b, " dead@%d", e.DeletedAt.Unix())
		}
		b.WriteByte('\n')
	}
	return b.String()
}

// sortedAddrs returns addrs as sorted strings.
func sortedAddrs(addrs []netip.Addr) []string {
	out := make([]string, len(addrs))
	for i, a := range addrs {
		out[i] = a.String()
	}
	slices.Sort(out)
	return out
}

// checkIndexes compares the lookup indexes with a rebuild from the entries.
func checkIndexes(tb testing.TB, t *Table) {
	tb.Helper()
	names := map[string]map[netip.Addr]int{}
	addrs := map[netip.Addr]map[string]int{}
	for _, e := range t.Live() {
		if names[e.Name] == nil {
			names[e.Name] = map[netip.Addr]int{}
		}
		names[e.Name][e.Addr]++
		if addrs[e.Addr] == nil {
			addrs[e.Addr] = map[string]int{}
		}
		addrs[e.Addr][e.Name]++
	}
	t.mu.RLock()
	defer t.mu.RUnlock()
	if len(t.byName) != len(names) || len(t.byAddr) != len(addrs) {
		tb.Fatalf("index sizes %d/%d, want %d/%d", len(t.byName), len(t.byAddr), len(names), len(addrs))
	}
	for n, s := range t.byName {
		if !slices.IsSortedFunc(s, func(a, b counted[netip.Addr]) int { return a.v.Compare(b.v) }) {
			tb.Fatalf("byName[%s] not sorted", n)
		}
		for _, c := range s {
			if names[n][c.v] != c.n {
				tb.Fatalf("byName[%s][%s] = %d, want %d", n, c.v, c.n, names[n][c.v])
			}
		}
		if len(s) != len(names[n]) {
			tb.Fatalf("byName[%s] has %d addrs, want %d", n, len(s), len(names[n]))
		}
	}
	for a, s := range t.byAddr {
		if !slices.IsSortedFunc(s, func(a, b counted[string]) int { return strings.Compare(a.v, b.v) }) {
			tb.Fatalf("byAddr[%s] not sorted", a)
		}
		for _, c := range s {
			if addrs[a][c.v] != c.n {
				tb.Fatalf("byAddr[%s][%s] = %d, want %d", a, c.v, c.n, addrs[a][c.v])
			}
		}
		if len(s) != len(addrs[a]) {
			tb.Fatalf("byAddr[%s] has %d names, want %d", a, len(s), len(addrs[a]))
		}
	}
}

// counter reads our counter.
func counter(t *Table) uint64 {
	t.mu.RLock()
	defer t.mu.RUnlock()
	return t.counter
}
