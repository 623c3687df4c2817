package mesh

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/weavelab/weave/mesh/identity"
	"github.com/weavelab/weave/mesh/topology"
)

// Every message on a session is an envelope: one tag byte, then a body
// whose format the tag fixes.
//
//	hello      tag=1  listen port (2 bytes, big-endian); first message each way
//	heartbeat  tag=2  empty
//	update     tag=3  topology.EncodeUpdate: whole entries
//	summary    tag=4  topology.EncodePartialSummary: all our stamps in some buckets
//	digest     tag=5  8-byte topology digest (big-endian)
//	overlay    tag=6  opaque, for OverlayConn.ControlMessage
//	gossip     tag=7  kind (1 byte), ttl (1 byte), src (6 bytes), dst (6 bytes),
//	                  channel name length (1 byte) and name, then the payload
//	have       tag=8  topology.EncodeSummary: stamps of entries we hold
//	want       tag=9  topology.EncodeSummary: stamps of entries we ask for
//	buckets    tag=10 topology.EncodeBucketDigests
//
// Tags 3, 4, 5, 8, 9 and 10 are topology gossip (gossip.go); the handshake's
// protocol version 3 introduced 8 to 10 and the partial summary.
const (
	tagHello     byte = 1
	tagHeartbeat byte = 2
	tagUpdate    byte = 3
	tagSummary   byte = 4
	tagDigest    byte = 5
	tagOverlay   byte = 6
	tagGossip    byte = 7
	tagHave      byte = 8
	tagWant      byte = 9
	tagBuckets   byte = 10
)

// isTopology reports whether tag is a topology gossip message.
func isTopology(tag byte) bool {
	switch tag {
	case tagUpdate, tagSummary, tagDigest, tagHave, tagWant, tagBuckets:
		return true
	}
	return false
}

// topoMsg is a decoded topology gossip message; which fields are set
// depends on tag.
type topoMsg struct {
	tag     byte
	peers   []topology.Peer           // update
	stamps  []topology.NamedStamp     // have, want, summary: sorted by name
	buckets uint64                    // summary: the buckets it covers
	digest  uint64                    // digest
	bucketD *[topology.Buckets]uint64 // buckets
}

// decodeTopoMsg decodes the body of a topology gossip message (isTopology).
func decodeTopoMsg(tag byte, body []byte) (topoMsg, error) {
	m := topoMsg{tag: tag}
	var err error
	switch tag {
	case tagUpdate:
		m.peers, err = topology.DecodeUpdate(body)
	case tagSummary:
		m.buckets, m.stamps, err = topology.DecodePartialStamps(body)
	case tagDigest:
		m.digest, err = decodeDigest(body)
	case tagHave, tagWant:
		m.stamps, err = topology.DecodeStamps(body)
	case tagBuckets:
		m.bucketD, err = topology.DecodeBucketDigests(body)
	default:
		err = fmt.Errorf("%w: tag %d is not topology gossip", errEnvelope, tag)
	}
	return m, err
}

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
	b = identity.AppendName(b, m.src)
	b = identity.AppendName(b, m.dst)
	b = append(b, byte(len(m.channel)))
	b = append(b, m.channel...)
	return append(b, m.payload...)
}

// decodeGossip parses a gossip body. The payload aliases body.
func decodeGossip(body []byte) (gossipMsg, error) {
	if len(body) < gossipHeaderLen {
		return gossipMsg{}, fmt.Errorf("%w: gossip of %d bytes", errEnvelope, len(body))
	}
	m := gossipMsg{kind: body[0], ttl: body[1], src: identity.ReadName(body[2:8]), dst: identity.ReadName(body[8:14])}
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
