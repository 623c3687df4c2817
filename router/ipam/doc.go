// Package ipam owns automatic address allocation (IPAM) across the mesh:
// which peer may hand out which addresses of the allocation range, and the
// addresses this peer has handed to its containers.
//
// # Design
//
// The range (--ipalloc-range, default 10.32.0.0/12) is a ring of tokens, as
// in Weave Net: each token starts a run of addresses that one peer owns, up
// to the next token. Every peer replicates the whole ring over the mesh's
// gossip channel "ipam". The rules that keep it free of conflicts:
//
//   - Only the owner of a run changes its entry or inserts tokens inside
//     it, and every change raises the entry's version. Merging two views
//     keeps, per token, the higher version; tokens are never removed. So
//     views converge (the merge is a join: commutative, associative,
//     idempotent), and no peer ever believes it owns space that another
//     peer believes it owns: ownership only moves by the owner's own act.
//     Only the owner broadcasts a change; peers that merge it do not relay
//     it (the mesh's broadcast reaches everyone, periodic gossip repairs
//     losses), so a change costs O(peers) messages, not O(peers²). A peer
//     that finds a newer version of its own entry (it restarted from a
//     state saved before that change went out) keeps its entry as it is
//     and raises it above; a merge whose result would be contradictory is
//     refused.
//   - A peer allocates only inside its own runs, from its local table, with
//     no round trip: the address is on disk (fsync) before it is handed out,
//     and the ring is on disk before any change to it leaves the peer.
//   - A peer that runs out asks (unicast) the reachable peer advertising the
//     most free space in the subnet; that peer hands over half of its largest
//     free run by re-owning it (a normal owner's change), and gossips the
//     ring. It keeps space in subnets it has itself just run out of (else
//     the last free addresses go back and forth between peers that each
//     need them), and says so when it has none to give in the subnet; when
//     every peer has, the subnet is full (ErrFull). Advertised free counts
//     leave out the range's network and broadcast addresses, which no
//     subnet hands out. Across a partition a side may run out; it never
//     takes space it does not own, so it never hands out an address twice.
//   - The first division needs agreement, or two peers could seed different
//     rings and hand out the same addresses. The peers agree on the set of
//     seed peers with single-decree Paxos carried by gossip (consensus.go);
//     the quorum is a majority of the peers named at launch and this one
//     (--ipalloc-init consensus=N overrides; observer never seeds). The ring
//     carries its seeds: two rings seeded apart (two networks that each
//     allocated before they were connected) never merge, and the connection
//     between them is refused with the reason (mesh.ErrIncompatible).
//   - rmpeer is the one exception to the owner rule: a peer that is gone for
//     good (it must be unreachable) has its runs taken over by the caller,
//     with a version bump large enough to beat anything the dead peer may
//     have published unseen. A peer that comes back after that finds its
//     runs re-owned and refuses the merge (reset it). The caller must also
//     have heard the dead peer's last changes (let gossip settle first):
//     else it may take space the dead peer had just handed to another peer,
//     and both would hand out its addresses until they meet and refuse each
//     other (TestRmPeerStaleView). `weave reset` hands the peer's runs to a
//     reachable peer first (resent until acknowledged), so nothing is lost.
//
// Addresses of a container that died are held for a grace period (default
// 30 s): the same container (by ID) coming back gets them again; after it
// they are free.
//
// # Structure
//
// Core (core.go) is the state machine: ring, consensus, allocations. It does
// no I/O and reads no clock, so the property test (TestSimulation, in
// sim_test.go and property_test.go) drives many peers over a simulated,
// lossy, partitioned network. Allocator (allocator.go) runs a
// Core in an actor goroutine, persists it in the state dir (ipam.json),
// carries its messages over the mesh (it is a mesh.Gossiper), and makes
// callers wait while space is being obtained.
package ipam
