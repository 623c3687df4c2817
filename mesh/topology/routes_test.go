package topology

import (
	"math/rand/v2"
	"slices"
	"sync"
	"testing"

	"github.com/weavelab/weave/mesh/identity"
)

// sym builds entries for peers 1..n where each pair in links is established
// on both ends; extra conns can be added per peer.
func sym(n int, links [][2]int, extra map[int][]Conn) []Peer {
	conns := make(map[int][]Conn)
	for _, l := range links {
		conns[l[0]] = append(conns[l[0]], est(l[1]))
		conns[l[1]] = append(conns[l[1]], est(l[0]))
	}
	var out []Peer
	for i := 1; i <= n; i++ {
		out = append(out, mk(i, identity.UID(1000+i), 1, append(conns[i], extra[i]...)...))
	}
	return out
}

func names(is ...int) []identity.PeerName {
	var out []identity.PeerName
	for _, i := range is {
		out = append(out, pn(i))
	}
	return out
}

func TestRoutesHandBuilt(t *testing.T) {
	chain := sym(4, [][2]int{{1, 2}, {2, 3}, {3, 4}}, nil)
	ring := sym(6, [][2]int{{1, 2}, {2, 3}, {3, 4}, {4, 5}, {5, 6}, {6, 1}}, nil)
	star := sym(5, [][2]int{{1, 2}, {1, 3}, {1, 4}, {1, 5}}, nil)
	// 1-2 established only by 1 (2 lists it pending); 1-3 listed only by 1;
	// 1-4 listed by 4 only; 1-5 fine; 1-9 to a peer without an entry.
	asym := sym(5, [][2]int{{1, 5}}, map[int][]Conn{
		1: {est(2), est(3), est(9)},
		2: {pend(1)},
		4: {est(1)},
	})
	// Diamond 1-2-4, 1-3-4 plus a tail 4-5: two equal paths to 4 and 5.
	diamond := sym(5, [][2]int{{1, 3}, {1, 2}, {2, 4}, {3, 4}, {4, 5}}, nil)

	type bc struct {
		src  int
		want []identity.PeerName
	}
	tests := []struct {
		name      string
		peers     []Peer
		us        int
		unicast   map[int]int // dst -> next; 0 = unreachable
		reachable []identity.PeerName
		broadcast []bc
	}{
		{
			name: "chain from end", peers: chain, us: 1,
			unicast:   map[int]int{2: 2, 3: 2, 4: 2, 1: 0, 7: 0},
			reachable: names(2, 3, 4),
			broadcast: []bc{{1, names(2)}, {2, nil}, {4, nil}, {9, nil}},
		},
		{
			name: "chain middle", peers: chain, us: 2,
			unicast:   map[int]int{1: 1, 3: 3, 4: 3},
			reachable: names(1, 3, 4),
			broadcast: []bc{{1, names(3)}, {4, names(1)}, {3, names(1)}, {2, names(1, 3)}},
		},
		{
			name: "ring: tie to the opposite peer goes to the lower next hop", peers: ring, us: 1,
			unicast:   map[int]int{2: 2, 3: 2, 4: 2, 5: 6, 6: 6},
			reachable: names(2, 3, 4, 5, 6),
			broadcast: []bc{{1, names(2, 6)}, {4, nil}, {3, names(6)}, {5, names(2)}},
		},
		{
			name: "ring: opposite peer's parent is the lower of its two", peers: ring, us: 3,
			broadcast: []bc{{1, names(4)}, {4, names(2)}, {6, nil}},
		},
		{
			name: "ring: the other side forwards nothing to 4", peers: ring, us: 5,
			broadcast: []bc{{1, nil}, {2, nil}, {3, nil}, {4, names(6)}},
		},
		{
			name: "star leaf", peers: star, us: 2,
			unicast:   map[int]int{1: 1, 3: 1, 5: 1},
			reachable: names(1, 3, 4, 5),
			broadcast: []bc{{2, names(1)}, {3, nil}},
		},
		{
			name: "star centre", peers: star, us: 1,
			unicast:   map[int]int{2: 2, 5: 5},
			reachable: names(2, 3, 4, 5),
			broadcast: []bc{{2, names(3, 4, 5)}, {1, names(2, 3, 4, 5)}},
		},
		{
			name: "asymmetric and unestablished links ignored", peers: asym, us: 1,
			unicast:   map[int]int{2: 0, 3: 0, 4: 0, 5: 5, 9: 0},
			reachable: names(5),
			broadcast: []bc{{1, names(5)}, {2, nil}, {4, nil}},
		},
		{
			name: "asymmetric seen from the other end", peers: asym, us: 4,
			unicast:   map[int]int{1: 0},
			reachable: []identity.PeerName{},
			broadcast: []bc{{4, nil}},
		},
		{
			name: "diamond", peers: diamond, us: 1,
			unicast:   map[int]int{2: 2, 3: 3, 4: 2, 5: 2},
			reachable: names(2, 3, 4, 5),
			broadcast: []bc{{1, names(2, 3)}, {5, nil}},
		},
		{
			name: "diamond: only the lower branch relays", peers: diamond, us: 4,
			broadcast: []bc{{1, names(5)}, {5, names(2, 3)}, {2, names(5)}},
		},
		{
			name: "diamond: the higher branch is a leaf of 1's tree", peers: diamond, us: 3,
			broadcast: []bc{{1, nil}, {2, nil}, {5, nil}},
		},
		{
			name: "diamond: the lower branch relays towards 1", peers: diamond, us: 2,
			broadcast: []bc{{5, names(1)}, {3, nil}, {1, names(4)}},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := topoFrom(t, tc.us, tc.peers).Routes()
			if r.Our() != pn(tc.us) {
				t.Fatalf("Our = %s", r.Our())
			}
			for dst, want := range tc.unicast {
				next, ok := r.Unicast(pn(dst))
				if ok != (want != 0) || ok && next != pn(want) {
					t.Errorf("Unicast(%d) = %s, %v; want %d", dst, next, ok, want)
				}
			}
			if tc.reachable != nil {
				if got := r.Reachable(); !slices.Equal(got, tc.reachable) {
					t.Errorf("Reachable = %v, want %v", got, tc.reachable)
				}
			}
			for _, b := range tc.broadcast {
				if got := r.Broadcast(pn(b.src)); !slices.Equal(got, b.want) {
					t.Errorf("Broadcast(%d) = %v, want %v", b.src, got, b.want)
				}
				if got := r.Broadcast(pn(b.src)); !slices.Equal(got, b.want) {
					t.Errorf("cached Broadcast(%d) = %v, want %v", b.src, got, b.want)
				}
			}
			hops := r.NextHops()
			if len(hops) != len(r.Reachable()) {
				t.Errorf("NextHops has %d entries, Reachable %d", len(hops), len(r.Reachable()))
			}
			for dst, next := range hops {
				if n, ok := r.Unicast(dst); !ok || n != next {
					t.Errorf("NextHops[%s] = %s, Unicast says %s %v", dst, next, n, ok)
				}
			}
		})
	}
}

func TestRoutesNilAndEmpty(t *testing.T) {
	var r *Routes
	if _, ok := r.Unicast(pn(1)); ok || r.Broadcast(pn(1)) != nil || r.Reachable() != nil ||
		len(r.NextHops()) != 0 || r.Neighbours() != nil || r.Our() != identity.UnknownPeer {
		t.Fatal("nil Routes routes somewhere")
	}
	if _, ok := r.Distance(pn(1)); ok {
		t.Fatal("nil Routes has a distance")
	}
	r = NewRoutes(pn(1), []Peer{mk(2, 1, 1, est(1))}) // we have no entry
	if _, ok := r.Unicast(pn(2)); ok || r.Broadcast(pn(2)) != nil || r.Neighbours() != nil {
		t.Fatal("routes without our entry route somewhere")
	}
	r = newTopo(t, 1).Routes()
	if d, ok := r.Distance(pn(1)); !ok || d != 0 {
		t.Fatalf("Distance(us) = %d, %v", d, ok)
	}
	if got := r.Broadcast(pn(1)); got != nil {
		t.Fatalf("lone peer broadcasts to %v", got)
	}
}

func TestRoutesCached(t *testing.T) {
	topo := newTopo(t, 1)
	topo.SetOurConns([]Conn{est(2)})
	r1 := topo.Routes()
	if topo.Routes() != r1 {
		t.Fatal("Routes recomputed without a change")
	}
	mustMerge(t, topo, mk(2, 1, 1, est(1)))
	r2 := topo.Routes()
	if r2 == r1 {
		t.Fatal("Routes not recomputed after a merge that changed an entry")
	}
	if next, ok := r2.Unicast(pn(2)); !ok || next != pn(2) {
		t.Fatalf("Unicast(2) = %s, %v after the link came up", next, ok)
	}
	mustMerge(t, topo, mk(2, 1, 1, est(1)))
	if topo.Routes() != r2 {
		t.Fatal("Routes recomputed after a merge that changed nothing")
	}
}

// floyd computes all-pairs hop counts over the links both ends list as
// established, independently of computeRoutes. inf marks unreachable.
const inf = 1 << 30

func floyd(peers []Peer) (index map[identity.PeerName]int, dist [][]int) {
	n := len(peers)
	index = make(map[identity.PeerName]int, n)
	for i, p := range peers {
		index[p.Name] = i
	}
	listed := make([][]bool, n)
	dist = make([][]int, n)
	for i := range n {
		listed[i] = make([]bool, n)
		dist[i] = make([]int, n)
		for j := range n {
			dist[i][j] = inf
		}
		dist[i][i] = 0
	}
	for i, p := range peers {
		for _, c := range p.Conns {
			if j, ok := index[c.Remote]; ok && c.Established {
				listed[i][j] = true
			}
		}
	}
	for i := range n {
		for j := range n {
			if listed[i][j] && listed[j][i] {
				dist[i][j] = 1
			}
		}
	}
	for k := range n {
		for i := range n {
			for j := range n {
				if d := dist[i][k] + dist[k][j]; d < dist[i][j] {
					dist[i][j] = d
				}
			}
		}
	}
	return index, dist
}

// On random sparse graphs, every peer's next hop to every destination is its
// lowest-named neighbour on a shortest path, and a broadcast from every
// source, forwarded by each peer along its own Routes, reaches each peer
// reachable from the source exactly once along shortest paths.
func TestRoutesRandomGraphs(t *testing.T) {
	const n = 100
	for seed := range uint64(12) {
		rng := rand.New(rand.NewPCG(seed, 99))
		deg := []float64{1.5, 2.5, 4}[seed%3]
		peers := randomGraph(rng, n, deg, seed%2 == 0).peers(rng)
		index, dist := floyd(peers)
		routes := make([]*Routes, n)
		for us := range n {
			routes[us] = topoFrom(t, us, peers).Routes()
		}
		for us := range n {
			r := routes[us]
			var wantReach []identity.PeerName
			for dst := range n {
				d := dist[us][dst]
				if hops, ok := r.Distance(pn(dst)); ok != (d < inf) || ok && hops != d {
					t.Fatalf("seed %d: Distance(%d->%d) = %d %v, want %d", seed, us, dst, hops, ok, d)
				}
				next, ok := r.Unicast(pn(dst))
				if dst == us || d == inf {
					if ok {
						t.Fatalf("seed %d: Unicast(%d->%d) = %s, want none", seed, us, dst, next)
					}
					continue
				}
				wantReach = append(wantReach, pn(dst))
				if !ok {
					t.Fatalf("seed %d: no route %d->%d at distance %d", seed, us, dst, d)
				}
				// The lowest-named neighbour of us one hop closer to dst.
				want := -1
				for h := range n {
					if dist[us][h] == 1 && dist[h][dst] == d-1 {
						want = h
						break
					}
				}
				if nh := index[next]; nh != want {
					t.Fatalf("seed %d: Unicast(%d->%d) = %d (dist %d->%d %d, link %d), want %d",
						seed, us, dst, nh, nh, dst, dist[nh][dst], dist[us][nh], want)
				}
			}
			if !slices.Equal(r.Reachable(), wantReach) {
				t.Fatalf("seed %d: Reachable(%d) = %v, want %v", seed, us, r.Reachable(), wantReach)
			}
		}
		for src := range n {
			got := make([]int, n)
			queue := []int{src}
			for len(queue) > 0 {
				at := queue[0]
				queue = queue[1:]
				for _, child := range routes[at].Broadcast(pn(src)) {
					c := index[child]
					if dist[at][c] != 1 || dist[src][c] != dist[src][at]+1 {
						t.Fatalf("seed %d: broadcast from %d: %d forwards to %d off the shortest-path tree", seed, src, at, c)
					}
					got[c]++
					queue = append(queue, c)
				}
			}
			for p := range n {
				want := 0
				if p != src && dist[src][p] < inf {
					want = 1
				}
				if got[p] != want {
					t.Fatalf("seed %d: broadcast from %d reached %d %d times, want %d", seed, src, p, got[p], want)
				}
			}
		}
	}
}

// Concurrent readers of one snapshot (run with -race) agree with each other.
func TestRoutesConcurrentBroadcast(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 7))
	peers := randomGraph(rng, 200, 3, true).peers(rng)
	r := NewRoutes(pn(0), peers)
	want := make([][]identity.PeerName, 200)
	for src := range 200 {
		want[src] = NewRoutes(pn(0), peers).Broadcast(pn(src))
	}
	var wg sync.WaitGroup
	errs := make(chan string, 8)
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for k := range 200 {
				src := (k + w*25) % 200
				if got := r.Broadcast(pn(src)); !slices.Equal(got, want[src]) {
					errs <- "mismatch"
					return
				}
				r.Unicast(pn(src))
			}
		}()
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Fatal(e)
	}
}
