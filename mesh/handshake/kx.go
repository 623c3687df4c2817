package handshake

import (
	"crypto/ecdh"
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"net"
	"sync"
	"time"
)

// In-band key exchange (post-compromise security). On a sealed session the
// client starts one every KeyExchangeInterval; three frames, each flagged
// flagKX and sealed like any other frame, so an attacker can neither read
// nor forge them:
//
//	1. client -> server  step=1 n eA   (under the old keys)
//	2. server -> client  step=2 n eB   (under the old keys)
//	3. client -> server  step=3 n      (the client's first frame under its new key)
//
// eA, eB are fresh X25519 public keys; n counts exchanges (the data epoch).
// Both ends compute exchangeKeys(chain, X25519(eA, eB), n). The switch
// happens on the stream itself: right after sending step 2 the server seals
// its next frame with its new control key and flags it flagNewKey, and the
// client does the same from step 3 on; each receiver switches at the flagged
// frame. The data keys are handed to the data plane in the order that never
// lets a sender use a key its peer lacks: the server installs its new
// receive key before it sends step 2; the client installs its receive key
// and starts sending with the new key when step 2 arrives (the server
// already has the matching receive key); the server starts sending with the
// new key when step 3 arrives (the client installed its receive key before
// sending step 3).

const (
	kxStep1    = 1
	kxStep2    = 2
	kxStep3    = 3
	kxShareLen = 1 + 2 + 32 // step, epoch, public key
)

// kxState is a session's key-exchange state.
type kxState struct {
	interval time.Duration
	done     chan struct{} // closed by Close
	started  bool
	out      chan kxFrame // frames for the kx goroutine to send

	mu    sync.Mutex // guards the fields below
	chain [32]byte
	epoch uint16           // of the last finished exchange (0: none)
	eph   *ecdh.PrivateKey // client: our share of the exchange in flight
	// step3Due (client): step 3 of the last exchange is queued but not
	// sent yet; the next step 1 must not overtake it.
	step3Due bool
	sendNext *[32]byte // server: data send key due at step 3
	handler  func(DataKeyUpdate)
	queued   []DataKeyUpdate
}

// kxFrame is a key-exchange frame to send, with the control key to switch
// to just before it (so it is the first frame under that key) or just
// after it.
type kxFrame struct {
	body          []byte
	before, after *[32]byte
}

// startKX starts the key-exchange goroutine of a sealed session; it ends
// when the session is closed.
func (s *session) startKX() {
	if s.send.aead == nil {
		return
	}
	s.kx.started = true
	s.kx.out = make(chan kxFrame, 4)
	go s.kxLoop()
}

func (s *session) kxLoop() {
	var tick <-chan time.Time
	if s.isClient {
		t := time.NewTicker(s.kx.interval)
		defer t.Stop()
		tick = t.C
	}
	for {
		select {
		case <-s.kx.done:
			return
		case <-tick:
			if f, ok := s.beginKX(); ok {
				s.sendKX(f)
			}
		case f := <-s.kx.out:
			s.sendKX(f)
			if f.body[0] == kxStep3 {
				s.kx.mu.Lock()
				s.kx.step3Due = false
				s.kx.mu.Unlock()
			}
		}
	}
}

// beginKX prepares step 1, unless an exchange is already in flight.
func (s *session) beginKX() (kxFrame, bool) {
	s.kx.mu.Lock()
	defer s.kx.mu.Unlock()
	if s.kx.eph != nil || s.kx.step3Due {
		return kxFrame{}, false
	}
	eph, err := ecdh.X25519().GenerateKey(rand.Reader)
	if err != nil {
		return kxFrame{}, false
	}
	s.kx.eph = eph
	return kxFrame{body: kxBody(kxStep1, s.kx.epoch+1, eph.PublicKey().Bytes())}, true
}

// sendKX writes one key-exchange frame (errors surface on the next Send).
func (s *session) sendKX(f kxFrame) {
	s.sendMu.Lock()
	defer s.sendMu.Unlock()
	if f.before != nil {
		s.send.newKey = f.before
	}
	if s.sendLocked(f.body, flagKX) == nil && f.after != nil {
		s.send.newKey = f.after
	}
}

func kxBody(step byte, epoch uint16, pub []byte) []byte {
	b := []byte{step, byte(epoch >> 8), byte(epoch)}
	return append(b, pub...)
}

// handleKX processes a key-exchange frame in the Recv goroutine; switched
// says whether the frame came under a freshly switched key.
func (s *session) handleKX(body []byte, switched bool) error {
	if len(body) < 3 {
		return fmt.Errorf("%w: key exchange frame of %d bytes", ErrProtocol, len(body))
	}
	step, n := body[0], binary.BigEndian.Uint16(body[1:3])
	s.kx.mu.Lock()
	defer s.kx.mu.Unlock()
	if !s.kx.started {
		return fmt.Errorf("%w: key exchange on a session without keys", ErrProtocol)
	}
	if n != s.kx.epoch+1 && !(step == kxStep3 && n == s.kx.epoch) {
		return fmt.Errorf("%w: key exchange %d, expected %d", ErrProtocol, n, s.kx.epoch+1)
	}
	switch {
	case step == kxStep1 && !s.isClient && len(body) == kxShareLen && s.kx.sendNext == nil:
		eph, err := ecdh.X25519().GenerateKey(rand.Reader)
		if err != nil {
			return fmt.Errorf("key exchange: %w", err)
		}
		k, err := s.kxDerive(eph, body[3:], n)
		if err != nil {
			return err
		}
		s.recv.newKey = &k.controlC2S
		s.deliverLocked(DataKeyUpdate{Epoch: n, Recv: &k.dataC2S})
		s.kx.sendNext = &k.dataS2C
		return s.queueKX(kxFrame{body: kxBody(kxStep2, n, eph.PublicKey().Bytes()), after: &k.controlS2C})
	case step == kxStep2 && s.isClient && len(body) == kxShareLen && s.kx.eph != nil:
		eph := s.kx.eph
		s.kx.eph = nil
		k, err := s.kxDerive(eph, body[3:], n)
		if err != nil {
			return err
		}
		s.recv.newKey = &k.controlS2C
		s.deliverLocked(DataKeyUpdate{Epoch: n, Recv: &k.dataS2C, Send: &k.dataC2S})
		s.kx.step3Due = true
		return s.queueKX(kxFrame{body: kxBody(kxStep3, n, nil), before: &k.controlC2S})
	case step == kxStep3 && !s.isClient && len(body) == 3 && switched && s.kx.sendNext != nil && n == s.kx.epoch:
		s.deliverLocked(DataKeyUpdate{Epoch: n, Send: s.kx.sendNext})
		s.kx.sendNext = nil
		return nil
	}
	return fmt.Errorf("%w: unexpected key exchange step %d (exchange %d)", ErrProtocol, step, n)
}

// kxDerive finishes the Diffie-Hellman of exchange n and advances the chain.
// s.kx.mu held.
func (s *session) kxDerive(eph *ecdh.PrivateKey, theirs []byte, n uint16) (sessionKeys, error) {
	pub, err := ecdh.X25519().NewPublicKey(theirs)
	if err != nil {
		return sessionKeys{}, fmt.Errorf("%w: key exchange: bad public key: %w", ErrProtocol, err)
	}
	dh, err := eph.ECDH(pub)
	if err != nil { // low-order point
		return sessionKeys{}, fmt.Errorf("%w: key exchange: bad public key: %w", ErrProtocol, err)
	}
	k := exchangeKeys(s.kx.chain, dh, n)
	clear(dh)
	s.kx.chain = k.chain
	s.kx.epoch = n
	return k, nil
}

// queueKX hands a frame to the kx goroutine without blocking the reader.
func (s *session) queueKX(f kxFrame) error {
	select {
	case s.kx.out <- f:
		return nil
	case <-s.kx.done:
		return net.ErrClosed
	default:
		return fmt.Errorf("%w: key exchange frames arrive faster than they can be answered", ErrProtocol)
	}
}

// deliverLocked hands u to the data-key handler, or keeps it until one is
// set. s.kx.mu held.
func (s *session) deliverLocked(u DataKeyUpdate) {
	if s.kx.handler != nil {
		s.kx.handler(u)
		return
	}
	if len(s.kx.queued) >= 8 { // no handler for many minutes: keep the newest
		s.kx.queued = s.kx.queued[1:]
	}
	s.kx.queued = append(s.kx.queued, u)
}

// OnDataKeys implements Session.
func (s *session) OnDataKeys(f func(DataKeyUpdate)) {
	s.kx.mu.Lock()
	defer s.kx.mu.Unlock()
	s.kx.handler = f
	for _, u := range s.kx.queued {
		f(u)
	}
	s.kx.queued = nil
}
