package handshake

import (
	"crypto/cipher"
	"encoding/binary"
	"fmt"

	"golang.org/x/crypto/chacha20poly1305"
)

// Frame layout after the handshake (integers big-endian):
//
//	header: flags[1] length[3] counter[8]
//	body:   length bytes: the message, or when sealed its
//	        ChaCha20-Poly1305 ciphertext with the 16-byte tag
//
// The counter starts at 0 in each direction and grows by one per frame; the
// receiver requires exactly the next value, so a replayed, reordered or
// dropped frame ends the stream. When sealed, the header is the AEAD's
// additional data and the nonce is four zero bytes then the counter, so no
// nonce repeats under one key.
const (
	headerLen = 12
	tagLen    = chacha20poly1305.Overhead

	// flagRekey says the sender ratcheted its key (Ratchet) just before
	// sealing this frame; the receiver ratchets too before opening it.
	flagRekey = 1 << 0
	// flagKX marks a frame of the in-band key exchange: the session
	// consumes it, it is never delivered.
	flagKX = 1 << 1
	// flagNewKey says the sender switched to the key of the last key
	// exchange just before sealing this frame; the receiver switches too.
	flagNewKey = 1 << 2
)

// frameHeader is the decoded header of one frame.
type frameHeader struct {
	Flags   byte
	Length  int
	Counter uint64
}

func (h frameHeader) put(b []byte) {
	b[0] = h.Flags
	b[1], b[2], b[3] = byte(h.Length>>16), byte(h.Length>>8), byte(h.Length)
	binary.BigEndian.PutUint64(b[4:12], h.Counter)
}

// decodeHeader parses and bounds-checks a frame header read from the network.
func decodeHeader(b []byte, sealed bool) (frameHeader, error) {
	if len(b) != headerLen {
		return frameHeader{}, fmt.Errorf("%w: frame header of %d bytes, want %d", ErrProtocol, len(b), headerLen)
	}
	h := frameHeader{
		Flags:   b[0],
		Length:  int(b[1])<<16 | int(b[2])<<8 | int(b[3]),
		Counter: binary.BigEndian.Uint64(b[4:12]),
	}
	allowed, overhead := byte(0), 0
	if sealed {
		allowed, overhead = flagRekey|flagKX|flagNewKey, tagLen
	}
	if h.Flags&^allowed != 0 {
		return frameHeader{}, fmt.Errorf("%w: frame has unknown flags %#x", ErrProtocol, h.Flags)
	}
	if h.Flags&(flagRekey|flagNewKey) == flagRekey|flagNewKey {
		return frameHeader{}, fmt.Errorf("%w: frame both ratchets and switches its key", ErrProtocol)
	}
	if h.Length < overhead {
		return frameHeader{}, fmt.Errorf("%w: sealed frame of %d bytes is shorter than its tag", ErrProtocol, h.Length)
	}
	if h.Length-overhead > MaxMessageSize {
		return frameHeader{}, fmt.Errorf("%w: frame of %d bytes exceeds the limit of %d", ErrTooLarge, h.Length-overhead, MaxMessageSize)
	}
	return h, nil
}

// direction is the key state of one direction of a sealed stream: the
// current key and its AEAD, and when the key last changed. A nil aead means
// the stream is plain.
type direction struct {
	key      [32]byte
	aead     cipher.AEAD
	counter  uint64 // of the next frame
	sinceKey uint64 // frames sealed under the current key
	keyedAt  int64  // unix nanoseconds of the last key change (send side)
	// newKey, when set, is the key of a finished key exchange that this
	// direction switches to at its next frame (flagNewKey).
	newKey    *[32]byte
	nonceBuf  [chacha20poly1305.NonceSize]byte
	headerBuf [headerLen]byte
}

func (d *direction) setKey(k [32]byte) {
	d.key = k
	aead, err := chacha20poly1305.New(d.key[:])
	if err != nil {
		panic("handshake: chacha20poly1305 with a 32-byte key: " + err.Error())
	}
	d.aead = aead
	d.sinceKey = 0
}

// ratchet replaces the key by Ratchet(key), erasing the old one.
func (d *direction) ratchet() {
	next := Ratchet(d.key)
	clear(d.key[:])
	d.setKey(next)
}

// switchKey moves to the pending key-exchange key, erasing the old key.
func (d *direction) switchKey() {
	next := *d.newKey
	clear(d.newKey[:])
	d.newKey = nil
	clear(d.key[:])
	d.setKey(next)
}

func (d *direction) nonce(counter uint64) []byte {
	binary.BigEndian.PutUint64(d.nonceBuf[4:], counter)
	return d.nonceBuf[:]
}

// seal appends the frame carrying msg to dst; rekey says to ratchet first
// (unless a key exchange's key is due, which then replaces the ratchet
// step); flags are added to the header.
func (d *direction) seal(dst, msg []byte, rekey bool, flags byte) []byte {
	h := frameHeader{Flags: flags, Length: len(msg), Counter: d.counter}
	if d.aead != nil {
		if d.newKey != nil {
			d.switchKey()
			h.Flags |= flagNewKey
		} else if rekey {
			d.ratchet()
			h.Flags |= flagRekey
		}
		h.Length += tagLen
	}
	h.put(d.headerBuf[:])
	dst = append(dst, d.headerBuf[:]...)
	if d.aead != nil {
		dst = d.aead.Seal(dst, d.nonce(h.Counter), msg, d.headerBuf[:])
	} else {
		dst = append(dst, msg...)
	}
	d.counter++
	d.sinceKey++
	return dst
}

// open checks a received frame against the expected counter and, when
// sealed, authenticates and decrypts body in place.
func (d *direction) open(h frameHeader, header, body []byte) ([]byte, error) {
	if h.Counter != d.counter {
		return nil, fmt.Errorf("%w: frame counter %d, want %d: replayed, reordered or dropped frame", ErrProtocol, h.Counter, d.counter)
	}
	if d.aead != nil {
		if h.Flags&flagNewKey != 0 {
			if d.newKey == nil {
				return nil, fmt.Errorf("%w: frame %d switches key with no key exchange pending", ErrProtocol, h.Counter)
			}
			d.switchKey()
		}
		if h.Flags&flagRekey != 0 {
			d.ratchet()
		}
		msg, err := d.aead.Open(body[:0], d.nonce(h.Counter), body, header)
		if err != nil {
			return nil, fmt.Errorf("%w: frame %d failed authentication (tampered or forged)", ErrProtocol, h.Counter)
		}
		body = msg
	}
	d.counter++
	d.sinceKey++
	return body, nil
}
