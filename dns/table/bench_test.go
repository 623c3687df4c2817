package table

import (
	"fmt"
	"net/netip"
	"testing"
)

const benchEntries = 10_000

// benchState is a full state of benchEntries live entries: 5,000 names at
// two addresses each, from 10 origins, and the queries to look them up.
func benchState() (entries []Entry, names []string, addrs []netip.Addr) {
	for i := range benchEntries / 2 {
		name := fmt.Sprintf("svc-%d.weave.local.", i)
		names = append(names, name)
		for j := range 2 {
			a := netip.AddrFrom4([4]byte{10, byte(j), byte(i >> 8), byte(i)})
			addrs = append(addrs, a)
			entries = append(entries, live(1+i%10, fmt.Sprintf("%064x", i), name, a.String(), uint64(i*2+j+1)))
		}
	}
	return entries, names, addrs
}

func benchTable(b *testing.B) (*Table, []string, []netip.Addr) {
	entries, names, addrs := benchState()
	tbl := newTable(b, 99)
	mustMerge(b, tbl, t0, entries...)
	return tbl, names, addrs
}

func BenchmarkLookup(b *testing.B) {
	tbl, names, _ := benchTable(b)
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		if len(tbl.Lookup(names[i%len(names)])) != 2 {
			b.Fatal("lookup failed")
		}
		i++
	}
}

// The DNS server's form of a query: mixed case, trailing dot.
func BenchmarkLookupMixedCase(b *testing.B) {
	tbl, names, _ := benchTable(b)
	for i := range names {
		names[i] = "SVC" + names[i][3:]
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		if len(tbl.Lookup(names[i%len(names)])) != 2 {
			b.Fatal("lookup failed")
		}
		i++
	}
}

func BenchmarkLookupParallel(b *testing.B) {
	tbl, names, _ := benchTable(b)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			if len(tbl.Lookup(names[i%len(names)])) != 2 {
				b.Fatal("lookup failed")
			}
			i++
		}
	})
}

func BenchmarkLookupAddr(b *testing.B) {
	tbl, _, addrs := benchTable(b)
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		if len(tbl.LookupAddr(addrs[i%len(addrs)])) != 1 {
			b.Fatal("lookup failed")
		}
		i++
	}
}

// Merging a peer's full state of 10,000 entries into an empty table.
func BenchmarkMergeFullState(b *testing.B) {
	entries, _, _ := benchState()
	b.ReportAllocs()
	for b.Loop() {
		tbl := newTable(b, 99)
		mustMerge(b, tbl, t0, entries...)
	}
}

func BenchmarkEncode(b *testing.B) {
	entries, _, _ := benchState()
	b.SetBytes(int64(len(Encode(entries))))
	b.ReportAllocs()
	for b.Loop() {
		Encode(entries)
	}
}

func BenchmarkDecode(b *testing.B) {
	entries, _, _ := benchState()
	msg := Encode(entries)
	b.SetBytes(int64(len(msg)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Decode(msg, benchEntries); err != nil {
			b.Fatal(err)
		}
	}
}
