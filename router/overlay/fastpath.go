package overlay

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"time"

	"github.com/weavelab/weave/mesh/identity"
)

// The kernel fast path (Weave Net's "fastdp"): a VXLAN device on the bridge
// carries unencrypted frames between directly connected peers in the
// kernel, and the overlay only programs it. Per connection, fast-path
// heartbeats prove that VXLAN works both ways (see fastState); while it
// does, every MAC address the MAC table gives to that peer gets a bridge
// entry (MAC -> VXLAN port) and a VXLAN entry (MAC -> the peer's underlay
// address). Broadcast and unknown unicast never enter the VXLAN port (its
// flooding is off), so they still come to the TAP, and multi-hop, broadcast
// trees and isolation work as on the userspace path ("sleeve").
//
// How entries live. The userspace MAC table stays the one authority for
// "which peer owns this MAC"; the kernel entries are derived from it (and
// from connection state and routes) by syncFastPath on every maintenance
// tick, which adds what is missing and removes what is no longer wanted: a
// MAC that moved or expired, a peer whose route is no longer direct, whose
// connection went or whose fast path stopped. Once a MAC is on the fast
// path the overlay no longer sees its frames, so the table would expire it
// while traffic flows. The bridge records when it last forwarded a frame
// with each entry (ndm_used), so every few seconds syncFastPath reads those
// ages and refreshes the MAC table: a fast-path MAC stays while our
// containers send to it (on the userspace path a MAC stays while frames
// from it arrive; both keep a live flow's entries, and the peer keeps ours
// the same way). We do not use kernel learning on the VXLAN port: an entry
// learnt from a frame that arrived over VXLAN would outlive a fast path that
// stopped, and would black-hole the replies; every entry on the port is
// ours, and is removed with the path.

// FastPath is the kernel fast path as the overlay needs it
// (*netdev.VXLAN in the daemon; fastpathtest.Fake in tests). SetEntry,
// DelEntry and EntryAges are called from the maintenance goroutine only;
// SendBeat from any goroutine; RecvBeat from one goroutine, and Close must
// unblock it (returning an error).
type FastPath interface {
	// Port is the UDP port of the VXLAN device, announced to peers.
	Port() int
	// SetEntry sends frames for mac through VXLAN to dst (replacing any
	// entry for mac); DelEntry removes the one to dst (absent: no error).
	SetEntry(mac [6]byte, dst netip.Addr) error
	DelEntry(mac [6]byte, dst netip.Addr) error
	// EntryAges says, per MAC with an entry, how long ago a frame was last
	// forwarded with it.
	EntryAges() (map[[6]byte]time.Duration, error)
	// SendBeat sends an inner Ethernet frame in a VXLAN datagram to dst.
	SendBeat(dst netip.AddrPort, frame []byte) error
	// RecvBeat reads the payload (after the Ethernet header) of a
	// heartbeat frame that arrived through the VXLAN device.
	RecvBeat(buf []byte) (int, error)
	Close() error
}

// Paths a connection's unicast frames take, as status shows them.
const (
	PathFastDP = "fastdp"
	PathSleeve = "sleeve"
)

// DefaultFastPathTimeout is how long a fast path stays up without
// heartbeats both ways; after it the connection falls back to the sleeve.
const DefaultFastPathTimeout = 3 * time.Second

// Fast-path heartbeat, the payload of an inner Ethernet frame to
// netdev.FastPathHeartbeatDst with ethertype 0x88B5, in a VXLAN datagram
// (our VNI) sent to the peer's VXLAN port:
//
//	magic "WFDP" (4), type (1: ping, 2: pong), reserved (1),
//	receiver index (4: the receiver's overlay connection index, from its
//	hello), sender peer (6), nonce (8: a ping's, echoed by the pong)
//
// The nonce is the connection's random secret (high 32 bits) and a
// sequence number, so only a pong to one of our recent pings counts: the
// round trip proves VXLAN works both ways.
const (
	beatPing   = 1
	beatPong   = 2
	beatLen    = 24
	beatWindow = 8 // pongs to any of our last 8 pings count
	etherType  = 0x88B5
)

var beatMagic = []byte("WFDP")

var errBeat = errors.New("malformed fast-path heartbeat")

type fastBeat struct {
	Type     uint8
	Receiver uint32
	Sender   identity.PeerName
	Nonce    uint64
}

// encodeBeatFrame builds the whole inner frame (padded to 60 bytes).
func encodeBeatFrame(b fastBeat) []byte {
	f := make([]byte, 60)
	copy(f[0:6], []byte{0x01, 0x80, 0xc2, 0x00, 0x00, 0x0e})
	// Source: the sender's name as a locally administered unicast MAC
	// (never the receiving device's own, which VXLAN would drop).
	var buf [identity.NameLen]byte
	name := identity.AppendName(buf[:0], b.Sender)
	copy(f[6:12], name)
	f[6] = f[6]&^1 | 2
	binary.BigEndian.PutUint16(f[12:14], etherType)
	p := f[14:]
	copy(p[0:4], beatMagic)
	p[4] = b.Type
	binary.BigEndian.PutUint32(p[6:10], b.Receiver)
	copy(p[10:16], name)
	binary.BigEndian.PutUint64(p[16:24], b.Nonce)
	return f
}

// decodeBeat parses the payload after the Ethernet header.
func decodeBeat(p []byte) (fastBeat, error) {
	if len(p) < beatLen || !bytes.Equal(p[0:4], beatMagic) {
		return fastBeat{}, errBeat
	}
	b := fastBeat{Type: p[4], Receiver: binary.BigEndian.Uint32(p[6:10]), Nonce: binary.BigEndian.Uint64(p[16:24])}
	b.Sender = identity.ReadName(p[10:16])
	if (b.Type != beatPing && b.Type != beatPong) || b.Receiver == 0 || b.Sender == identity.UnknownPeer {
		return fastBeat{}, errBeat
	}
	return b, nil
}

// fastState is one connection's fast-path heartbeat state: pure, with the
// time passed in, so tests step it with a fake clock. The path is up while
// both a ping from the peer (its VXLAN reaches us) and a pong to one of our
// pings (ours reaches it, and its answer us) arrived within the timeout.
type fastState struct {
	start    time.Time // when heartbeats could start (the peer's hello)
	secret   uint32
	seq      uint32 // last ping sent
	lastPing time.Time
	lastPong time.Time
	up       bool
}

// nextPing returns the nonce of a new ping.
func (s *fastState) nextPing() uint64 {
	s.seq++
	return uint64(s.secret)<<32 | uint64(s.seq)
}

// onPing records a ping from the peer.
func (s *fastState) onPing(now time.Time) { s.lastPing = now }

// onPong records a pong; it counts only if it echoes a recent ping.
func (s *fastState) onPong(now time.Time, nonce uint64) bool {
	seq := uint32(nonce)
	if uint32(nonce>>32) != s.secret || s.seq-seq >= beatWindow || seq == 0 {
		return false
	}
	s.lastPong = now
	return true
}

// eval returns whether the path is up at now, and why not. changed says the
// answer differs from the previous call's.
func (s *fastState) eval(now time.Time, timeout time.Duration) (up, changed bool, reason string) {
	pongOK := !s.lastPong.IsZero() && now.Sub(s.lastPong) <= timeout
	pingOK := !s.lastPing.IsZero() && now.Sub(s.lastPing) <= timeout
	up = pongOK && pingOK
	switch {
	case up:
	case now.Sub(s.start) <= timeout:
		reason = "not yet confirmed: waiting for fast-path heartbeats"
	case !pongOK && !pingOK:
		reason = fmt.Sprintf("heartbeats failing: no VXLAN heartbeats either way for %s", timeout)
	case !pongOK:
		reason = fmt.Sprintf("heartbeats failing: the peer has not answered our VXLAN heartbeats for %s", timeout)
	default:
		reason = fmt.Sprintf("heartbeats failing: no VXLAN heartbeats from the peer for %s", timeout)
	}
	changed = up != s.up
	s.up = up
	return up, changed, reason
}
