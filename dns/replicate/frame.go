package replicate

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// Every message the Transport sends is one frame; the first byte is its
// kind. All integers are big-endian.
//
//	PACKET  0x01 | payload (1 byte or more)               memberlist packet
//	SYN     0x02 | flags | stream u32 | seqlim u32 | bytelim u64
//	ACCEPT  0x03 | flags | stream u32 | seqlim u32 | bytelim u64
//	DATA    0x04 | flags | stream u32 | seq u32 | payload (1..MaxSegment)
//	WINDOW  0x05 | flags | stream u32 | seqlim u32 | bytelim u64
//	FIN     0x06 | flags | stream u32 | seq u32
//	RESET   0x07 | flags | stream u32 | reason u8
//
// flags has one bit: 0x01 when the frame comes from the side that accepted
// the stream, 0 from the side that dialled it (so both sides may number
// their streams independently; the stream is named by the remote peer, the
// number and who dialled). SYN must come from the dialler and ACCEPT from
// the acceptor; the stream number is never 0.
//
// seqlim and bytelim grant the receiver of the frame credit: it may send
// DATA with seq < seqlim while the stream's total DATA payload stays
// ≤ bytelim, and FIN with seq ≤ seqlim (so closing never waits for
// credit). Both only grow, so a stale or lost WINDOW is harmless. seq
// numbers DATA and FIN from 0 in each direction; FIN takes one number.
//
// The decoder is strict: unknown kinds, flags or reasons, wrong lengths,
// empty payloads and stream 0 are errors.
const (
	kindPacket byte = 0x01
	kindSYN    byte = 0x02
	kindAccept byte = 0x03
	kindData   byte = 0x04
	kindWindow byte = 0x05
	kindFIN    byte = 0x06
	kindReset  byte = 0x07
)

const (
	flagFromAcceptor byte = 0x01

	streamHeaderLen = 6  // kind, flags, stream
	limitsLen       = 12 // seqlim u32, bytelim u64

	// MaxSegment is the most DATA payload one frame may carry.
	MaxSegment = 64 << 10
)

// Reasons carried by RESET, for the log of the side that receives it.
const (
	resetUnknown  byte = 1 // no such stream
	resetRefused  byte = 2 // no listener, accept queue full, or shutting down
	resetProtocol byte = 3 // the peer broke the rules (credit, window)
	resetLost     byte = 4 // a frame went missing
	resetTimeout  byte = 5 // silence, or a dial that gave up
	resetAborted  byte = 6 // closed locally before the end
)

var resetText = map[byte]string{
	resetUnknown:  "no such stream",
	resetRefused:  "refused",
	resetProtocol: "protocol violation",
	resetLost:     "frames lost",
	resetTimeout:  "timed out",
	resetAborted:  "aborted",
}

// ErrBadFrame is returned (wrapped) for bytes that are not a valid frame.
var ErrBadFrame = errors.New("malformed replication frame")

// frame is one decoded message. Which fields mean something depends on
// kind, as in the table above.
type frame struct {
	kind         byte
	fromAcceptor bool
	stream       uint32
	seq          uint32 // DATA, FIN
	seqLimit     uint32 // SYN, ACCEPT, WINDOW
	byteLimit    uint64 // SYN, ACCEPT, WINDOW
	reason       byte   // RESET
	payload      []byte // PACKET, DATA; aliases the decoded buffer
}

// appendTo appends the encoding of f to b.
func (f *frame) appendTo(b []byte) []byte {
	b = append(b, f.kind)
	if f.kind == kindPacket {
		return append(b, f.payload...)
	}
	var flags byte
	if f.fromAcceptor {
		flags = flagFromAcceptor
	}
	b = append(b, flags)
	b = binary.BigEndian.AppendUint32(b, f.stream)
	switch f.kind {
	case kindSYN, kindAccept, kindWindow:
		b = binary.BigEndian.AppendUint32(b, f.seqLimit)
		b = binary.BigEndian.AppendUint64(b, f.byteLimit)
	case kindData:
		b = binary.BigEndian.AppendUint32(b, f.seq)
		b = append(b, f.payload...)
	case kindFIN:
		b = binary.BigEndian.AppendUint32(b, f.seq)
	case kindReset:
		b = append(b, f.reason)
	}
	return b
}

// encode returns f in a new buffer.
func (f *frame) encode() []byte {
	n := streamHeaderLen + limitsLen
	if f.kind == kindPacket || f.kind == kindData {
		n += len(f.payload)
	}
	return f.appendTo(make([]byte, 0, n))
}

func badFrame(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrBadFrame, fmt.Sprintf(format, args...))
}

// decodeFrame parses b. The payload of the result aliases b.
func decodeFrame(b []byte) (frame, error) {
	if len(b) == 0 {
		return frame{}, badFrame("empty")
	}
	f := frame{kind: b[0]}
	if f.kind == kindPacket {
		if len(b) < 2 {
			return frame{}, badFrame("empty packet")
		}
		f.payload = b[1:]
		return f, nil
	}
	if f.kind < kindSYN || f.kind > kindReset {
		return frame{}, badFrame("unknown kind 0x%02x", f.kind)
	}
	if len(b) < streamHeaderLen {
		return frame{}, badFrame("kind 0x%02x: %d bytes is too short", f.kind, len(b))
	}
	switch flags := b[1]; flags {
	case 0:
	case flagFromAcceptor:
		f.fromAcceptor = true
	default:
		return frame{}, badFrame("unknown flags 0x%02x", flags)
	}
	f.stream = binary.BigEndian.Uint32(b[2:6])
	if f.stream == 0 {
		return frame{}, badFrame("stream 0")
	}
	body := b[streamHeaderLen:]
	want := func(n int) error {
		if len(body) != n {
			return badFrame("kind 0x%02x: body of %d bytes, want %d", f.kind, len(body), n)
		}
		return nil
	}
	switch f.kind {
	case kindSYN, kindAccept, kindWindow:
		if err := want(limitsLen); err != nil {
			return frame{}, err
		}
		if f.kind == kindSYN && f.fromAcceptor || f.kind == kindAccept && !f.fromAcceptor {
			return frame{}, badFrame("kind 0x%02x from the wrong side", f.kind)
		}
		f.seqLimit = binary.BigEndian.Uint32(body)
		f.byteLimit = binary.BigEndian.Uint64(body[4:])
	case kindData:
		if len(body) < 4+1 {
			return frame{}, badFrame("data without payload")
		}
		if len(body)-4 > MaxSegment {
			return frame{}, badFrame("data payload of %d bytes exceeds %d", len(body)-4, MaxSegment)
		}
		f.seq = binary.BigEndian.Uint32(body)
		f.payload = body[4:]
	case kindFIN:
		if err := want(4); err != nil {
			return frame{}, err
		}
		f.seq = binary.BigEndian.Uint32(body)
	case kindReset:
		if err := want(1); err != nil {
			return frame{}, err
		}
		f.reason = body[0]
		if _, ok := resetText[f.reason]; !ok {
			return frame{}, badFrame("unknown reset reason %d", f.reason)
		}
	}
	return f, nil
}
