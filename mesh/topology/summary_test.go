package topology

import (
	"math/rand/v2"
	"reflect"
	"slices"
	"testing"

	"github.com/weavelab/weave/mesh/identity"
)

func TestSummaryNewerThanWants(t *testing.T) {
	topo := newTopo(t, 1)
	mustMerge(t, topo, mk(2, 5, 3), mk(3, 5, 3), mk(4, 5, 3), mk(5, 5, 3))
	s := Summary{
		pn(1): {Version: 1, UID: 1001}, // same as ours
		pn(2): {Version: 2, UID: 5},    // older
		pn(3): {Version: 3, UID: 5},    // same
		pn(4): {Version: 3, UID: 4},    // same version, lower uid: ours wins
		pn(5): {Version: 3, UID: 6},    // same version, higher uid: theirs wins
		pn(9): {Version: 1, UID: 1},    // unknown to us
	}
	var got []identity.PeerName
	for _, p := range topo.NewerThan(s) {
		got = append(got, p.Name)
	}
	if want := names(2, 4); !slices.Equal(got, want) {
		t.Fatalf("NewerThan = %v, want %v", got, want)
	}
	if !topo.Wants(s) {
		t.Fatal("Wants = false though s has pn(5) newer and pn(9) unknown")
	}
	if topo.Wants(topo.Summary()) {
		t.Fatal("Wants our own summary")
	}
	if got := topo.NewerThan(topo.Summary()); got != nil {
		t.Fatalf("NewerThan our own summary = %v", got)
	}
	if all := topo.NewerThan(nil); len(all) != topo.Len() {
		t.Fatalf("NewerThan(empty) gave %d of %d entries", len(all), topo.Len())
	}
}

func TestDigest(t *testing.T) {
	a, b := newTopo(t, 1), newTopo(t, 1)
	if a.Digest() != b.Digest() {
		t.Fatal("equal topologies, different digests")
	}
	mustMerge(t, a, mk(2, 5, 3), mk(3, 5, 3))
	mustMerge(t, b, mk(3, 5, 3), mk(2, 5, 3))
	if a.Digest() != b.Digest() {
		t.Fatal("equal topologies merged in another order, different digests")
	}
	mustMerge(t, b, mk(3, 6, 3))
	if a.Digest() == b.Digest() {
		t.Fatal("digest ignores the uid")
	}
	mustMerge(t, a, mk(3, 6, 3))
	mustMerge(t, a, mk(3, 6, 4))
	if a.Digest() == b.Digest() {
		t.Fatal("digest ignores the version")
	}
}

// antiEntropy runs one exchange as the mesh would: a sends its summary; b
// answers with what a lacks and, if a has something b lacks, its own summary,
// which a answers the same way.
func antiEntropy(tb testing.TB, a, b *Topology) (entries int) {
	tb.Helper()
	sa, err := DecodeSummary(EncodeSummary(a.Summary()))
	if err != nil {
		tb.Fatal(err)
	}
	toA := b.NewerThan(sa)
	wantsA := b.Wants(sa)
	decoded, err := DecodeUpdate(EncodeUpdate(toA))
	if err != nil {
		tb.Fatal(err)
	}
	mustMerge(tb, a, decoded...)
	entries = len(toA)
	if wantsA {
		toB := a.NewerThan(b.Summary())
		mustMerge(tb, b, toB...)
		entries += len(toB)
	}
	return entries
}

// Two views built from random, overlapping knowledge agree after one
// anti-entropy exchange, each holding the winning entry per name, and a
// second exchange sends nothing.
func TestAntiEntropyConverges(t *testing.T) {
	rng := rand.New(rand.NewPCG(11, 12))
	for round := range 100 {
		a, b := newTopo(t, 1), newTopo(t, 2)
		winners := map[identity.PeerName]Stamp{}
		for range 30 {
			i, uid, v := 3+rng.IntN(15), 1+rng.IntN(3), 1+rng.IntN(5)
			p := mk(i, identity.UID(uid), uint64(v), est(40+uid*5+v))
			if w, ok := winners[p.Name]; !ok || stampOf(&p).beats(w) {
				winners[p.Name] = stampOf(&p)
			}
			switch rng.IntN(3) {
			case 0:
				mustMerge(t, a, p)
			case 1:
				mustMerge(t, b, p)
			default:
				mustMerge(t, a, p)
				mustMerge(t, b, p)
			}
		}
		mustMerge(t, b, a.Our())
		mustMerge(t, a, b.Our())
		antiEntropy(t, a, b)
		if !reflect.DeepEqual(a.Peers(), b.Peers()) {
			t.Fatalf("round %d: views differ after anti-entropy:\n%#v\n%#v", round, a.Peers(), b.Peers())
		}
		if a.Digest() != b.Digest() {
			t.Fatalf("round %d: equal views, different digests", round)
		}
		for name, w := range winners {
			if p, _ := a.Get(name); stampOf(&p) != w {
				t.Fatalf("round %d: %s holds %v, want winner %v", round, name, stampOf(&p), w)
			}
		}
		if n := antiEntropy(t, b, a); n != 0 {
			t.Fatalf("round %d: second exchange sent %d entries", round, n)
		}
	}
}
