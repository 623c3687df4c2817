package table

import (
	"errors"
	"fmt"
	"time"

	"github.com/weavelab/weave/mesh/identity"
)

// Merge folds entries received from a peer (a delta or a full state) into
// the table and returns what changed here, in the order given: the delta
// to pass on.
// For each key the entry that beats the other wins (higher version; at an
// equal version a tombstone beats a live entry), so any order of merges,
// with repeats, ends in the same table. now is our clock: a tombstone dated
// in our future is stored as made now (a peer's fast clock cannot make us
// keep it longer than TombstoneExpiry), and a tombstone already past its
// expiry still cancels the older entry it beats but is not kept.
//
// Entries claiming to be ours are handled by mergeOwnLocked: the delta may
// then hold new entries of ours that re-assert our view.
//
// Merge validates every entry first and changes nothing if one is invalid
// (errors wrap ErrInvalid). An error wrapping ErrVersionExhausted comes with
// the rest of the merge done.
func (t *Table) Merge(now time.Time, entries []Entry) ([]Entry, error) {
	for i := range entries {
		if err := entries[i].Validate(); err != nil {
			return nil, fmt.Errorf("merge: entry %d of %d: %w", i, len(entries), err)
		}
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	var delta []Entry
	var errs []error
	for _, e := range entries {
		if e.Tombstone && e.DeletedAt.After(now) {
			e.DeletedAt = deletionTime(now)
		}
		if e.Origin == t.self {
			d, err := t.mergeOwnLocked(now, e)
			if err != nil {
				errs = append(errs, err)
			}
			delta = append(delta, d...)
			continue
		}
		cur, ok := t.entries[e.Key]
		if ok && !e.beats(&cur) {
			continue
		}
		if e.Tombstone && t.expired(now, e.DeletedAt) {
			if ok {
				t.deleteLocked(e.Key)
				delta = append(delta, e)
			}
			continue
		}
		t.putLocked(e)
		delta = append(delta, e)
	}
	return delta, errors.Join(errs...)
}

// mergeOwnLocked handles an entry that names us as origin. Only we change
// our entries, so such an entry either is one we made (we have it already,
// or a newer one) or comes from a previous run of us whose state we lost:
// we were restarted without our state directory, or crashed between a
// change and persisting it. The mesh may then hold claims about "our"
// entries that we know nothing of, at versions above our counter, and
// they would beat everything we announce from now on. So:
//
//   - our counter jumps to the claim's version, so our next changes win;
//   - if the claim is at least as new as what we hold for its key and says
//     something else, we re-assert our current view above it: a new
//     version of our live entry if we have one, else a tombstone (the name
//     is not ours any more; its container is gone from this run);
//   - a claimed tombstone for a key we do not hold already agrees with us:
//     we keep it, so that its older live copies keep losing here.
//
// Every peer that receives the re-assertion prefers it to the stale claim,
// so the mesh converges on what this run of us holds. Claims at a lower
// version than ours for the key are stale copies that our entry already
// beats everywhere it has reached; they change nothing.
func (t *Table) mergeOwnLocked(now time.Time, e Entry) ([]Entry, error) {
	cur, ok := t.entries[e.Key]
	if ok && (e.Version < cur.Version || e.same(&cur)) {
		return nil, nil
	}
	t.counter = max(t.counter, e.Version)
	if !ok && e.Tombstone {
		if t.expired(now, e.DeletedAt) {
			return nil, nil
		}
		t.putLocked(e)
		return []Entry{e}, nil
	}
	if err := t.reserveLocked(1); err != nil {
		return nil, fmt.Errorf("merge: re-assert our entry %s %s: %w", e.Name, e.Addr, err)
	}
	re := Entry{Key: e.Key, Version: t.nextLocked()}
	if !ok || cur.Tombstone {
		re.Tombstone = true
		re.DeletedAt = deletionTime(now)
	}
	t.putLocked(re)
	return []Entry{re}, nil
}

// LoadOwn restores our entries, as returned by Own and persisted, after a
// restart; our counter moves above their versions so that our next changes
// beat them. Call it before merging anything from peers, then announce Own
// (peers that still hold the entries ignore them; peers that dropped us take
// them back). Reconciling with the containers that actually run (Remove for
// those that died while we were down) is the caller's job. Entries must be
// valid and ours (errors wrap ErrInvalid); on error nothing changed.
func (t *Table) LoadOwn(entries []Entry) error {
	for i := range entries {
		e := &entries[i]
		if err := e.Validate(); err != nil {
			return fmt.Errorf("load own entries: %w", err)
		}
		if e.Origin != t.self {
			return fmt.Errorf("load own entries: %w: %s %s has origin %s, we are %s", ErrInvalid, e.Name, e.Addr, e.Origin, t.self)
		}
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, e := range entries {
		if cur, ok := t.entries[e.Key]; !ok || e.beats(&cur) {
			t.putLocked(e)
		}
		t.counter = max(t.counter, e.Version)
	}
	return nil
}

// GC drops the tombstones whose deletion time is TombstoneExpiry or more
// before now, and returns how many it dropped. Call it periodically (once a
// minute is plenty). See the package comment for why dropping them is safe.
func (t *Table) GC(now time.Time) int {
	t.mu.Lock()
	defer t.mu.Unlock()
	n := 0
	for k, e := range t.entries {
		if e.Tombstone && t.expired(now, e.DeletedAt) {
			delete(t.entries, k)
			n++
		}
	}
	return n
}

// DropOrigin forgets every entry of peer, live or tombstoned, and returns
// the names that had live entries, sorted. Every router calls it when peer
// leaves the mesh (gone from the topology, or `weave rmpeer`), so nothing
// is broadcast. Entries of peer merged afterwards come back, so the caller
// merges only entries whose origin is a member of the mesh. Our own entries
// are never dropped: DropOrigin(Self()) does nothing.
func (t *Table) DropOrigin(peer identity.PeerName) []string {
	if peer == t.self {
		return nil
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	var names []Entry
	for k, e := range t.entries {
		if k.Origin != peer {
			continue
		}
		if !e.Tombstone {
			names = append(names, e)
		}
		t.deleteLocked(k)
	}
	return NamesOf(names)
}
