// Package topology owns the mesh's picture of the network: every peer it has
// heard of with that peer's version and connection list, the merge rule that
// makes newer information win, the anti-entropy summaries that let two
// neighbours exchange only what differs, the wire encoding of topology
// updates, and the routes computed from it (unicast next hop by shortest
// path, broadcast by a spanning tree rooted at each source).
//
// Everything here is a pure data structure: no I/O, no goroutines, no clock.
// A Topology is not safe for concurrent use (the mesh's actor owns one);
// a Routes snapshot is immutable and safe for any number of readers.
//
// The pieces, one file each:
//
//   - peer.go: Peer and Conn, the limits on them, Validate, and Beats, the
//     order between two entries for one name (version, then UID).
//   - topology.go: Topology: SetOurConns (our entry, which only we write),
//     Merge (newer wins; a restarted peer outbids its old self), GC (drops
//     peers no longer reachable from us through reported connections).
//   - summary.go: Summary, NewerThan, Wants, Digest for anti-entropy.
//   - encode.go: the versioned, bounded binary wire formats.
//   - routes.go, broadcast.go: Routes over links both ends report as
//     established; unicast by BFS with lowest-name tie-breaking, broadcast
//     trees computed the same way by every peer.
//   - fanout.go: FanOut, how many neighbours a gossip update goes to.
package topology
