package mesh

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/weavelab/weave/mesh/identity"
)

// Every message on a session is an envelope: one tag byte, then a body
// whose format the tag fixes.
//
//	hello      tag=1  listen port (2 bytes, big-endian); first message each way
//	heartbeat  tag=2  empty
//	update     tag=3  topology.EncodeUpdate
//	summary    tag=4  topology.EncodeSummary
//	digest     tag=5  8-byte topology digest (big-endian)
//	overlay    tag=6  opaque, for OverlayConn.ControlMessage
//	gossip     tag=7  kind (1 byte), ttl (1 byte), src (6 bytes), dst (6 bytes),
//	                  channel name length (1 byte) and name, then the payload
const (
	tagHello     byte = 1
	tagHeartbeat byte = 2
	tagUpdate    byte = 3
	tagSummary   byte = 4
	tagDigest    byte = 5
	tagOverlay   byte = 6
	tagGossip    byte = 7
)

// Kinds of gossip-channel messages.
const (
	gossipBroadcast byte = 1 // to every peer along the broadcast tree of src
	gossipUnicast   byte = 2 // to dst, hop by hop along unicast routes
	gossipPeriodic  byte = 3 // one hop; the receiver forwards what was new
)

// maxTTL bounds the hops of a relayed gossip message, so that one can never
// circle for ever while routes disagree.
const maxTTL = 64

var errEnvelope = errors.New("malformed message")

func envelope(tag byte, body []byte) []byte {
	b := make([]byte, 1+len(body))
	b[0] = tag
	copy(b[1:], body)
	return b
}

func encodeHello(listenPort int) []byte {
	return []byte{tagHello, byte(listenPort >> 8), byte(listenPort)}
}

func decodeHello(body []byte) (listenPort int, err error) {
	if len(body) != 2 {
		return 0, fmt.Errorf("%w: hello of %d bytes", errEnvelope, len(body))
	}
	return int(binary.BigEndian.Uint16(body)), nil
}

func encodeDigest(d uint64) []byte {
	return binary.BigEndian.AppendUint64([]byte{tagDigest}, d)
}

func decodeDigest(body []byte) (uint64, error) {
	if len(body) != 8 {
		return 0, fmt.Errorf("%w: digest of %d bytes", errEnvelope, len(body))
	}
	return binary.BigEndian.Uint64(body), nil
}

// gossipMsg is a gossip-channel message.
type gossipMsg struct {
	kind    byte
	ttl     byte
	src     identity.PeerName
	dst     identity.PeerName // unicast only
	channel string
	payload []byte
}

const gossipHeaderLen = 1 + 1 + 6 + 6 + 1

// maxChannelName bounds gossip channel names.
const maxChannelName = 255

func (m *gossipMsg) encode() []byte {
	b := make([]byte, 0, 1+gossipHeaderLen+len(m.channel)+len(m.payload))
	b = append(b, tagGossip, m.kind, m.ttl)
	b = appendName(b, m.src)
	b = appendName(b, m.dst)
	b = append(b, byte(len(m.channel)))
	b = append(b, m.channel...)
	return append(b, m.payload...)
}

func appendName(b []byte, n identity.PeerName) []byte {
	var x [8]byte
	binary.BigEndian.PutUint64(x[:], uint64(n))
	return append(b, x[2:]...)
}

func readName(b []byte) identity.PeerName {
	var x [8]byte
	copy(x[2:], b[:6])
	return identity.PeerName(binary.BigEndian.Uint64(x[:]))
}

// decodeGossip parses a gossip body. The payload aliases body.
func decodeGossip(body []byte) (gossipMsg, error) {
	if len(body) < gossipHeaderLen {
		return gossipMsg{}, fmt.Errorf("%w: gossip of %d bytes", errEnvelope, len(body))
	}
	m := gossipMsg{kind: body[0], ttl: body[1], src: readName(body[2:8]), dst: readName(body[8:14])}
	n := int(body[14])
	rest := body[gossipHeaderLen:]
	switch {
	case m.kind < gossipBroadcast || m.kind > gossipPeriodic:
		return gossipMsg{}, fmt.Errorf("%w: gossip kind %d", errEnvelope, m.kind)
	case m.src == identity.UnknownPeer:
		return gossipMsg{}, fmt.Errorf("%w: gossip from the zero peer", errEnvelope)
	case m.kind == gossipUnicast && m.dst == identity.UnknownPeer:
		return gossipMsg{}, fmt.Errorf("%w: unicast gossip to the zero peer", errEnvelope)
	case m.ttl > maxTTL:
		return gossipMsg{}, fmt.Errorf("%w: gossip ttl %d", errEnvelope, m.ttl)
	case len(rest) < n:
		return gossipMsg{}, fmt.Errorf("%w: gossip channel name truncated", errEnvelope)
	}
	m.channel = string(rest[:n])
	m.payload = rest[n:]
	return m, nil
}
