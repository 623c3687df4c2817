package table

import (
	"math/rand/v2"
	"net/netip"
	"slices"
	"strings"
)

// Lookup returns the addresses of the live entries for name (any case,
// trailing dot optional), IPv4 and IPv6 together, each once however many
// containers or peers registered it, in a fresh random order on every
// call. It returns nil for an unknown name.
func (t *Table) Lookup(name string) []netip.Addr {
	name = lookupName(name)
	t.mu.RLock()
	s := t.byName[name]
	if len(s) == 0 {
		t.mu.RUnlock()
		return nil
	}
	out := make([]netip.Addr, len(s))
	for i := range s {
		out[i] = s[i].v
	}
	t.mu.RUnlock()
	t.shuffle(out)
	return out
}

// shuffle puts s in a uniformly random order (Fisher-Yates).
func (t *Table) shuffle(s []netip.Addr) {
	if len(s) < 2 {
		return
	}
	if t.rng == nil {
		for i := len(s) - 1; i > 0; i-- {
			j := rand.IntN(i + 1)
			s[i], s[j] = s[j], s[i]
		}
		return
	}
	t.rngMu.Lock()
	defer t.rngMu.Unlock()
	for i := len(s) - 1; i > 0; i-- {
		j := t.rng.IntN(i + 1)
		s[i], s[j] = s[j], s[i]
	}
}

// LookupAddr returns the names of the live entries for addr, sorted, each
// once; nil if there are none. An IPv4-mapped IPv6 address and a zone are
// ignored, as the table stores neither.
func (t *Table) LookupAddr(addr netip.Addr) []string {
	addr = canonicalAddr(addr.WithZone(""))
	t.mu.RLock()
	defer t.mu.RUnlock()
	s := t.byAddr[addr]
	if len(s) == 0 {
		return nil
	}
	out := make([]string, len(s))
	for i := range s {
		out[i] = s[i].v
	}
	return out
}

// Names returns every name with a live entry, sorted.
func (t *Table) Names() []string {
	t.mu.RLock()
	out := make([]string, 0, len(t.byName))
	for n := range t.byName {
		out = append(out, n)
	}
	t.mu.RUnlock()
	slices.Sort(out)
	return out
}

// Live returns the live entries, sorted by name, address, container and
// origin: what `weave status dns` shows.
func (t *Table) Live() []Entry {
	return t.collect(func(e *Entry) bool { return !e.Tombstone })
}

// All returns every entry, tombstones included, in the order of Live: the
// full state to send a peer.
func (t *Table) All() []Entry {
	return t.collect(func(*Entry) bool { return true })
}

// Own returns our own entries, tombstones included, in the order of Live:
// what to persist, and to re-announce after a restart (see LoadOwn).
func (t *Table) Own() []Entry {
	return t.collect(func(e *Entry) bool { return e.Origin == t.self })
}

func (t *Table) collect(keep func(*Entry) bool) []Entry {
	t.mu.RLock()
	out := make([]Entry, 0, len(t.entries))
	for _, e := range t.entries {
		if keep(&e) {
			out = append(out, e)
		}
	}
	t.mu.RUnlock()
	slices.SortFunc(out, func(a, b Entry) int { return compareEntries(&a, &b) })
	return slices.Clip(out)
}

// indexLocked records the live entry k in byName and byAddr.
func (t *Table) indexLocked(k *Key) {
	t.byName[k.Name] = incr(t.byName[k.Name], k.Addr, netip.Addr.Compare)
	t.byAddr[k.Addr] = incr(t.byAddr[k.Addr], k.Name, strings.Compare)
}

// unindexLocked undoes indexLocked.
func (t *Table) unindexLocked(k *Key) {
	if s := decr(t.byName[k.Name], k.Addr, netip.Addr.Compare); len(s) > 0 {
		t.byName[k.Name] = s
	} else {
		delete(t.byName, k.Name)
	}
	if s := decr(t.byAddr[k.Addr], k.Name, strings.Compare); len(s) > 0 {
		t.byAddr[k.Addr] = s
	} else {
		delete(t.byAddr, k.Addr)
	}
}

// counted is one value of an index with the number of live entries that
// put it there.
type counted[T any] struct {
	v T
	n int
}

// incr counts one more entry for v in s, which stays sorted by cmp.
func incr[T any](s []counted[T], v T, cmp func(T, T) int) []counted[T] {
	i, found := slices.BinarySearchFunc(s, v, func(c counted[T], v T) int { return cmp(c.v, v) })
	if found {
		s[i].n++
		return s
	}
	return slices.Insert(s, i, counted[T]{v: v, n: 1})
}

// decr counts one entry fewer for v in s, dropping v at zero.
func decr[T any](s []counted[T], v T, cmp func(T, T) int) []counted[T] {
	i, found := slices.BinarySearchFunc(s, v, func(c counted[T], v T) int { return cmp(c.v, v) })
	if !found {
		panic("dns table: index out of step with entries")
	}
	if s[i].n--; s[i].n == 0 {
		return slices.Delete(s, i, i+1)
	}
	return s
}
