package replicate

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"sync"

	"github.com/weavelab/weave/mesh/identity"
)

// What the Replicator hands memberlist as user data, all integers
// big-endian:
//
//	DELTA  0x01 | origin (6 bytes) | id u64 | delta (1 byte or more)
//	STATE  0x02 | origin (6 bytes) | full state (any length)
//
// A DELTA is a broadcast; origin is the peer that called Broadcast and id
// is unique to it (a random start per run, then counting), so receivers
// can pass each delta on exactly once. A STATE is a peer's full state in a
// push/pull; origin is that peer. The origin is what State.Merge gets as
// src. The decoder is strict.
const (
	envDelta byte = 0x01
	envState byte = 0x02

	deltaHeaderLen = 1 + 6 + 8
	stateHeaderLen = 1 + 6
)

// errBadEnvelope is returned (wrapped) for user data that is not a valid
// DELTA or STATE.
var errBadEnvelope = errors.New("malformed replication message")

// msgID names one broadcast.
type msgID struct {
	origin identity.PeerName
	id     uint64
}

// envelope is one decoded DELTA or STATE.
type envelope struct {
	kind   byte
	origin identity.PeerName
	id     uint64 // DELTA only
	data   []byte // aliases the decoded buffer
}

func encodeDelta(origin identity.PeerName, id uint64, delta []byte) []byte {
	b := make([]byte, 0, deltaHeaderLen+len(delta))
	b = append(b, envDelta)
	b = append(b, origin.MAC()...)
	b = binary.BigEndian.AppendUint64(b, id)
	return append(b, delta...)
}

func encodeState(origin identity.PeerName, state []byte) []byte {
	b := make([]byte, 0, stateHeaderLen+len(state))
	b = append(b, envState)
	b = append(b, origin.MAC()...)
	return append(b, state...)
}

func (e *envelope) encode() []byte {
	if e.kind == envDelta {
		return encodeDelta(e.origin, e.id, e.data)
	}
	return encodeState(e.origin, e.data)
}

func decodeEnvelope(b []byte) (envelope, error) {
	if len(b) == 0 {
		return envelope{}, fmt.Errorf("%w: empty", errBadEnvelope)
	}
	e := envelope{kind: b[0]}
	var header int
	switch e.kind {
	case envDelta:
		header = deltaHeaderLen
		if len(b) <= header {
			return envelope{}, fmt.Errorf("%w: delta of %d bytes is too short", errBadEnvelope, len(b))
		}
		e.id = binary.BigEndian.Uint64(b[7:15])
	case envState:
		header = stateHeaderLen
		if len(b) < header {
			return envelope{}, fmt.Errorf("%w: state of %d bytes is too short", errBadEnvelope, len(b))
		}
	default:
		return envelope{}, fmt.Errorf("%w: unknown kind 0x%02x", errBadEnvelope, e.kind)
	}
	e.origin = identity.PeerNameFromMAC(net.HardwareAddr(b[1:7]))
	if e.origin == identity.UnknownPeer {
		return envelope{}, fmt.Errorf("%w: origin is the zero peer", errBadEnvelope)
	}
	e.data = b[header:]
	return e, nil
}

// seenSet remembers the last n broadcast ids, so a delta that comes round
// again is neither merged nor passed on twice. Forgetting old ids is
// harmless: a very late copy is merged again (merges are idempotent) and
// passed on a few more times.
type seenSet struct {
	mu   sync.Mutex
	ring []msgID
	next int
	set  map[msgID]struct{}
}

func newSeenSet(n int) *seenSet {
	return &seenSet{ring: make([]msgID, n), set: make(map[msgID]struct{}, n)}
}

// add records id and reports whether it was new.
func (s *seenSet) add(id msgID) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.set[id]; ok {
		return false
	}
	old := s.ring[s.next]
	if old != (msgID{}) {
		delete(s.set, old)
	}
	s.ring[s.next] = id
	s.next = (s.next + 1) % len(s.ring)
	s.set[id] = struct{}{}
	return true
}
