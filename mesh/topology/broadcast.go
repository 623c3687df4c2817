package topology

import "github.com/weavelab/weave/mesh/identity"

// Broadcast returns the peers we forward a broadcast that originated at src
// to: our children in the broadcast tree rooted at src. The tree is the
// shortest-path tree from src in which every peer's parent is its
// lowest-named neighbour one hop closer to src; every peer computes the same
// tree from the same topology, so a broadcast reaches each peer reachable
// from src exactly once and never loops. src == us gives the root's
// children. It returns nil when src is unknown or we are not reachable from
// it in our view.
//
// The first call for a source costs one BFS (O(peers+links)); later calls
// return the cached slice, which is shared: do not modify it.
func (r *Routes) Broadcast(src identity.PeerName) []identity.PeerName {
	if r == nil {
		return nil
	}
	s, ok := r.index[src]
	if !ok {
		return nil
	}
	if p := r.bcast[s].Load(); p != nil {
		return *p
	}
	// Racing callers compute the same deterministic answer; either store wins.
	children := r.broadcastChildren(s)
	r.bcast[s].Store(&children)
	return children
}

// broadcastChildren runs a BFS from s and returns our neighbours whose
// lowest-named predecessor on a shortest path from s is us.
func (r *Routes) broadcastChildren(s int32) []identity.PeerName {
	us, ok := r.index[r.our]
	if !ok {
		return nil
	}
	dist := make([]int32, len(r.names))
	for i := range dist {
		dist[i] = -1
	}
	dist[s] = 0
	queue := make([]int32, 1, len(r.names))
	queue[0] = s
	for head := 0; head < len(queue); head++ {
		u := queue[head]
		for _, v := range r.adj[u] {
			if dist[v] < 0 {
				dist[v] = dist[u] + 1
				queue = append(queue, v)
			}
		}
	}
	if dist[us] < 0 {
		return nil
	}
	var children []identity.PeerName
	for _, v := range r.adj[us] {
		if dist[v] != dist[us]+1 {
			continue
		}
		if parentOf(r.adj[v], dist, dist[v]) == us {
			children = append(children, r.names[v])
		}
	}
	return children
}

// parentOf returns the lowest-numbered (so lowest-named) neighbour at
// distance d-1; adj is ascending so it is the first one found.
func parentOf(adj []int32, dist []int32, d int32) int32 {
	for _, w := range adj {
		if dist[w] == d-1 {
			return w
		}
	}
	return -1
}
