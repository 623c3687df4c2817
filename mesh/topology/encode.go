package topology

import (
	"encoding/binary"
	"fmt"
	"slices"

	"github.com/weavelab/weave/mesh/identity"
)

// Wire formats. Each message starts with a format byte; a decoder rejects
// formats it does not know, unknown flag bits and trailing bytes, so a
// future format must get a new byte (and the handshake's protocol version
// says which ones a peer speaks).
//
// Update (format 2):
//
//	format   byte = 2
//	count    uvarint              number of peers, <= MaxPeers
//	count ×  name     6 bytes      big-endian 48-bit peer name
//	         uid      8 bytes      big-endian
//	         version  uvarint
//	         nicklen  uvarint, nickname bytes (<= MaxNickNameLen)
//	         nconns   uvarint      <= MaxConnsPerPeer
//	         nconns × remote  6 bytes
//	                  flags   byte  bit0 outbound, bit1 established
//	                  addrlen uvarint, addr bytes (<= MaxAddrLen)
//	         key      32 bytes     the peer's identity key (zero if unsigned)
//	         sig      64 bytes     its signature of the entry (Peer.SignedBytes)
//
// Summary (format 1):
//
//	format   byte = 1
//	count    uvarint              <= MaxPeers
//	count ×  name 6 bytes, uid 8 bytes, version uvarint   (names ascending)
const (
	updateFormat  byte = 2
	summaryFormat byte = 1

	flagOutbound    byte = 1 << 0
	flagEstablished byte = 1 << 1
	knownFlags           = flagOutbound | flagEstablished

	minPeerLen    = 6 + 8 + 1 + 1 + 1 + identity.PublicKeySize + identity.SignatureSize
	minConnLen    = 6 + 1 + 1
	minSummaryLen = 6 + 8 + 1
)

// EncodeUpdate encodes peers in the update wire format. Entries should be
// valid (Peer.Validate); DecodeUpdate rejects invalid ones.
func EncodeUpdate(peers []Peer) []byte {
	size := 1 + binary.MaxVarintLen64
	for i := range peers {
		size += minPeerLen + 2*binary.MaxVarintLen64 + len(peers[i].NickName)
		for _, c := range peers[i].Conns {
			size += minConnLen + binary.MaxVarintLen64 + len(c.RemoteAddr)
		}
	}
	b := make([]byte, 0, size)
	b = append(b, updateFormat)
	b = binary.AppendUvarint(b, uint64(len(peers)))
	for i := range peers {
		p := &peers[i]
		b = appendEntry(b, p)
		b = append(b, p.Key[:]...)
		b = append(b, p.Sig[:]...)
	}
	return b
}

// appendEntry appends p's fields up to its connections (what its owner
// signs).
func appendEntry(b []byte, p *Peer) []byte {
	b = appendName(b, p.Name)
	b = binary.BigEndian.AppendUint64(b, uint64(p.UID))
	b = binary.AppendUvarint(b, p.Version)
	b = appendString(b, p.NickName)
	b = binary.AppendUvarint(b, uint64(len(p.Conns)))
	for _, c := range p.Conns {
		b = appendName(b, c.Remote)
		var f byte
		if c.Outbound {
			f |= flagOutbound
		}
		if c.Established {
			f |= flagEstablished
		}
		b = append(b, f)
		b = appendString(b, c.RemoteAddr)
	}
	return b
}

// DecodeUpdate decodes and validates (ValidateUpdate) an update. It never
// panics and allocates in proportion to len(b) at most. Errors wrap
// ErrInvalid.
func DecodeUpdate(b []byte) ([]Peer, error) {
	d := decoder{b: b}
	if f := d.byte(); d.err == nil && f != updateFormat {
		return nil, fmt.Errorf("%w: unknown update format %d", ErrInvalid, f)
	}
	n := d.count(MaxPeers, minPeerLen, "peers")
	peers := make([]Peer, 0, n)
	for i := 0; i < n && d.err == nil; i++ {
		var p Peer
		p.Name = d.name()
		p.UID = identity.UID(d.uint64())
		p.Version = d.uvarint()
		p.NickName = d.string(MaxNickNameLen, "nickname")
		nc := d.count(MaxConnsPerPeer, minConnLen, "connections")
		if nc > 0 {
			p.Conns = make([]Conn, 0, nc)
		}
		for j := 0; j < nc && d.err == nil; j++ {
			var c Conn
			c.Remote = d.name()
			f := d.byte()
			if f&^knownFlags != 0 && d.err == nil {
				d.fail("unknown connection flags %#x", f)
			}
			c.Outbound = f&flagOutbound != 0
			c.Established = f&flagEstablished != 0
			c.RemoteAddr = d.string(MaxAddrLen, "address")
			p.Conns = append(p.Conns, c)
		}
		copy(p.Key[:], d.take(identity.PublicKeySize))
		copy(p.Sig[:], d.take(identity.SignatureSize))
		peers = append(peers, p)
	}
	if err := d.finish(); err != nil {
		return nil, fmt.Errorf("decode update: %w", err)
	}
	if err := ValidateUpdate(peers); err != nil {
		return nil, fmt.Errorf("decode update: %w", err)
	}
	return peers, nil
}

// EncodeSummary encodes s in the summary wire format, names ascending.
func EncodeSummary(s Summary) []byte {
	names := make([]identity.PeerName, 0, len(s))
	for n := range s {
		names = append(names, n)
	}
	slices.Sort(names)
	b := make([]byte, 0, 1+binary.MaxVarintLen64+len(names)*(14+binary.MaxVarintLen64))
	b = append(b, summaryFormat)
	b = binary.AppendUvarint(b, uint64(len(names)))
	for _, n := range names {
		st := s[n]
		b = appendName(b, n)
		b = binary.BigEndian.AppendUint64(b, uint64(st.UID))
		b = binary.AppendUvarint(b, st.Version)
	}
	return b
}

// DecodeSummary decodes a summary. Entries must have non-zero names, UIDs
// and versions (at most MaxVersion), with no name twice. It never panics and
// allocates in proportion to len(b) at most. Errors wrap ErrInvalid.
func DecodeSummary(b []byte) (Summary, error) {
	d := decoder{b: b}
	if f := d.byte(); d.err == nil && f != summaryFormat {
		return nil, fmt.Errorf("%w: unknown summary format %d", ErrInvalid, f)
	}
	n := d.count(MaxPeers, minSummaryLen, "peers")
	s := make(Summary, n)
	for i := 0; i < n && d.err == nil; i++ {
		name := d.name()
		st := Stamp{UID: identity.UID(d.uint64()), Version: d.uvarint()}
		if d.err != nil {
			break
		}
		switch _, dup := s[name]; {
		case name == identity.UnknownPeer:
			d.fail("summary entry with zero name")
		case st.UID == 0 || st.Version == 0 || st.Version > MaxVersion:
			d.fail("summary entry %s: bad uid %d or version %d", name, st.UID, st.Version)
		case dup:
			d.fail("summary entry %s listed twice", name)
		}
		s[name] = st
	}
	if err := d.finish(); err != nil {
		return nil, fmt.Errorf("decode summary: %w", err)
	}
	return s, nil
}

func appendName(b []byte, n identity.PeerName) []byte {
	return append(b, byte(n>>40), byte(n>>32), byte(n>>24), byte(n>>16), byte(n>>8), byte(n))
}

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

// decoder reads from b; after the first error every read returns zero
// values and the error sticks.
type decoder struct {
	b   []byte
	err error
}

func (d *decoder) fail(format string, args ...any) {
	if d.err == nil {
		d.err = fmt.Errorf("%w: "+format, append([]any{ErrInvalid}, args...)...)
	}
}

func (d *decoder) take(n int) []byte {
	if d.err != nil {
		return nil
	}
	if n > len(d.b) {
		d.fail("truncated: want %d bytes, have %d", n, len(d.b))
		return nil
	}
	v := d.b[:n]
	d.b = d.b[n:]
	return v
}

func (d *decoder) byte() byte {
	if v := d.take(1); v != nil {
		return v[0]
	}
	return 0
}

func (d *decoder) name() identity.PeerName {
	v := d.take(6)
	if v == nil {
		return 0
	}
	var b [8]byte
	copy(b[2:], v)
	return identity.PeerName(binary.BigEndian.Uint64(b[:]))
}

func (d *decoder) uint64() uint64 {
	if v := d.take(8); v != nil {
		return binary.BigEndian.Uint64(v)
	}
	return 0
}

func (d *decoder) uvarint() uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.fail("bad varint")
		return 0
	}
	d.b = d.b[n:]
	return v
}

// count reads a length prefix and checks it against max and against the
// bytes left (each item needs at least minLen), so that a hostile count
// cannot make the caller allocate more than the input justifies.
func (d *decoder) count(max, minLen int, what string) int {
	v := d.uvarint()
	if d.err != nil {
		return 0
	}
	if v > uint64(max) {
		d.fail("%d %s, max %d", v, what, max)
		return 0
	}
	if v*uint64(minLen) > uint64(len(d.b)) {
		d.fail("truncated: %d %s need at least %d bytes, have %d", v, what, v*uint64(minLen), len(d.b))
		return 0
	}
	return int(v)
}

func (d *decoder) string(max int, what string) string {
	n := d.uvarint()
	if d.err != nil {
		return ""
	}
	if n > uint64(max) {
		d.fail("%s of %d bytes, max %d", what, n, max)
		return ""
	}
	return string(d.take(int(n)))
}

func (d *decoder) finish() error {
	if d.err == nil && len(d.b) != 0 {
		d.fail("%d trailing bytes", len(d.b))
	}
	return d.err
}
