package topology

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/weavelab/weave/mesh/identity"
)

// benchTopo returns the view of peer 0 of a connected random mesh of n peers
// with average degree 4.
func benchTopo(b *testing.B, n int) (*Topology, []Peer) {
	rng := rand.New(rand.NewPCG(uint64(n), 1))
	peers := randomGraph(rng, n, 4, true).peers(rng)
	return topoFrom(b, 0, peers), peers
}

func BenchmarkRoutesCompute(b *testing.B) {
	for _, n := range []int{100, 1000} {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			_, peers := benchTopo(b, n)
			b.ReportAllocs()
			for b.Loop() {
				NewRoutes(pn(0), peers)
			}
		})
	}
}

// BenchmarkBroadcastAllSources computes the broadcast trees for every source
// once (the lazy part of a fresh snapshot).
func BenchmarkBroadcastAllSources(b *testing.B) {
	for _, n := range []int{100, 1000} {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			_, peers := benchTopo(b, n)
			b.ReportAllocs()
			for b.Loop() {
				r := NewRoutes(pn(0), peers)
				for src := range n {
					r.Broadcast(pn(src))
				}
			}
		})
	}
}

func BenchmarkUnicastLookup(b *testing.B) {
	for _, n := range []int{100, 1000} {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			topo, _ := benchTopo(b, n)
			r := topo.Routes()
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				r.Unicast(pn(i % n))
				i++
			}
		})
	}
}

func BenchmarkBroadcastLookupCached(b *testing.B) {
	for _, n := range []int{100, 1000} {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			topo, _ := benchTopo(b, n)
			r := topo.Routes()
			for src := range n {
				r.Broadcast(pn(src))
			}
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				r.Broadcast(pn(i % n))
				i++
			}
		})
	}
}

func BenchmarkEncodeDecodeUpdate(b *testing.B) {
	_, peers := benchTopo(b, 1000)
	enc := EncodeUpdate(peers)
	b.Run("encode1000", func(b *testing.B) {
		b.SetBytes(int64(len(enc)))
		b.ReportAllocs()
		for b.Loop() {
			EncodeUpdate(peers)
		}
	})
	b.Run("decode1000", func(b *testing.B) {
		b.SetBytes(int64(len(enc)))
		b.ReportAllocs()
		for b.Loop() {
			if _, err := DecodeUpdate(enc); err != nil {
				b.Fatal(err)
			}
		}
	})
}

func BenchmarkMergeOne(b *testing.B) {
	topo, _ := benchTopo(b, 1000)
	p, _ := topo.Get(pn(500))
	b.ReportAllocs()
	for b.Loop() {
		p.Version++
		if _, err := topo.Merge([]Peer{p}); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkSummary1000(b *testing.B) {
	topo, _ := benchTopo(b, 1000)
	other := New(identity.Peer{Name: pn(0), UID: 1})
	b.ReportAllocs()
	for b.Loop() {
		s, err := DecodeSummary(EncodeSummary(topo.Summary()))
		if err != nil {
			b.Fatal(err)
		}
		other.NewerThan(s)
	}
}
