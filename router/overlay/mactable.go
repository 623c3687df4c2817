package overlay

import (
	"crypto/rand"
	"encoding/binary"
	"sync"
	"sync/atomic"

	"github.com/weavelab/weave/mesh/identity"
)

// macShards spreads the MAC table over independent locks so that workers
// on different cores learning different addresses do not contend.
const macShards = 64

type macEntry struct {
	owner atomic.Uint64 // identity.PeerName
	seen  atomic.Int64  // coarse clock (unix nanos) of the last frame
}

type macShard struct {
	mu sync.RWMutex
	m  map[uint64]*macEntry
}

// macTable maps a MAC address (48 bits in a uint64) to the peer that owns
// it: our own name for MACs learnt from the device, the frame's source peer
// for MACs learnt from the overlay. Safe for concurrent use. Lookups and
// refreshes of known entries take only a shard's read lock and atomics; a new
// address takes the shard's write lock once.
//
// The table is bounded: each shard holds at most its share of the size
// given to newMACTable, and a new address in a full shard evicts the
// shard's least recently seen entry (counted in evictions), so a flood of
// source addresses from a container or a peer costs CPU, not memory. The
// shard of an address is a keyed hash (seed random per table), so nobody
// can aim addresses at one shard to evict a victim's entries.
type macTable struct {
	shards    [macShards]macShard
	perShard  int
	seed      uint64
	evictions atomic.Uint64
}

func newMACTable(size int) *macTable {
	t := &macTable{perShard: max(1, (size+macShards-1)/macShards)}
	var b [8]byte
	rand.Read(b[:])
	t.seed = binary.LittleEndian.Uint64(b[:]) | 1
	for i := range t.shards {
		t.shards[i].m = make(map[uint64]*macEntry)
	}
	return t
}

func (t *macTable) shard(mac uint64) *macShard {
	h := (mac ^ t.seed) * 0x9E3779B97F4A7C15
	return &t.shards[h>>(64-6)] // top 6 bits: macShards == 64
}

// macKey reads the 6-byte MAC at b.
func macKey(b []byte) uint64 {
	_ = b[5]
	return uint64(b[0])<<40 | uint64(b[1])<<32 | uint64(b[2])<<24 | uint64(b[3])<<16 | uint64(b[4])<<8 | uint64(b[5])
}

// isGroupMAC says whether the MAC is broadcast or multicast.
func isGroupMAC(b []byte) bool { return b[0]&1 != 0 }

// lookup returns the owner of mac.
func (t *macTable) lookup(mac uint64) (identity.PeerName, bool) {
	s := t.shard(mac)
	s.mu.RLock()
	e := s.m[mac]
	s.mu.RUnlock()
	if e == nil {
		return identity.UnknownPeer, false
	}
	return identity.PeerName(e.owner.Load()), true
}

// learn records that mac was seen from owner at now. It returns the previous
// owner when the address moved to another peer (moved true).
func (t *macTable) learn(mac uint64, owner identity.PeerName, now int64) (prev identity.PeerName, moved bool) {
	s := t.shard(mac)
	s.mu.RLock()
	e := s.m[mac]
	s.mu.RUnlock()
	if e == nil {
		s.mu.Lock()
		if e = s.m[mac]; e == nil {
			if len(s.m) >= t.perShard {
				s.evictOldestLocked()
				t.evictions.Add(1)
			}
			e = new(macEntry)
			e.owner.Store(uint64(owner))
			e.seen.Store(now)
			s.m[mac] = e
			s.mu.Unlock()
			return identity.UnknownPeer, false
		}
		s.mu.Unlock()
	}
	// Writes only when something changed, so a busy flow's entry stays in
	// every core's cache.
	if e.seen.Load() != now {
		e.seen.Store(now)
	}
	if old := identity.PeerName(e.owner.Load()); old != owner {
		e.owner.Store(uint64(owner))
		return old, true
	}
	return identity.UnknownPeer, false
}

// evictOldestLocked removes the entry seen least recently; s.mu held for
// writing. A linear scan of one shard (a few hundred entries) only when a
// new address meets a full shard: rare unless someone floods addresses.
func (s *macShard) evictOldestLocked() {
	var oldest uint64
	first, when := true, int64(0)
	for k, e := range s.m {
		if seen := e.seen.Load(); first || seen < when {
			oldest, when, first = k, seen, false
		}
	}
	delete(s.m, oldest)
}

// expire drops entries not seen since before; it returns how many.
func (t *macTable) expire(before int64) int {
	n := 0
	for i := range t.shards {
		s := &t.shards[i]
		s.mu.Lock()
		for k, e := range s.m {
			if e.seen.Load() < before {
				delete(s.m, k)
				n++
			}
		}
		s.mu.Unlock()
	}
	return n
}

// touch moves mac's last-seen time forward to seen (fast-path traffic
// the overlay did not see); an absent address stays absent.
func (t *macTable) touch(mac uint64, seen int64) {
	s := t.shard(mac)
	s.mu.RLock()
	e := s.m[mac]
	s.mu.RUnlock()
	if e != nil && e.seen.Load() < seen {
		e.seen.Store(seen)
	}
}

// each calls f for every entry, one shard read-locked at a time; f must
// not call the table.
func (t *macTable) each(f func(mac uint64, owner identity.PeerName)) {
	for i := range t.shards {
		s := &t.shards[i]
		s.mu.RLock()
		for k, e := range s.m {
			f(k, identity.PeerName(e.owner.Load()))
		}
		s.mu.RUnlock()
	}
}

// len counts entries (tests, stats).
func (t *macTable) len() int {
	n := 0
	for i := range t.shards {
		s := &t.shards[i]
		s.mu.RLock()
		n += len(s.m)
		s.mu.RUnlock()
	}
	return n
}
