package encap

import (
	"encoding/binary"
	"fmt"

	"github.com/weavelab/weave/mesh/identity"
)

// FrameHeader precedes each Ethernet frame in a frames datagram.
type FrameHeader struct {
	Src      identity.PeerName // peer whose container sent the frame
	Dst      identity.PeerName // destination peer, 0 for broadcast
	Len      int
	HopLimit uint8
}

// PutFrameHeader writes fh into b[:FrameHeaderLen].
func PutFrameHeader(b []byte, fh FrameHeader) {
	_ = b[FrameHeaderLen-1]
	putPeer(b[0:6], fh.Src)
	putPeer(b[6:12], fh.Dst)
	binary.BigEndian.PutUint16(b[12:14], uint16(fh.Len))
	b[14] = fh.HopLimit
	b[15] = 0
}

// MaxFrameLen is the largest frame a record can carry.
const MaxFrameLen = 1<<16 - 1

// Builder packs frame records into one datagram buffer. The zero value is
// not usable; call Reset. Not safe for concurrent use.
type Builder struct {
	buf    []byte
	n      int
	limit  int
	frames int
}

// Reset starts a new datagram in buf with header h; the datagram (header and
// records, excluding any AEAD tag) will not exceed limit bytes unless a
// single frame needs more (see Add).
func (b *Builder) Reset(buf []byte, h Header, limit int) {
	h.Type = TypeFrames
	h.Put(buf)
	b.buf, b.n, b.limit, b.frames = buf, HeaderLen, limit, 0
}

// Add appends one frame. It returns false, adding nothing, when the frame
// would push a non-empty datagram over the limit or past the buffer's
// capacity; the caller then finishes this datagram and starts another. An
// empty datagram accepts any frame that fits the buffer, so a frame larger
// than the limit travels alone (the kernel fragments it).
func (b *Builder) Add(fh FrameHeader, frame []byte) bool {
	need := FrameHeaderLen + len(frame)
	if len(frame) > MaxFrameLen || b.n+need > len(b.buf) || (b.frames > 0 && b.n+need > b.limit) {
		return false
	}
	fh.Len = len(frame)
	PutFrameHeader(b.buf[b.n:], fh)
	copy(b.buf[b.n+FrameHeaderLen:], frame)
	b.n += need
	b.frames++
	return true
}

// SingleOffset is where a frame sits in a datagram that carries it alone:
// after the header and its record header. A sender that reads a frame into
// buf[SingleOffset:] can make the datagram around it with PutSingle,
// without copying the frame.
const SingleOffset = HeaderLen + FrameHeaderLen

// PutSingle writes header h (as a frames datagram) and the record header
// fh in front of the n-byte frame already at buf[SingleOffset:], and
// returns the datagram, buf[:SingleOffset+n]. It is what a Builder holding
// only that frame produces.
func PutSingle(buf []byte, h Header, fh FrameHeader, n int) []byte {
	h.Type = TypeFrames
	h.Put(buf)
	fh.Len = n
	PutFrameHeader(buf[HeaderLen:], fh)
	return buf[:SingleOffset+n]
}

// Len is the datagram's length so far; Frames how many frames it holds.
func (b *Builder) Len() int    { return b.n }
func (b *Builder) Frames() int { return b.frames }

// Bytes returns the datagram (header and records).
func (b *Builder) Bytes() []byte { return b.buf[:b.n] }

// Frames iterates the frame records of a frames payload (the bytes after the
// header, already opened). The frames returned alias the payload.
type Frames struct {
	p   []byte
	err error
}

// NewFrames starts iterating payload.
func NewFrames(payload []byte) Frames { return Frames{p: payload} }

// Next returns the next record; ok is false at the end or on a malformed
// record (then Err says which).
func (f *Frames) Next() (fh FrameHeader, frame []byte, ok bool) {
	if len(f.p) == 0 || f.err != nil {
		return fh, nil, false
	}
	if len(f.p) < FrameHeaderLen {
		f.err = fmt.Errorf("%w: %d trailing bytes", ErrFrame, len(f.p))
		return fh, nil, false
	}
	fh.Src = getPeer(f.p[0:6])
	fh.Dst = getPeer(f.p[6:12])
	fh.Len = int(binary.BigEndian.Uint16(f.p[12:14]))
	fh.HopLimit = f.p[14]
	end := FrameHeaderLen + fh.Len
	if fh.Len < 14 || end > len(f.p) {
		f.err = fmt.Errorf("%w: length %d with %d bytes left", ErrFrame, fh.Len, len(f.p)-FrameHeaderLen)
		return FrameHeader{}, nil, false
	}
	if fh.Src == identity.UnknownPeer {
		f.err = fmt.Errorf("%w: zero source peer", ErrFrame)
		return FrameHeader{}, nil, false
	}
	frame = f.p[FrameHeaderLen:end:end]
	f.p = f.p[end:]
	return fh, frame, true
}

// NextRecord is Next returning the whole record: the FrameHeaderLen bytes
// of its header, then the frame. A caller that is done with the header may
// use those bytes as headroom in front of the frame.
func (f *Frames) NextRecord() (fh FrameHeader, rec []byte, ok bool) {
	p := f.p
	fh, frame, ok := f.Next()
	if !ok {
		return fh, nil, false
	}
	return fh, p[: FrameHeaderLen+len(frame) : FrameHeaderLen+len(frame)], true
}

// Err reports why iteration stopped early, nil at a clean end.
func (f *Frames) Err() error { return f.err }
