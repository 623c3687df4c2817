package encap

import (
	"crypto/aes"
	"crypto/cipher"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

// Errors returned (wrapped) by Opener.Open and Sealer.Seal.
var (
	ErrAuth      = errors.New("datagram failed authentication")
	ErrEpoch     = errors.New("datagram from an unknown key epoch")
	ErrExhausted = errors.New("nonce counter exhausted")
)

// Ratchet is a one-way key step: epoch n+1's key is Ratchet(epoch n's key).
type Ratchet func(key [32]byte) [32]byte

// maxCounter bounds counters within one epoch; Seal refuses beyond it so a
// nonce is never reused, and the overlay rekeys long before.
const maxCounter = 1 << 62

// RekeyAfterMessages is the counter at which NeedsRekey says to move to the
// next epoch regardless of time.
const RekeyAfterMessages = 1 << 40

func newAEAD(key [32]byte) (cipher.AEAD, error) {
	block, err := aes.NewCipher(key[:])
	if err != nil {
		return nil, fmt.Errorf("aes: %w", err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, fmt.Errorf("gcm: %w", err)
	}
	return aead, nil
}

// nonceOf returns the AEAD nonce of the datagram d: the last 12 bytes of
// its header (the sender's two low bytes, the two reserved bytes and the
// 8-byte counter). It is unique per key because the counter is; taking it
// from the datagram itself avoids a per-datagram nonce buffer (a local
// array passed to the AEAD interface would escape to the heap).
func nonceOf(d []byte) []byte { return d[HeaderLen-12 : HeaderLen] }

type sendEpoch struct {
	epoch   uint16
	key     [32]byte
	aead    cipher.AEAD
	counter atomic.Uint64
	since   time.Time
}

// Sealer seals outgoing datagrams for one connection direction. Seal is safe
// for concurrent use; Rekey may run concurrently with Seal.
type Sealer struct {
	cur     atomic.Pointer[sendEpoch]
	ratchet Ratchet
	mu      sync.Mutex // serialises Rekey
}

// NewSealer starts at epoch 0 with key.
func NewSealer(key [32]byte, r Ratchet) (*Sealer, error) {
	aead, err := newAEAD(key)
	if err != nil {
		return nil, err
	}
	s := &Sealer{ratchet: r}
	s.cur.Store(&sendEpoch{key: key, aead: aead, since: time.Now()})
	return s, nil
}

// Seal seals the datagram d (an encoded header followed by the plaintext
// payload) in place: it stamps the epoch and a fresh counter into the
// header, encrypts the payload with the header as associated data and
// appends the tag. d must have TagLen bytes of spare capacity. It returns
// the sealed datagram.
func (s *Sealer) Seal(d []byte) ([]byte, error) {
	e := s.cur.Load()
	c := e.counter.Add(1) - 1
	if c >= maxCounter {
		return nil, ErrExhausted
	}
	SetCounter(d, e.epoch, c)
	out := e.aead.Seal(d[HeaderLen:HeaderLen], nonceOf(d), d[HeaderLen:], d[:HeaderLen])
	return d[:HeaderLen+len(out)], nil
}

// NeedsRekey reports whether the current epoch is older than maxAge or has
// used RekeyAfterMessages counters.
func (s *Sealer) NeedsRekey(now time.Time, maxAge time.Duration) bool {
	e := s.cur.Load()
	return now.Sub(e.since) >= maxAge || e.counter.Load() >= RekeyAfterMessages
}

// Rekey moves to the next epoch: key = Ratchet(key), counter from 0.
func (s *Sealer) Rekey() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	old := s.cur.Load()
	k := s.ratchet(old.key)
	aead, err := newAEAD(k)
	if err != nil {
		return err
	}
	s.cur.Store(&sendEpoch{epoch: old.epoch + 1, key: k, aead: aead, since: time.Now()})
	old.key = [32]byte{}
	return nil
}

// Epoch is the current send epoch.
func (s *Sealer) Epoch() uint16 { return s.cur.Load().epoch }

type recvEpoch struct {
	epoch  uint16
	key    [32]byte
	aead   cipher.AEAD
	window Window
	until  time.Time // for the previous epoch: accepted until then
}

// PrevEpochGrace is how long the previous epoch's key stays usable after the
// peer moved to a new epoch, for datagrams still in flight.
const PrevEpochGrace = 10 * time.Second

// Opener opens datagrams for one connection direction: it keeps the current
// epoch, the previous one for PrevEpochGrace, and the next one precomputed
// (so a forged "next epoch" datagram costs one failed open, no key
// derivation). Safe for concurrent use (one mutex per connection).
type Opener struct {
	mu      sync.Mutex
	cur     *recvEpoch
	prev    *recvEpoch
	next    *recvEpoch
	ratchet Ratchet
	now     func() time.Time
}

// NewOpener starts at epoch 0 with key.
func NewOpener(key [32]byte, r Ratchet) (*Opener, error) {
	cur, err := newRecvEpoch(0, key)
	if err != nil {
		return nil, err
	}
	o := &Opener{cur: cur, ratchet: r, now: time.Now}
	if o.next, err = newRecvEpoch(1, r(key)); err != nil {
		return nil, err
	}
	return o, nil
}

func newRecvEpoch(epoch uint16, key [32]byte) (*recvEpoch, error) {
	aead, err := newAEAD(key)
	if err != nil {
		return nil, err
	}
	return &recvEpoch{epoch: epoch, key: key, aead: aead}, nil
}

// Open authenticates and decrypts the sealed datagram d in place and returns
// its plaintext payload (aliasing d). The header must already have been
// parsed into h. Errors wrap ErrAuth, ErrReplay, ErrTooOld or ErrEpoch.
func (o *Opener) Open(h *Header, d []byte) ([]byte, error) {
	if len(d) < HeaderLen+TagLen {
		return nil, fmt.Errorf("%w: %d bytes", ErrShort, len(d))
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	var e *recvEpoch
	switch {
	case h.Epoch == o.cur.epoch:
		e = o.cur
	case o.next != nil && h.Epoch == o.next.epoch:
		e = o.next
	case o.prev != nil && h.Epoch == o.prev.epoch:
		if o.now().After(o.prev.until) {
			o.prev = nil
			return nil, fmt.Errorf("%w %d (previous epoch expired)", ErrEpoch, h.Epoch)
		}
		e = o.prev
	default:
		// The sender may have moved more than one epoch while none of its
		// datagrams reached us. Derive the key on demand, a bounded number
		// of steps, and switch only if the datagram authenticates.
		ahead := h.Epoch - o.cur.epoch
		if ahead < 2 || ahead > MaxEpochSkip || o.next == nil {
			return nil, fmt.Errorf("%w %d (current %d)", ErrEpoch, h.Epoch, o.cur.epoch)
		}
		k := o.next.key
		for range ahead - 1 {
			k = o.ratchet(k)
		}
		var err error
		if e, err = newRecvEpoch(h.Epoch, k); err != nil {
			return nil, err
		}
	}
	if err := e.window.Check(h.Counter); err != nil {
		return nil, err
	}
	p, err := e.aead.Open(d[HeaderLen:HeaderLen], nonceOf(d), d[HeaderLen:], d[:HeaderLen])
	if err != nil {
		return nil, ErrAuth
	}
	e.window.Mark(h.Counter)
	if e != o.cur && e != o.prev {
		o.advanceLocked(e)
	}
	return p, nil
}

// MaxEpochSkip is how many epochs ahead of the current one a datagram may
// be and still open (each step costs one ratchet for a forged datagram).
const MaxEpochSkip = 8

// advanceLocked makes e (the next or a later epoch) current, keeps the old
// current one as previous for PrevEpochGrace and precomputes the one after
// e. o.mu held.
func (o *Opener) advanceLocked(e *recvEpoch) {
	o.cur.until = o.now().Add(PrevEpochGrace)
	o.prev, o.cur = o.cur, e
	o.next = nil
	if nx, err := newRecvEpoch(o.cur.epoch+1, o.ratchet(o.cur.key)); err == nil {
		o.next = nx
	}
	if o.prev != nil {
		o.prev.key = [32]byte{}
	}
}

// Epoch is the current receive epoch.
func (o *Opener) Epoch() uint16 {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.cur.epoch
}
