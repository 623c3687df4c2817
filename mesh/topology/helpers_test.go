package topology

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/weavelab/weave/mesh/identity"
)

// pn returns a deterministic test peer name; names sort like i.
func pn(i int) identity.PeerName { return identity.PeerName(0x02_00_00_00_00_00 + i) }

// mk returns a peer entry for name pn(i).
func mk(i int, uid identity.UID, version uint64, conns ...Conn) Peer {
	return Peer{
		Peer:    identity.Peer{Name: pn(i), NickName: fmt.Sprintf("host%d", i), UID: uid},
		Version: version,
		Conns:   conns,
	}
}

// est is an established connection to pn(i); pend one that is not yet.
func est(i int) Conn {
	return Conn{Remote: pn(i), RemoteAddr: fmt.Sprintf("10.0.0.%d:6783", i%250), Established: true}
}
func pend(i int) Conn { return Conn{Remote: pn(i), Outbound: true} }

// newTopo returns a topology for us = pn(i) with uid 1000+i.
func newTopo(tb testing.TB, i int) *Topology {
	tb.Helper()
	return New(identity.Peer{Name: pn(i), NickName: fmt.Sprintf("host%d", i), UID: identity.UID(1000 + i)})
}

// mustMerge merges update into t and fails the test on error.
func mustMerge(tb testing.TB, t *Topology, update ...Peer) []Peer {
	tb.Helper()
	changed, err := t.Merge(update)
	if err != nil {
		tb.Fatalf("merge: %v", err)
	}
	return changed
}

// graph describes an undirected graph over peers 0..n-1 plus links that must
// not count (one-sided or not established on one end).
type graph struct {
	n     int
	edges [][2]int // established on both ends
	bogus [][2]int // a listed i->j that is not matched established by j
}

// randomGraph builds a sparse random graph: about n*deg/2 edges drawn
// uniformly (so some peers may be isolated or in separate components unless
// connected is set, which first adds a random spanning tree), plus n/5
// bogus one-sided or half-established links.
func randomGraph(rng *rand.Rand, n int, deg float64, connected bool) graph {
	g := graph{n: n}
	seen := map[[2]int]bool{}
	add := func(a, b int) {
		if a == b {
			return
		}
		if a > b {
			a, b = b, a
		}
		if !seen[[2]int{a, b}] {
			seen[[2]int{a, b}] = true
			g.edges = append(g.edges, [2]int{a, b})
		}
	}
	if connected {
		for i := 1; i < n; i++ {
			add(i, rng.IntN(i))
		}
	}
	for len(g.edges) < int(float64(n)*deg/2) {
		add(rng.IntN(n), rng.IntN(n))
	}
	for k := 0; k < n/5; k++ {
		a, b := rng.IntN(n), rng.IntN(n)
		if lo, hi := min(a, b), max(a, b); a != b && !seen[[2]int{lo, hi}] {
			seen[[2]int{lo, hi}] = true
			g.bogus = append(g.bogus, [2]int{a, b})
		}
	}
	return g
}

// peers turns g into topology entries for pn(0..n-1). Each bogus link a->b is
// listed by a as established and by b either not at all or as not
// established.
func (g graph) peers(rng *rand.Rand) []Peer {
	conns := make([][]Conn, g.n)
	for _, e := range g.edges {
		conns[e[0]] = append(conns[e[0]], est(e[1]))
		conns[e[1]] = append(conns[e[1]], est(e[0]))
	}
	for _, e := range g.bogus {
		conns[e[0]] = append(conns[e[0]], est(e[1]))
		if rng.IntN(2) == 0 {
			conns[e[1]] = append(conns[e[1]], pend(e[0]))
		}
	}
	out := make([]Peer, g.n)
	for i := range out {
		rng.Shuffle(len(conns[i]), func(a, b int) { conns[i][a], conns[i][b] = conns[i][b], conns[i][a] })
		out[i] = mk(i, identity.UID(1000+i), 1+uint64(rng.IntN(5)), conns[i]...)
	}
	return out
}

// topoFrom returns the topology of peer us holding entries for all peers.
func topoFrom(tb testing.TB, us int, peers []Peer) *Topology {
	tb.Helper()
	t := newTopo(tb, us)
	var others []Peer
	for _, p := range peers {
		if p.Name == pn(us) {
			t.SetOurConns(p.Conns)
		} else {
			others = append(others, p)
		}
	}
	mustMerge(tb, t, others...)
	return t
}
