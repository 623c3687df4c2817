// Package table owns weaveDNS's name table: the (name, address, container,
// origin peer) entries that every router replicates to every other router,
// the rules by which copies merge, the lookups the DNS server answers from,
// and the wire encoding of entries for replication.
//
// It is a pure data structure: no I/O, no goroutines, no clock (callers
// pass the time to the methods that need it) and no randomness except an
// injected source for shuffling answers. Moving entries between routers
// (deltas on every change, full state on a periodic exchange) is the
// replication layer's job.
//
// # Rules
//
// An entry is keyed by (origin, container, name, address). Only its origin
// creates, changes or removes an entry, stamping each change with the next
// value of its own counter, so for one key the higher version wins
// everywhere whatever the order in which copies arrive (at an equal
// version, a tombstone beats a live entry). Removing makes a tombstone, a
// newer version marked deleted, so that older copies of the live entry still
// travelling the mesh lose to it; adding again later makes a yet newer live
// version.
//
// A router restarted without its state (or that crashed before persisting
// its last change) may meet claims about its own entries at versions above
// its counter. It moves its counter above them and re-asserts its current
// view with new versions (see Table.Merge), so the mesh converges on what the
// running router holds. A restarted router that kept its state restores it
// with LoadOwn and re-announces Own.
//
// # Tombstone expiry
//
// GC drops a tombstone TombstoneExpiry (default 10 minutes) after its origin
// made it. This is safe because a dropped tombstone matters only if an older
// live copy of its entry can still arrive, and that copy could come only from
// a router that missed the tombstone for that long:
//
//   - routers that can reach the origin get the tombstone within seconds,
//     through the delta broadcast or, failing that, the periodic full state
//     exchange, which repeats until they have it;
//   - a router cut off from the origin for longer sees the origin leave the
//     mesh and drops all its entries (DropOrigin), stale copies included, and
//     re-learns the origin's current entries from full state exchange when it
//     is reachable again;
//   - nothing but the origin makes a new version of an entry, so once no
//     router holds an old copy, an entry can only come back because its own
//     origin adds it again.
//
// Deletion times come from the origin's clock and are compared with ours,
// so clocks that differ by a minute shorten or stretch the bound by a minute
// (a deletion time in our future is taken as now); the bound is meant to be
// far longer than both the time the mesh takes to spread a change and any
// clock skew between hosts.
//
// # Concurrency
//
// A Table is safe for concurrent use: changes (Add, Remove, Merge, GC, ...)
// take an exclusive lock, lookups a shared one, so the DNS server's lookups
// run in parallel and wait only for a change in progress.
//
// # Files
//
//   - entry.go: Key, Entry, their validation, CanonicalName, the limits.
//   - table.go: Config, Table and the changes we make as origin (Add, Remove,
//     RemoveContainer).
//   - merge.go: Merge (with our-origin conflicts), LoadOwn, GC, DropOrigin.
//   - query.go: Lookup, LookupAddr, Names, Live, All, Own and the indexes.
//   - encode.go: Encode and Decode, the versioned, bounded wire format.
package table
