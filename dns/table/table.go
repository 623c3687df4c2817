package table

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/weavelab/weave/mesh/identity"
)

// DefaultTombstoneExpiry is how long tombstones are kept by default; see
// the package comment for why this is long enough.
const DefaultTombstoneExpiry = 10 * time.Minute

// Config configures a Table.
type Config struct {
	// Self is our peer name, the origin of the entries we add. Required.
	Self identity.PeerName
	// TombstoneExpiry is how long after its deletion time GC drops a
	// tombstone. Must be positive.
	TombstoneExpiry time.Duration
	// Rand shuffles Lookup answers. Nil means math/rand/v2's global
	// generator; tests inject a seeded source. The table serialises its
	// use, so the source need not be safe for concurrent use.
	Rand rand.Source
}

// DefaultConfig returns the defaults; the caller sets Self.
func DefaultConfig() Config {
	return Config{TombstoneExpiry: DefaultTombstoneExpiry}
}

// Table is one router's copy of the name table. It is safe for concurrent
// use: changes take an exclusive lock, queries a shared one, so DNS lookups
// run in parallel with each other and wait only for a merge in progress.
// Every slice it returns is the caller's own.
type Table struct {
	self   identity.PeerName
	expiry time.Duration
	// rng, if set, is the injected source for shuffling answers, used
	// under rngMu; otherwise math/rand/v2's global generator is.
	rngMu sync.Mutex
	rng   *rand.Rand

	mu sync.RWMutex
	// counter is the last version we gave one of our entries. Guarded by mu.
	counter uint64
	// entries holds every entry, live and tombstoned. Guarded by mu.
	entries map[Key]Entry
	// byName and byAddr index the live entries: for each name its
	// addresses, for each address its names, sorted, each with the number
	// of live entries behind it (one name and address may come from
	// several containers or origins). Guarded by mu.
	byName map[string][]counted[netip.Addr]
	byAddr map[netip.Addr][]counted[string]
}

// New returns an empty table.
func New(cfg Config) (*Table, error) {
	if cfg.Self == identity.UnknownPeer || cfg.Self > 1<<48-1 {
		return nil, fmt.Errorf("dns table: self %#x is not a peer name", uint64(cfg.Self))
	}
	if cfg.TombstoneExpiry <= 0 {
		return nil, fmt.Errorf("dns table: tombstone expiry %v must be positive", cfg.TombstoneExpiry)
	}
	t := &Table{
		self:    cfg.Self,
		expiry:  cfg.TombstoneExpiry,
		entries: make(map[Key]Entry),
		byName:  make(map[string][]counted[netip.Addr]),
		byAddr:  make(map[netip.Addr][]counted[string]),
	}
	if cfg.Rand != nil {
		t.rng = rand.New(cfg.Rand)
	}
	return t, nil
}

// Self returns our peer name.
func (t *Table) Self() identity.PeerName { return t.self }

// Add registers name for container at each of addrs, as our entries. It is
// idempotent: an address already registered is left alone. It validates
// everything before changing anything, and returns the entries it created
// (the delta to broadcast). Errors wrap ErrInvalid or ErrVersionExhausted.
func (t *Table) Add(container, name string, addrs ...netip.Addr) ([]Entry, error) {
	if err := ValidateContainer(container); err != nil {
		return nil, fmt.Errorf("add %s: %w", container, err)
	}
	name, err := CanonicalName(name)
	if err != nil {
		return nil, fmt.Errorf("add %s: %w", container, err)
	}
	if len(addrs) == 0 {
		return nil, fmt.Errorf("add %s %s: %w: no address", container, name, ErrInvalid)
	}
	keys := make([]Key, len(addrs))
	for i, a := range addrs {
		a = canonicalAddr(a)
		if err := validateAddr(a); err != nil {
			return nil, fmt.Errorf("add %s %s: %w", container, name, err)
		}
		keys[i] = Key{Origin: t.self, Container: container, Name: name, Addr: a}
	}

	t.mu.Lock()
	defer t.mu.Unlock()
	if err := t.reserveLocked(len(keys)); err != nil {
		return nil, fmt.Errorf("add %s %s: %w", container, name, err)
	}
	var delta []Entry
	for _, k := range keys {
		if cur, ok := t.entries[k]; ok && !cur.Tombstone {
			continue
		}
		e := Entry{Key: k, Version: t.nextLocked()}
		t.putLocked(e)
		delta = append(delta, e)
	}
	return delta, nil
}

// Match selects our own live entries for Remove. An empty field matches
// anything; at least one must be set, so that no mistake removes all our
// names. The CLI's forms map onto it directly:
//
//	weave dns-remove IP... CONTAINER -h FQDN   Match{Container, Name, Addrs}
//	weave dns-remove CONTAINER -h FQDN         Match{Container, Name}
//	weave dns-remove IP... CONTAINER           Match{Container, Addrs}
//	weave dns-remove CONTAINER                 Match{Container} (or RemoveContainer)
//	weave dns-remove IP... -h FQDN             Match{Container: ContainerExtern, Name, Addrs},
//	                                           or without Container for any container
type Match struct {
	Container string
	Name      string // any case, trailing dot optional
	Addrs     []netip.Addr
}

// Remove tombstones our live entries that m selects and returns the
// tombstones (the delta to broadcast; NamesOf lists the names). Selecting
// nothing is not an error: the delta is empty. now stamps the tombstones.
// Errors (a malformed or empty Match) wrap ErrInvalid; then nothing changed.
func (t *Table) Remove(now time.Time, m Match) ([]Entry, error) {
	if m.Container == "" && m.Name == "" && len(m.Addrs) == 0 {
		return nil, fmt.Errorf("remove: %w: give a container, a name or an address", ErrInvalid)
	}
	if m.Container != "" {
		if err := ValidateContainer(m.Container); err != nil {
			return nil, fmt.Errorf("remove: %w", err)
		}
	}
	if m.Name != "" {
		n, err := CanonicalName(m.Name)
		if err != nil {
			return nil, fmt.Errorf("remove: %w", err)
		}
		m.Name = n
	}
	addrs := make(map[netip.Addr]bool, len(m.Addrs))
	for _, a := range m.Addrs {
		a = canonicalAddr(a)
		if err := validateAddr(a); err != nil {
			return nil, fmt.Errorf("remove: %w", err)
		}
		addrs[a] = true
	}

	t.mu.Lock()
	defer t.mu.Unlock()
	var hit []Entry
	for _, e := range t.entries {
		if e.Origin != t.self || e.Tombstone ||
			(m.Container != "" && e.Container != m.Container) ||
			(m.Name != "" && e.Name != m.Name) ||
			(len(addrs) > 0 && !addrs[e.Addr]) {
			continue
		}
		hit = append(hit, e)
	}
	if err := t.reserveLocked(len(hit)); err != nil {
		return nil, fmt.Errorf("remove: %w", err)
	}
	slices.SortFunc(hit, func(a, b Entry) int { return compareEntries(&a, &b) })
	for i := range hit {
		hit[i].Version = t.nextLocked()
		hit[i].Tombstone = true
		hit[i].DeletedAt = deletionTime(now)
		t.putLocked(hit[i])
	}
	return hit, nil
}

// RemoveContainer tombstones all our live entries for container (when it
// dies or is detached) and returns the tombstones, the delta to broadcast;
// NamesOf(delta) lists the names removed.
func (t *Table) RemoveContainer(now time.Time, container string) []Entry {
	delta, err := t.Remove(now, Match{Container: container})
	if err != nil {
		// A malformed ID has no entries; exhaustion cannot be reported to
		// a caller that only cleans up, and leaves the entries live.
		return nil
	}
	return delta
}

// reserveLocked checks that n more versions fit below MaxVersion.
func (t *Table) reserveLocked(n int) error {
	if t.counter > MaxVersion-uint64(n) {
		return fmt.Errorf("%w: at %d, %d more needed", ErrVersionExhausted, t.counter, n)
	}
	return nil
}

// nextLocked bumps and returns our counter; reserveLocked must have
// said there is room.
func (t *Table) nextLocked() uint64 {
	t.counter++
	return t.counter
}

// putLocked stores e, replacing any entry with its key, and keeps the
// indexes in step.
func (t *Table) putLocked(e Entry) {
	if old, ok := t.entries[e.Key]; ok && !old.Tombstone {
		t.unindexLocked(&old.Key)
	}
	t.entries[e.Key] = e
	if !e.Tombstone {
		t.indexLocked(&e.Key)
	}
}

// deleteLocked forgets the entry for k, if any.
func (t *Table) deleteLocked(k Key) {
	if old, ok := t.entries[k]; ok {
		if !old.Tombstone {
			t.unindexLocked(&old.Key)
		}
		delete(t.entries, k)
	}
}

func (t *Table) expired(now, deletedAt time.Time) bool {
	return now.Sub(deletedAt) >= t.expiry
}
