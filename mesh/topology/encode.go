package topology

import (
	"cmp"
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
// Summary (format 1), a list of stamps:
//
//	format   byte = 1
//	count    uvarint              <= MaxPeers
//	count ×  name 6 bytes, uid 8 bytes, version uvarint   (names ascending)
//
// Partial summary (format 3): all the sender's stamps in a set of buckets
// (see BucketOf), so that the receiver also learns what the sender lacks:
//
//	format   byte = 3
//	buckets  8 bytes, big-endian  bit i set: bucket i is covered
//	then the summary body from count on, every name in a covered bucket
//
// Bucket digests (format 4):
//
//	format   byte = 4
//	Buckets × 8 bytes, big-endian  (see Topology.BucketDigests)
const (
	updateFormat  byte = 2
	summaryFormat byte = 1
	partialFormat byte = 3
	bucketsFormat byte = 4
	bucketsLen         = 1 + 8*Buckets

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
	ptrs := make([]*Peer, len(peers))
	for i := range peers {
		ptrs[i] = &peers[i]
	}
	return AppendUpdate(nil, ptrs)
}

// AppendUpdate appends peers to b in the update wire format (the bytes
// EncodeUpdate writes), from pointers to entries such as Topology.Entry
// returns, so that nothing is copied but the bytes.
func AppendUpdate(b []byte, peers []*Peer) []byte {
	size := 1 + binary.MaxVarintLen64
	for _, p := range peers {
		size += minPeerLen + 2*binary.MaxVarintLen64 + len(p.NickName)
		for _, c := range p.Conns {
			size += minConnLen + binary.MaxVarintLen64 + len(c.RemoteAddr)
		}
	}
	b = slices.Grow(b, size)
	b = append(b, updateFormat)
	b = binary.AppendUvarint(b, uint64(len(peers)))
	for _, p := range peers {
		b = appendEntry(b, p)
		b = append(b, p.Key[:]...)
		b = append(b, p.Sig[:]...)
	}
	return b
}

// appendEntry appends p's fields up to its connections (what its owner
// signs).
func appendEntry(b []byte, p *Peer) []byte {
	b = identity.AppendName(b, p.Name)
	b = binary.BigEndian.AppendUint64(b, uint64(p.UID))
	b = binary.AppendUvarint(b, p.Version)
	b = appendString(b, p.NickName)
	b = binary.AppendUvarint(b, uint64(len(p.Conns)))
	for _, c := range p.Conns {
		b = identity.AppendName(b, c.Remote)
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
func EncodeSummary(s Summary) []byte { return EncodeStamps(s.Sorted()) }

// EncodeStamps encodes s, which must be sorted by name with no name twice
// (as Topology.Stamps returns it), in the summary wire format: the bytes
// EncodeSummary writes for the same stamps, without building a map.
func EncodeStamps(s []NamedStamp) []byte {
	return appendStamps(make([]byte, 0, 1+binary.MaxVarintLen64+len(s)*(14+binary.MaxVarintLen64)), summaryFormat, s)
}

// EncodePartialSummary encodes the stamps s of the buckets set in buckets,
// which must hold every name of s (see Topology.SummaryOf).
func EncodePartialSummary(buckets uint64, s Summary) []byte {
	return EncodePartialStamps(buckets, s.Sorted())
}

// EncodePartialStamps is EncodePartialSummary for stamps sorted by name
// (see Topology.StampsOf).
func EncodePartialStamps(buckets uint64, s []NamedStamp) []byte {
	b := make([]byte, 0, 9+binary.MaxVarintLen64+len(s)*(14+binary.MaxVarintLen64))
	b = append(b, partialFormat)
	b = binary.BigEndian.AppendUint64(b, buckets)
	return appendStamps(b, 0, s)
}

// DecodePartialSummary decodes a partial summary, checking that every name
// lies in a covered bucket (and what DecodeSummary checks). Errors wrap
// ErrInvalid.
func DecodePartialSummary(b []byte) (buckets uint64, s Summary, err error) {
	buckets, list, err := DecodePartialStamps(b)
	if err != nil {
		return 0, nil, err
	}
	return buckets, summaryOf(list), nil
}

// DecodePartialStamps is DecodePartialSummary returning the stamps sorted
// by name.
func DecodePartialStamps(b []byte) (buckets uint64, s []NamedStamp, err error) {
	if len(b) < 9 || b[0] != partialFormat {
		return 0, nil, fmt.Errorf("%w: not a partial summary", ErrInvalid)
	}
	buckets = binary.BigEndian.Uint64(b[1:9])
	s, err = decodeSummaryBody(b[9:])
	if err != nil {
		return 0, nil, err
	}
	for _, e := range s {
		if buckets&(1<<BucketOf(e.Name)) == 0 {
			return 0, nil, fmt.Errorf("%w: partial summary lists %s outside its buckets", ErrInvalid, e.Name)
		}
	}
	return buckets, s, nil
}

// EncodeBucketDigests encodes the digests of Topology.BucketDigests.
func EncodeBucketDigests(d *[Buckets]uint64) []byte {
	b := make([]byte, 0, bucketsLen)
	b = append(b, bucketsFormat)
	for _, x := range d {
		b = binary.BigEndian.AppendUint64(b, x)
	}
	return b
}

// DecodeBucketDigests decodes what EncodeBucketDigests wrote. Errors wrap
// ErrInvalid.
func DecodeBucketDigests(b []byte) (*[Buckets]uint64, error) {
	if len(b) != bucketsLen || b[0] != bucketsFormat {
		return nil, fmt.Errorf("%w: bucket digests of %d bytes (format %d)", ErrInvalid, len(b), firstByte(b))
	}
	var d [Buckets]uint64
	for i := range d {
		d[i] = binary.BigEndian.Uint64(b[1+8*i:])
	}
	return &d, nil
}

func firstByte(b []byte) int {
	if len(b) == 0 {
		return -1
	}
	return int(b[0])
}

// appendStamps appends format (unless 0) and the body of s (sorted by
// name, no name twice).
func appendStamps(b []byte, format byte, s []NamedStamp) []byte {
	if format != 0 {
		b = append(b, format)
	}
	b = binary.AppendUvarint(b, uint64(len(s)))
	for _, e := range s {
		b = identity.AppendName(b, e.Name)
		b = binary.BigEndian.AppendUint64(b, uint64(e.UID))
		b = binary.AppendUvarint(b, e.Version)
	}
	return b
}

// DecodeSummary decodes a summary. Entries must have non-zero names, UIDs
// and versions (at most MaxVersion), with no name twice. It never panics and
// allocates in proportion to len(b) at most. Errors wrap ErrInvalid.
func DecodeSummary(b []byte) (Summary, error) {
	s, err := DecodeStamps(b)
	if err != nil {
		return nil, err
	}
	return summaryOf(s), nil
}

// DecodeStamps is DecodeSummary returning the stamps sorted by name
// (whatever order the sender listed them in) instead of a map.
func DecodeStamps(b []byte) ([]NamedStamp, error) {
	switch {
	case len(b) == 0:
		return nil, fmt.Errorf("%w: truncated: empty summary", ErrInvalid)
	case b[0] != summaryFormat:
		return nil, fmt.Errorf("%w: unknown summary format %d", ErrInvalid, b[0])
	}
	return decodeSummaryBody(b[1:])
}

// decodeSummaryBody decodes a summary from its count on, into stamps
// sorted by name. Senders list names ascending, so a name twice shows as
// one not above the previous; only input out of order costs a map (the
// checks and their order are those of a map-based decoder either way).
func decodeSummaryBody(b []byte) ([]NamedStamp, error) {
	d := decoder{b: b}
	n := d.count(MaxPeers, minSummaryLen, "peers")
	s := make([]NamedStamp, 0, n)
	var seen map[identity.PeerName]struct{} // once out of order
	for i := 0; i < n && d.err == nil; i++ {
		name := d.name()
		st := Stamp{UID: identity.UID(d.uint64()), Version: d.uvarint()}
		if d.err != nil {
			break
		}
		dup := false
		switch {
		case seen != nil:
			_, dup = seen[name]
		case len(s) > 0 && name <= s[len(s)-1].Name:
			dup = name == s[len(s)-1].Name
			if !dup {
				seen = make(map[identity.PeerName]struct{}, n)
				for _, e := range s {
					seen[e.Name] = struct{}{}
				}
				_, dup = seen[name]
			}
		}
		switch {
		case name == identity.UnknownPeer:
			d.fail("summary entry with zero name")
		case st.UID == 0 || st.Version == 0 || st.Version > MaxVersion:
			d.fail("summary entry %s: bad uid %d or version %d", name, st.UID, st.Version)
		case dup:
			d.fail("summary entry %s listed twice", name)
		}
		if seen != nil {
			seen[name] = struct{}{}
		}
		s = append(s, NamedStamp{Name: name, Stamp: st})
	}
	if err := d.finish(); err != nil {
		return nil, fmt.Errorf("decode summary: %w", err)
	}
	if seen != nil {
		slices.SortFunc(s, func(a, b NamedStamp) int { return cmp.Compare(a.Name, b.Name) })
	}
	return s, nil
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
	v := d.take(identity.NameLen)
	if v == nil {
		return 0
	}
	return identity.ReadName(v)
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
