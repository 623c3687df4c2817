// Package encap owns the overlay's UDP datagram format: the fixed header,
// the frame records that a datagram batches, the AEAD that seals datagrams
// with counter nonces and key epochs, and the sliding replay window.
//
// # Datagram layout
//
// Every datagram starts with a 24-byte header (big endian):
//
//	offset size field
//	0      1    version (1)
//	1      1    type: 1 frames, 2 heartbeat, 3 heartbeat-ack,
//	            4 PMTU probe, 5 probe-ack
//	2      2    key epoch: 0 for the handshake's data keys, then 1, 2, ...
//	            (wrapping at 2^16) for each fresh key the mesh's in-band
//	            key exchange hands over; 0 without keys
//	4      4    receiver connection index (chosen by the receiver, sent over TCP)
//	8      6    sender peer name
//	14     2    reserved, zero
//	16     8    counter: the AEAD nonce, never reused within an epoch
//
// The payload follows. With keys, the payload is sealed with the AEAD of
// the connection's cipher suite (handshake.Suite: AES-256-GCM or
// ChaCha20-Poly1305, negotiated in the handshake, the same for every epoch)
// with the 24 header bytes as associated data and the 16-byte tag appended.
// The 12-byte nonce is the header's last 12 bytes (12..23: the sender's
// two low bytes, the reserved bytes, the counter), unique per key because
// the counter is. Without keys the payload is plain.
//
// Keys: each direction of a connection has its own key per epoch. Epochs
// come only from the mesh (handshake.DataKeyUpdate), never from a local
// ratchet or timer: the receiver installs the key for epoch n+1 beside its
// current one before the sender starts using it, switches when the first
// datagram of n+1 authenticates, and keeps epoch n open for PrevEpochGrace
// for datagrams in flight. A receiver knows at most those three epochs and
// drops any other before any cryptography.
//
// A frames payload is a sequence of frame records, each a 16-byte frame
// header followed by the Ethernet frame:
//
//	offset size field
//	0      6    original source peer (whose container sent the frame)
//	6      6    destination peer (0 = broadcast along the source's tree)
//	12     2    frame length
//	14     1    hop limit, decremented at each relay
//	15     1    reserved, zero
//
// Heartbeat and heartbeat-ack payloads carry an 8-byte value that the ack
// echoes. A probe carries an 8-byte id (random per probe: a cookie, so an
// ack cannot be forged without seeing the probe) and padding up to the size
// probed (sent with DF set); its probe-ack carries the id and the received
// IP packet size (2 bytes). A receiver ignores types it does not implement.
package encap

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/weavelab/weave/mesh/identity"
)

// Version is the datagram format version in byte 0 of every datagram.
const Version = 1

// Type says what a datagram carries.
type Type uint8

// Datagram types.
const (
	TypeFrames       Type = 1
	TypeHeartbeat    Type = 2
	TypeHeartbeatAck Type = 3
	TypeProbe        Type = 4
	TypeProbeAck     Type = 5
	maxType               = TypeProbeAck
)

func (t Type) String() string {
	switch t {
	case TypeFrames:
		return "frames"
	case TypeHeartbeat:
		return "heartbeat"
	case TypeHeartbeatAck:
		return "heartbeat-ack"
	case TypeProbe:
		return "probe"
	case TypeProbeAck:
		return "probe-ack"
	}
	return fmt.Sprintf("type(%d)", uint8(t))
}

// Sizes of the fixed parts of a datagram.
const (
	HeaderLen      = 24
	FrameHeaderLen = 16
	TagLen         = 16 // AEAD tag appended to sealed datagrams
	// DefaultHopLimit is the hop limit a frame starts with; relays drop
	// frames whose limit reaches zero so that inconsistent routes during
	// topology changes cannot loop a frame forever.
	DefaultHopLimit = 16
)

// Errors returned (wrapped) by the decoders.
var (
	ErrShort   = errors.New("datagram too short")
	ErrVersion = errors.New("unknown datagram version")
	ErrType    = errors.New("unknown datagram type")
	ErrFrame   = errors.New("malformed frame record")
)

// Header is the fixed header of a datagram.
type Header struct {
	Type     Type
	Epoch    uint16
	Receiver uint32
	Sender   identity.PeerName
	Counter  uint64
}

// Put writes h into b[:HeaderLen]. It panics if b is shorter.
func (h *Header) Put(b []byte) {
	_ = b[HeaderLen-1]
	b[0] = Version
	b[1] = byte(h.Type)
	binary.BigEndian.PutUint16(b[2:4], h.Epoch)
	binary.BigEndian.PutUint32(b[4:8], h.Receiver)
	putPeer(b[8:14], h.Sender)
	b[14], b[15] = 0, 0
	binary.BigEndian.PutUint64(b[16:24], h.Counter)
}

// ParseHeader decodes the header at the start of b. Its errors are the
// bare sentinels, so that rejecting garbage allocates nothing.
func ParseHeader(b []byte) (Header, error) {
	if len(b) < HeaderLen {
		return Header{}, ErrShort
	}
	if b[0] != Version {
		return Header{}, ErrVersion
	}
	t := Type(b[1])
	if t == 0 || t > maxType {
		return Header{}, ErrType
	}
	return Header{
		Type:     t,
		Epoch:    binary.BigEndian.Uint16(b[2:4]),
		Receiver: binary.BigEndian.Uint32(b[4:8]),
		Sender:   getPeer(b[8:14]),
		Counter:  binary.BigEndian.Uint64(b[16:24]),
	}, nil
}

// SetCounter rewrites the epoch and counter of an encoded header in place.
func SetCounter(b []byte, epoch uint16, counter uint64) {
	binary.BigEndian.PutUint16(b[2:4], epoch)
	binary.BigEndian.PutUint64(b[16:24], counter)
}

func putPeer(b []byte, p identity.PeerName) {
	_ = b[5]
	b[0] = byte(p >> 40)
	b[1] = byte(p >> 32)
	b[2] = byte(p >> 24)
	b[3] = byte(p >> 16)
	b[4] = byte(p >> 8)
	b[5] = byte(p)
}

func getPeer(b []byte) identity.PeerName {
	_ = b[5]
	return identity.PeerName(b[0])<<40 | identity.PeerName(b[1])<<32 |
		identity.PeerName(b[2])<<24 | identity.PeerName(b[3])<<16 |
		identity.PeerName(b[4])<<8 | identity.PeerName(b[5])
}
