// Package topology owns the mesh's picture of the network: every peer it has
// heard of with that peer's version and connection list, the merge rule that
// makes newer information win, the wire encoding of topology updates, and
// the routes computed from it (unicast next hop by shortest path, broadcast
// by a spanning tree rooted at each source).
package topology

import (
	"github.com/weavelab/weave/mesh/identity"
)

// Conn is one connection as its owning peer reports it.
type Conn struct {
	Remote      identity.PeerName `json:"remote"`
	RemoteAddr  string            `json:"remote_addr,omitempty"` // host:port the owner reached it at, for discovery
	Outbound    bool              `json:"outbound"`
	Established bool              `json:"established"`
}

// Peer is one peer's state as gossiped: identity, a version that the peer
// itself bumps on every change, and its connections.
type Peer struct {
	identity.Peer
	Version uint64 `json:"version"`
	Conns   []Conn `json:"conns"`
}

// Routes is an immutable snapshot of routes computed from one topology
// version as seen by one peer. Safe for concurrent use.
type Routes struct {
	// filled in by the topology owner
}

// Unicast returns the next hop on a shortest path from us to dst, counting
// only connections that both ends report as established.
func (r *Routes) Unicast(dst identity.PeerName) (next identity.PeerName, ok bool) {
	panic("topology.Routes.Unicast: not yet implemented")
}

// Broadcast returns the peers we forward a broadcast from src to, so that
// a broadcast from src reaches every reachable peer exactly once.
func (r *Routes) Broadcast(src identity.PeerName) []identity.PeerName {
	panic("topology.Routes.Broadcast: not yet implemented")
}
