package topology

import (
	"cmp"
	"fmt"
	"iter"
	"slices"
	"sync"

	"github.com/weavelab/weave/mesh/identity"
)

// Topology is one peer's view of the mesh: an entry per known peer, ours
// included. It is not safe for concurrent use; the mesh's actor owns it and
// hands Routes snapshots (which are) to other goroutines.
type Topology struct {
	our identity.PeerName
	// key signs our entry; nil in an unsigned topology (see NewSigned).
	key *identity.Key
	// names numbers the names we hold entries for (see nameIndex), and
	// entries holds the entry of each number (nil: none), so that the
	// gossip engine can keep per-entry state in slices by the same
	// numbers and a GC marks peers in a bit per number. A simulation's
	// topologies share one nameIndex (ShareEntries): a lookup then probes
	// one small map that stays in cache, not one map per topology.
	names   *nameIndex
	entries []*Peer
	count   int
	// routes caches Routes until an entry changes (see invalidate).
	routes *Routes
	// digest is kept up to date entry by entry (see set): the sum of
	// stampHash over all entries; buckets splits that sum by BucketOf.
	digest  uint64
	buckets [Buckets]uint64
	// orphans is set when some entry lost a connection or a peer was
	// added since the last GC: otherwise GC has nothing to remove.
	orphans bool
	// lost is set when some entry lost a connection since the last GC: a
	// peer that was reachable may no longer be.
	lost bool
	// intern, if set, shares stored entries with other topologies.
	intern *Interner
}

// Interner lets the topologies of one process share identical entries.
// Stored entries are never changed in place, so topologies that store the
// same entry (same name, UID, version, nickname, connections, key and
// signature) can store one copy. A router holds one topology and needs
// none; a simulation holding thousands of topologies of thousands of
// entries does. It is not safe for concurrent use: the topologies sharing
// one must be used from one goroutine. Entries stay in it for its life.
type Interner struct {
	m     map[internKey]*Peer
	names *nameIndex
}

// nameIndex gives names small numbers (indices), dense from 0. A private
// one (a topology's own) frees the index of a name whose entry is
// collected, for the next new name; a shared one (an Interner's) keeps
// every name for its life.
type nameIndex struct {
	ids    map[identity.PeerName]int32
	shared bool
	free   []int32
	next   int32
}

func newNameIndex(shared bool) *nameIndex {
	return &nameIndex{ids: make(map[identity.PeerName]int32), shared: shared}
}

// add returns the index of name, giving it one if it has none.
func (x *nameIndex) add(name identity.PeerName) int32 {
	if i, ok := x.ids[name]; ok {
		return i
	}
	var i int32
	if n := len(x.free); n > 0 {
		i, x.free = x.free[n-1], x.free[:n-1]
	} else {
		i = x.next
		x.next++
	}
	x.ids[name] = i
	return i
}

// release gives up the index of name (a private index only).
func (x *nameIndex) release(name identity.PeerName) {
	if x.shared {
		return
	}
	if i, ok := x.ids[name]; ok {
		delete(x.ids, name)
		x.free = append(x.free, i)
	}
}

type internKey struct {
	name    identity.PeerName
	uid     identity.UID
	version uint64
}

// NewInterner returns an empty Interner.
func NewInterner() *Interner {
	return &Interner{m: make(map[internKey]*Peer), names: newNameIndex(true)}
}

// ShareEntries makes t store entries through in (see Interner), and number
// names (Index) as the other topologies sharing in do. Call it before
// using t.
func (t *Topology) ShareEntries(in *Interner) {
	if in == nil {
		return
	}
	t.intern = in
	var held []*Peer
	for p := range t.All() {
		held = append(held, p)
		in.add(p)
	}
	t.names, t.entries, t.count = in.names, nil, 0
	for _, p := range held {
		t.put(p)
	}
}

// lookup returns the entry held for name.
func (t *Topology) lookup(name identity.PeerName) (*Peer, bool) {
	i, ok := t.names.ids[name]
	if !ok || int(i) >= len(t.entries) || t.entries[i] == nil {
		return nil, false
	}
	return t.entries[i], true
}

// put stores p as the entry for its name, replacing any, and returns the
// one it replaced (nil if none).
func (t *Topology) put(p *Peer) (old *Peer) {
	i := int(t.names.add(p.Name))
	if i >= len(t.entries) {
		t.entries = slices.Grow(t.entries, i+1-len(t.entries))[:i+1]
	}
	old, t.entries[i] = t.entries[i], p
	if old == nil {
		t.count++
	}
	return old
}

// remove drops the entry held for name.
func (t *Topology) remove(name identity.PeerName) {
	if i, ok := t.names.ids[name]; ok && int(i) < len(t.entries) && t.entries[i] != nil {
		t.entries[i] = nil
		t.count--
		t.names.release(name)
	}
}

// Index returns the index of name, if we hold an entry for it: a small
// number, below IndexLimit, that stays the name's while we do, so that a
// caller can keep per-entry state in a slice. Once the entry is collected
// the index may go to another name (whose entry is then new).
func (t *Topology) Index(name identity.PeerName) (int, bool) {
	i, ok := t.names.ids[name]
	if !ok || int(i) >= len(t.entries) || t.entries[i] == nil {
		return 0, false
	}
	return int(i), true
}

// IndexLimit bounds the indices of the names we hold entries for.
func (t *Topology) IndexLimit() int { return len(t.entries) }

// find returns the interned entry equal to p, or nil.
func (in *Interner) find(p *Peer) *Peer {
	q := in.m[internKey{p.Name, p.UID, p.Version}]
	if q == nil || q.NickName != p.NickName || q.Key != p.Key || q.Sig != p.Sig || !slices.Equal(q.Conns, p.Conns) {
		return nil
	}
	return q
}

// add interns p unless an entry with its stamp is there already.
func (in *Interner) add(p *Peer) {
	k := internKey{p.Name, p.UID, p.Version}
	if _, ok := in.m[k]; !ok {
		in.m[k] = p
	}
}

// store returns the entry to store for p: an interned copy, or a new one
// (with connections in canonical order).
func (t *Topology) store(p *Peer) *Peer {
	if t.intern != nil {
		if q := t.intern.find(p); q != nil {
			return q
		}
	}
	stored := p.Clone()
	sortConns(stored.Conns)
	if t.intern != nil {
		t.intern.add(&stored)
	}
	return &stored
}

// invalidate drops what was computed from the entries.
func (t *Topology) invalidate() { t.routes = nil }

// set stores p (which the topology now owns) as the entry for its name,
// keeping the digest and the orphans flag up to date.
func (t *Topology) set(p *Peer) {
	if old := t.put(p); old != nil {
		t.unhash(p.Name, stampOf(old))
		if lostConn(old.Conns, p.Conns) {
			t.orphans, t.lost = true, true
		}
	} else {
		t.orphans = true // a new peer may not be reachable (yet)
	}
	h := stampHash(p.Name, stampOf(p))
	t.digest += h
	t.buckets[BucketOf(p.Name)] += h
}

// unhash takes the entry of name with stamp st out of the digests.
func (t *Topology) unhash(name identity.PeerName, st Stamp) {
	h := stampHash(name, st)
	t.digest -= h
	t.buckets[BucketOf(name)] -= h
}

// lostConn reports whether a remote listed in old is missing from new
// (both sorted by remote, as stored entries are).
func lostConn(old, new []Conn) bool {
	j := 0
	for _, c := range old {
		for j < len(new) && new[j].Remote < c.Remote {
			j++
		}
		if j == len(new) || new[j].Remote != c.Remote {
			return true
		}
	}
	return false
}

// New returns an unsigned topology that knows only us, at version 1 with no
// connections. It trusts every entry it is given, so it serves the
// algorithms' own tests and simulations; a router uses NewSigned.
func New(our identity.Peer) *Topology {
	t := &Topology{our: our.Name, names: newNameIndex(false)}
	t.set(&Peer{Peer: our, Version: 1})
	return t
}

// NewSigned returns a signed topology for us (our.Name must be key's name):
// our entry is signed with key whenever it changes, and Merge accepts an
// entry only when the peer it describes signed it with the key its name is
// bound to (identity.NameOf), and, while we hold an entry for that name,
// with the same key. So no peer can publish, replay above, or outbid
// another's entry; only the owner moves it, and a restarted owner (same
// key, new UID) supersedes its old entries as in New.
func NewSigned(our identity.Peer, key *identity.Key) (*Topology, error) {
	if err := identity.CheckBinding(our.Name, key.Public()); err != nil {
		return nil, fmt.Errorf("topology: %w", err)
	}
	t := &Topology{our: our.Name, key: key, names: newNameIndex(false)}
	us := &Peer{Peer: our, Version: 1}
	us.sign(key)
	t.set(us)
	return t, nil
}

// Signed reports whether the topology requires signed entries.
func (t *Topology) Signed() bool { return t.key != nil }

// Our returns a copy of our own entry.
func (t *Topology) Our() Peer {
	us, _ := t.lookup(t.our)
	return us.Clone()
}

// SetOurConns replaces our connection list and bumps our version (always,
// even when the list is unchanged, so the returned update supersedes every
// earlier one; the version saturates at MaxVersion). Connections to ourselves or to the
// zero name are dropped, and a remote listed more than once keeps its last
// entry. It returns the update to gossip: just our own entry.
func (t *Topology) SetOurConns(conns []Conn) []Peer {
	byRemote := make(map[identity.PeerName]Conn, len(conns))
	for _, c := range conns {
		if c.Remote == t.our || c.Remote == identity.UnknownPeer {
			continue
		}
		if len(c.RemoteAddr) > MaxAddrLen {
			c.RemoteAddr = ""
		}
		byRemote[c.Remote] = c
	}
	list := make([]Conn, 0, len(byRemote))
	for _, c := range byRemote {
		list = append(list, c)
	}
	sortConns(list)
	if len(list) > MaxConnsPerPeer {
		list = list[:MaxConnsPerPeer]
	}
	// Our entry is replaced, never changed in place: RoutesFunc snapshots
	// share entries with the topology.
	cur, _ := t.lookup(t.our)
	us := *cur
	us.Conns = list
	if us.Version < MaxVersion {
		us.Version++
	}
	t.signOurs(&us)
	t.set(&us)
	if t.intern != nil {
		t.intern.add(&us)
	}
	t.invalidate()
	return []Peer{us.Clone()}
}

// Merge applies an update received from the network. Per peer name the entry
// that Beats the other is kept (higher version, then higher UID): a peer that
// restarted with a new UID starts again at a low version and is ignored until
// it hears of its old self and jumps above it, just as we do here.
//
// Entries for our own name: with our UID they are ignored (we are the only
// source of our entry). With another UID (an earlier run of us, or an
// impostor) they are ignored unless they would beat our entry; then we bump
// our version above theirs so that our entry wins again everywhere, and
// report our entry in changed so that the caller gossips it. (An entry for
// our name at MaxVersion cannot be outbid and is ignored; only a hostile
// peer would send one.)
//
// An invalid update (see ValidateUpdate) changes nothing and returns an error
// wrapping ErrInvalid. changed holds copies of the entries now stored for
// every peer whose entry changed, sorted by name.
func (t *Topology) Merge(update []Peer) (changed []Peer, err error) {
	stored, err := t.MergeEntries(update)
	for _, p := range stored {
		changed = append(changed, p.Clone())
	}
	return changed, err
}

// MergeEntries is Merge returning the entries now stored themselves, not
// copies: they are shared with the topology (and never changed in place),
// so the caller must not modify them. The gossip engine merges every entry
// it receives through it.
func (t *Topology) MergeEntries(update []Peer) (changed []*Peer, err error) {
	if err := ValidateUpdate(update); err != nil {
		return nil, fmt.Errorf("merge: %w", err)
	}
	if t.key != nil {
		if err := t.verifyUpdate(update); err != nil {
			return nil, fmt.Errorf("merge: %w", err)
		}
	}
	for i := range update {
		p := &update[i]
		cur, known := t.lookup(p.Name)
		if p.Name == t.our {
			if p.UID == cur.UID || !p.Beats(*cur) || p.Version >= MaxVersion {
				continue
			}
			bumped := *cur
			bumped.Version = p.Version + 1
			t.signOurs(&bumped)
			t.set(&bumped)
			if t.intern != nil {
				t.intern.add(&bumped)
			}
			changed = append(changed, &bumped)
			continue
		}
		if known && !p.Beats(*cur) {
			continue
		}
		stored := t.store(p)
		t.set(stored)
		changed = append(changed, stored)
	}
	if len(changed) > 0 {
		t.invalidate()
		slices.SortFunc(changed, func(a, b *Peer) int { return cmp.Compare(a.Name, b.Name) })
	}
	return changed, nil
}

// verifyUpdate checks the signature of every entry of update that Merge
// would store (or that would make us bump ours), before anything changes:
// an update with one forged entry changes nothing. Entries that lose to what
// we hold cost no signature check.
func (t *Topology) verifyUpdate(update []Peer) error {
	for i := range update {
		p := &update[i]
		cur, known := t.lookup(p.Name)
		if p.Name == t.our && p.UID == cur.UID {
			continue
		}
		if known && !p.Beats(*cur) {
			continue
		}
		if known && p.Key != cur.Key {
			return fmt.Errorf("%w: %w: entry of %s signed by another key than the one we hold", ErrInvalid, ErrSignature, p.Name)
		}
		if err := p.verify(); err != nil {
			return err
		}
	}
	return nil
}

// signOurs signs our entry p in a signed topology.
func (t *Topology) signOurs(p *Peer) {
	if t.key != nil {
		p.sign(t.key)
	}
}

// Peers returns copies of all entries, ours included, sorted by name.
func (t *Topology) Peers() []Peer {
	out := make([]Peer, 0, t.count)
	for p := range t.All() {
		out = append(out, p.Clone())
	}
	slices.SortFunc(out, func(a, b Peer) int { return cmp.Compare(a.Name, b.Name) })
	return out
}

// Get returns a copy of the entry for name.
func (t *Topology) Get(name identity.PeerName) (Peer, bool) {
	p, ok := t.lookup(name)
	if !ok {
		return Peer{}, false
	}
	return p.Clone(), true
}

// Entry returns the entry for name without copying it. Entries are never
// changed in place, so the caller may keep it, but must not modify it.
func (t *Topology) Entry(name identity.PeerName) (*Peer, bool) {
	p, ok := t.lookup(name)
	return p, ok
}

// All yields every entry, ours included, in no particular order, without
// copying them (the caller must not modify them).
func (t *Topology) All() iter.Seq[*Peer] {
	return func(yield func(*Peer) bool) {
		for _, p := range t.entries {
			if p != nil && !yield(p) {
				return
			}
		}
	}
}

// Stamp returns the stamp of the entry for name.
func (t *Topology) Stamp(name identity.PeerName) (Stamp, bool) {
	p, ok := t.lookup(name)
	if !ok {
		return Stamp{}, false
	}
	return stampOf(p), true
}

// Len returns the number of known peers, ours included.
func (t *Topology) Len() int { return t.count }

// GC removes the entries of peers that are no longer reachable from us and
// returns their names, sorted. A peer is reachable when a chain of reported
// connections leads to it from us, where each connection is taken from the
// entry of the peer that reports it, established or not (so a peer whose
// connection is still being set up is kept). Connections reported only by
// the far end do not count: a dead peer's stale entry keeps listing its old
// neighbours, but once they stop listing it, it goes.
func (t *Topology) GC() []identity.PeerName {
	removed := make([]identity.PeerName, 0)
	for n := range t.Collect() {
		removed = append(removed, n)
	}
	if len(removed) == 0 {
		return nil
	}
	slices.Sort(removed)
	return removed
}

// Collect is GC returning the stamps of the entries it removed (nil if
// none), so that a caller can tell a removed entry from a newer one later.
func (t *Topology) Collect() Summary {
	t.orphans, t.lost = false, false
	seen := make([]bool, len(t.entries)) // by index
	us, _ := t.Index(t.our)
	seen[us] = true
	queue := []*Peer{t.entries[us]}
	for len(queue) > 0 {
		p := queue[0]
		queue = queue[1:]
		for _, c := range p.Conns {
			if i, ok := t.Index(c.Remote); ok && !seen[i] {
				seen[i] = true
				queue = append(queue, t.entries[i])
			}
		}
	}
	var removed Summary
	for i, p := range t.entries {
		if p != nil && !seen[i] {
			if removed == nil {
				removed = make(Summary)
			}
			removed[p.Name] = stampOf(p)
			t.unhash(p.Name, stampOf(p))
			t.remove(p.Name)
		}
	}
	if len(removed) > 0 {
		t.invalidate()
	}
	return removed
}

// NeedsGC reports whether a GC could remove anything: whether a peer was
// added or some entry lost a connection since the last GC. Otherwise every
// peer that was reachable then still is.
func (t *Topology) NeedsGC() bool { return t.orphans }

// LostConns reports whether some entry lost a connection since the last
// GC, so that a peer that was reachable may have become unreachable (as
// opposed to NeedsGC only because peers were added, which are usually
// reachable once their neighbours' entries arrive).
func (t *Topology) LostConns() bool { return t.lost }

// RoutesFunc returns a function that computes the routes for the topology
// as it is now, once, on its first call. It is safe for concurrent use and
// cheap to create (O(peers), no route computation), so a caller can publish
// one after every change and let readers pay for the routes only when they
// need them. Entries are never changed in place, so the snapshot may share
// them with the topology.
func (t *Topology) RoutesFunc() func() *Routes {
	if r := t.routes; r != nil {
		return func() *Routes { return r }
	}
	peers := make([]*Peer, 0, t.count)
	for p := range t.All() {
		peers = append(peers, p)
	}
	our := t.our
	return sync.OnceValue(func() *Routes { return computeRoutes(our, peers) })
}

// Routes returns the routes for the current topology as seen from us. The
// snapshot is cached until the topology changes, so calling it after every
// Merge is cheap when nothing changed.
func (t *Topology) Routes() *Routes {
	if t.routes == nil {
		peers := make([]*Peer, 0, t.count)
		for p := range t.All() {
			peers = append(peers, p)
		}
		t.routes = computeRoutes(t.our, peers)
	}
	return t.routes
}

// KnownAddrs returns, for every peer other than us, the distinct addresses
// (sorted) at which some peer reports an outbound connection to it: the
// addresses it listens on, for discovery. Inbound connections are skipped,
// since their address is the remote's ephemeral source port.
func (t *Topology) KnownAddrs() map[identity.PeerName][]string {
	out := make(map[identity.PeerName][]string)
	for p := range t.All() {
		for _, c := range p.Conns {
			if c.Outbound && c.RemoteAddr != "" && c.Remote != t.our {
				out[c.Remote] = append(out[c.Remote], c.RemoteAddr)
			}
		}
	}
	for name, addrs := range out {
		slices.Sort(addrs)
		out[name] = slices.Compact(addrs)
	}
	return out
}
