package encap

import (
	"crypto/cipher"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/weavelab/weave/mesh/clock"
	"github.com/weavelab/weave/mesh/handshake"
)

// Errors returned (wrapped) by Opener.Open, Sealer.Seal and the Install
// methods.
var (
	ErrAuth      = errors.New("datagram failed authentication")
	ErrEpoch     = errors.New("datagram from an unknown key epoch")
	ErrExhausted = errors.New("nonce counter exhausted")
	// ErrEpochInUse: Install was asked for the epoch that is current.
	ErrEpochInUse = errors.New("key epoch already in use")
)

// maxCounter bounds counters within one epoch; Seal refuses beyond it so a
// nonce is never reused. The mesh hands fresh keys every few minutes, long
// before.
const maxCounter = 1 << 62

// nonceOf returns the AEAD nonce of the datagram d: the last 12 bytes of
// its header (the sender's two low bytes, the two reserved bytes and the
// 8-byte counter). It is unique per key because the counter is; taking it
// from the datagram itself avoids a per-datagram nonce buffer (a local
// array passed to the AEAD interface would escape to the heap).
func nonceOf(d []byte) []byte { return d[HeaderLen-12 : HeaderLen] }

type sendEpoch struct {
	epoch   uint16
	aead    cipher.AEAD
	counter atomic.Uint64
}

// Sealer seals outgoing datagrams for one connection direction with one
// cipher suite, the connection's, for every epoch. Seal is safe for
// concurrent use; Install may run concurrently with Seal but not with
// another Install (a Seal that started before Install returns may still
// use the old epoch, which the receiver keeps open for PrevEpochGrace).
type Sealer struct {
	suite handshake.Suite
	cur   atomic.Pointer[sendEpoch]
}

// NewSealer starts at epoch 0 with key (the handshake's data key), sealing
// with suite (the handshake's); keys installed later use the same suite.
// A suite this package does not know is an error wrapping ErrSuite.
func NewSealer(suite handshake.Suite, key [32]byte) (*Sealer, error) {
	aead, err := newAEAD(suite, &key)
	if err != nil {
		return nil, err
	}
	s := &Sealer{suite: suite}
	s.cur.Store(&sendEpoch{aead: aead})
	return s, nil
}

// Suite is the cipher suite the sealer seals with.
func (s *Sealer) Suite() handshake.Suite { return s.suite }

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

// Install makes the sealer seal from now on at epoch with key, counter from
// 0. The caller must know that the receiver already holds the key (the
// mesh's DataKeyUpdate ordering guarantees it). Installing the current
// epoch again is refused (ErrEpochInUse): a second key for one epoch would
// reuse its nonces.
func (s *Sealer) Install(epoch uint16, key [32]byte) error {
	if s.cur.Load().epoch == epoch {
		return fmt.Errorf("%w: send epoch %d", ErrEpochInUse, epoch)
	}
	aead, err := newAEAD(s.suite, &key)
	if err != nil {
		return err
	}
	s.cur.Store(&sendEpoch{epoch: epoch, aead: aead})
	return nil
}

// Epoch is the current send epoch.
func (s *Sealer) Epoch() uint16 { return s.cur.Load().epoch }

type recvEpoch struct {
	epoch  uint16
	aead   cipher.AEAD
	window Window
	until  time.Time // for the previous epoch: accepted until then
}

// PrevEpochGrace is how long the previous epoch's key stays usable after the
// peer moved to a new epoch, for datagrams still in flight.
const PrevEpochGrace = 10 * time.Second

// Opener opens datagrams for one connection direction. It knows at most
// three epochs, each with its AEAD built when its key was installed: the
// current one, the previous one for PrevEpochGrace after the switch, and
// the next one once Install gave it. A datagram of any other epoch is
// dropped before any cryptography, and a forged datagram of a known epoch
// costs one failed AEAD open: no key derivation, no AEAD construction.
// Every epoch uses the opener's one cipher suite. Safe for concurrent use
// (one mutex per connection, not held while authenticating).
type Opener struct {
	suite handshake.Suite
	mu    sync.Mutex
	cur   *recvEpoch
	prev  *recvEpoch // nil, or open until prev.until
	next  *recvEpoch // nil until Install
	clk   clock.Clock
}

// NewOpener starts at epoch 0 with key (the handshake's data key), opening
// with suite (the handshake's); keys installed later use the same suite.
// clk times the previous epoch's grace (nil: clock.Real{}); it is read
// only on an epoch switch and for datagrams of the previous epoch.
// A suite this package does not know is an error wrapping ErrSuite.
func NewOpener(suite handshake.Suite, key [32]byte, clk clock.Clock) (*Opener, error) {
	cur, err := newRecvEpoch(suite, 0, &key)
	if err != nil {
		return nil, err
	}
	if clk == nil {
		clk = clock.Real{}
	}
	return &Opener{suite: suite, cur: cur, clk: clk}, nil
}

// Suite is the cipher suite the opener opens with.
func (o *Opener) Suite() handshake.Suite { return o.suite }

func newRecvEpoch(suite handshake.Suite, epoch uint16, key *[32]byte) (*recvEpoch, error) {
	aead, err := newAEAD(suite, key)
	if err != nil {
		return nil, err
	}
	return &recvEpoch{epoch: epoch, aead: aead}, nil
}

// Install adds the receive key for epoch beside the current one; the
// opener switches to it when the first datagram of that epoch
// authenticates. If an earlier installed epoch is still waiting for its
// first datagram, it is made current first (the sender holds it, by the
// same ordering that delivers this key) and the old current one stays
// open for PrevEpochGrace, so no datagram in flight is refused.
func (o *Opener) Install(epoch uint16, key [32]byte) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	if epoch == o.cur.epoch || (o.next != nil && o.next.epoch == epoch) {
		return fmt.Errorf("%w: receive epoch %d", ErrEpochInUse, epoch)
	}
	e, err := newRecvEpoch(o.suite, epoch, &key)
	if err != nil {
		return err
	}
	if o.next != nil {
		o.advanceLocked()
	}
	if o.prev != nil && o.prev.epoch == epoch {
		o.prev = nil
	}
	o.next = e
	return nil
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
		if o.clk.Now().After(o.prev.until) {
			o.prev = nil
			return nil, errPrevExpired
		}
		e = o.prev
	default:
		return nil, errUnknownEpoch
	}
	if err := e.window.Check(h.Counter); err != nil {
		return nil, err
	}
	// Authenticate without the lock, so that several goroutines open one
	// connection's datagrams in parallel (an AEAD is safe for concurrent
	// use and an epoch's key never changes); check the window again when
	// marking, since a copy of d may have been opened meanwhile.
	o.mu.Unlock()
	p, err := e.aead.Open(d[HeaderLen:HeaderLen], nonceOf(d), d[HeaderLen:], d[:HeaderLen])
	o.mu.Lock()
	if err != nil {
		return nil, ErrAuth
	}
	if err := e.window.Check(h.Counter); err != nil {
		return nil, err
	}
	e.window.Mark(h.Counter)
	if e == o.next {
		o.advanceLocked()
	}
	return p, nil
}

// Preallocated so that dropping a datagram of an unknown epoch allocates
// nothing either.
var (
	errUnknownEpoch = fmt.Errorf("%w (neither current, previous nor installed next)", ErrEpoch)
	errPrevExpired  = fmt.Errorf("%w (previous epoch expired)", ErrEpoch)
)

// advanceLocked makes the next epoch current and keeps the old current one
// as previous for PrevEpochGrace. o.mu held; o.next not nil.
func (o *Opener) advanceLocked() {
	o.cur.until = o.clk.Now().Add(PrevEpochGrace)
	o.prev, o.cur, o.next = o.cur, o.next, nil
}

// Epoch is the current receive epoch.
func (o *Opener) Epoch() uint16 {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.cur.epoch
}
