package topology

import (
	"cmp"
	"slices"
	"sync/atomic"

	"github.com/weavelab/weave/mesh/identity"
)

// Routes is an immutable snapshot of the routes from one peer ("us") over one
// topology. Only links that both ends report as established count, so the
// graph is undirected and every peer with the same topology sees the same
// graph. Safe for concurrent use; a nil *Routes routes nowhere.
//
// Unicast and lookup maps are computed up front (one BFS from us). Broadcast
// trees are computed lazily, once per source, and cached without locks.
type Routes struct {
	our   identity.PeerName
	names []identity.PeerName         // node id -> name, ascending
	index map[identity.PeerName]int32 // name -> node id
	adj   [][]int32                   // node id -> neighbour ids, ascending
	dist  []int32                     // hops from us, -1 if unreachable
	next  map[identity.PeerName]identity.PeerName
	reach []identity.PeerName // reachable from us, ascending, us excluded
	bcast []atomic.Pointer[[]identity.PeerName]
}

// NewRoutes computes the routes from our over the given peer entries (which
// it does not retain). A peer's connections to names without an entry are
// ignored. Topology.Routes is the usual way to get one; this is for tests
// and simulations that hold views of their own.
func NewRoutes(our identity.PeerName, peers []Peer) *Routes {
	ptrs := make([]*Peer, len(peers))
	for i := range peers {
		ptrs[i] = &peers[i]
	}
	return computeRoutes(our, ptrs)
}

func computeRoutes(our identity.PeerName, peers []*Peer) *Routes {
	r := &Routes{our: our, index: make(map[identity.PeerName]int32, len(peers))}
	slices.SortFunc(peers, func(a, b *Peer) int { return cmp.Compare(a.Name, b.Name) })
	peers = slices.CompactFunc(peers, func(a, b *Peer) bool { return a.Name == b.Name })
	n := len(peers)
	r.names = make([]identity.PeerName, n)
	for i, p := range peers {
		r.names[i] = p.Name
		r.index[p.Name] = int32(i)
	}

	// A link counts when both ends list it as established: collect each
	// peer's established remotes (sorted), then keep i-j when j's list has i.
	out := make([][]int32, n)
	for i, p := range peers {
		for _, c := range p.Conns {
			if j, ok := r.index[c.Remote]; ok && c.Established && int(j) != i {
				out[i] = append(out[i], j)
			}
		}
		slices.Sort(out[i])
		out[i] = slices.Compact(out[i])
	}
	r.adj = make([][]int32, n)
	for i, js := range out {
		for _, j := range js {
			if _, back := slices.BinarySearch(out[j], int32(i)); back {
				r.adj[i] = append(r.adj[i], j)
			}
		}
	}
	r.bcast = make([]atomic.Pointer[[]identity.PeerName], n)

	// Unicast: BFS from us. The next hop to v is the lowest-named next hop
	// among v's predecessors on shortest paths. BFS finishes a level before
	// it starts the next, so a predecessor's next hop is final when it is
	// used.
	r.dist = make([]int32, n)
	for i := range r.dist {
		r.dist[i] = -1
	}
	r.next = make(map[identity.PeerName]identity.PeerName)
	src, ok := r.index[our]
	if !ok {
		return r
	}
	nh := make([]int32, n)
	r.dist[src] = 0
	queue := make([]int32, 1, n)
	queue[0] = src
	for head := 0; head < len(queue); head++ {
		u := queue[head]
		for _, v := range r.adj[u] {
			hop := nh[u]
			if u == src {
				hop = v
			}
			switch {
			case r.dist[v] < 0:
				r.dist[v] = r.dist[u] + 1
				nh[v] = hop
				queue = append(queue, v)
			case r.dist[v] == r.dist[u]+1 && hop < nh[v]:
				nh[v] = hop
			}
		}
	}
	for v, d := range r.dist {
		if d > 0 {
			r.next[r.names[v]] = r.names[nh[v]]
			r.reach = append(r.reach, r.names[v])
		}
	}
	return r
}

// Our returns the peer these routes start from.
func (r *Routes) Our() identity.PeerName {
	if r == nil {
		return identity.UnknownPeer
	}
	return r.our
}

// Unicast returns the next hop on a shortest path (by hop count) from us to
// dst. Among equally short paths it picks the lowest-named next hop. It
// returns ok=false when dst is unreachable and for dst == us (nothing to
// forward).
func (r *Routes) Unicast(dst identity.PeerName) (next identity.PeerName, ok bool) {
	if r == nil {
		return identity.UnknownPeer, false
	}
	next, ok = r.next[dst]
	return next, ok
}

// Distance returns the number of hops from us to dst (0 for us).
func (r *Routes) Distance(dst identity.PeerName) (hops int, ok bool) {
	if r == nil {
		return 0, false
	}
	i, ok := r.index[dst]
	if !ok || r.dist[i] < 0 {
		return 0, false
	}
	return int(r.dist[i]), true
}

// Reachable returns the peers reachable from us, us excluded, sorted. The
// slice is shared: do not modify it.
func (r *Routes) Reachable() []identity.PeerName {
	if r == nil {
		return nil
	}
	return r.reach
}

// NextHops returns a fresh map from every reachable peer to its next hop.
func (r *Routes) NextHops() map[identity.PeerName]identity.PeerName {
	if r == nil {
		return map[identity.PeerName]identity.PeerName{}
	}
	m := make(map[identity.PeerName]identity.PeerName, len(r.next))
	for k, v := range r.next {
		m[k] = v
	}
	return m
}

// Neighbours returns the peers we have an established link with (in both
// ends' reports), sorted.
func (r *Routes) Neighbours() []identity.PeerName {
	if r == nil {
		return nil
	}
	i, ok := r.index[r.our]
	if !ok {
		return nil
	}
	out := make([]identity.PeerName, len(r.adj[i]))
	for k, v := range r.adj[i] {
		out[k] = r.names[v]
	}
	return out
}
