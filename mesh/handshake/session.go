package handshake

import (
	"fmt"
	"io"
	"math"
	"net"
	"sync"
	"time"
)

// session implements Session over one net.Conn.
type session struct {
	conn     net.Conn
	res      Result
	isClient bool

	rekeyMessages uint64
	rekeyInterval time.Duration
	now           func() time.Time

	sendMu  sync.Mutex // guards the fields below up to recv
	send    direction
	sendBuf []byte
	sendErr error

	// recv and recvErr are owned by the single Recv goroutine.
	recv    direction
	recvHdr [headerLen]byte
	recvErr error

	kx kxState

	closeOnce sync.Once
	closeErr  error
}

const (
	// reuseLimit is the largest send buffer kept between messages.
	reuseLimit = 256 << 10
	// directReadLimit is the largest body read into a buffer allocated
	// up front, before its bytes arrive.
	directReadLimit = 1 << 20
)

func newSession(conn net.Conn, res Result, cfg Config, isClient bool) *session {
	return &session{
		conn:          conn,
		res:           res,
		isClient:      isClient,
		rekeyMessages: cfg.RekeyMessages,
		rekeyInterval: cfg.RekeyInterval,
		now:           cfg.Now,
		kx:            kxState{interval: cfg.KeyExchangeInterval, done: make(chan struct{})},
	}
}

// setKeys switches the session to sealed mode with the keys of its role.
func (s *session) setKeys(k sessionKeys) {
	send, recv := k.controlC2S, k.controlS2C
	dk := &DataKeys{Send: k.dataC2S, Recv: k.dataS2C}
	if !s.isClient {
		send, recv = recv, send
		dk.Send, dk.Recv = dk.Recv, dk.Send
	}
	s.send.setKey(send)
	s.send.keyedAt = s.now().UnixNano()
	s.recv.setKey(recv)
	s.res.DataKeys = dk
	s.kx.chain = k.chain
}

func (s *session) Result() Result { return s.res }

// Send frames (and seals) msg and writes it in one Write. It blocks until
// the connection accepts the bytes; Close unblocks it.
func (s *session) Send(msg []byte) error {
	if len(msg) > MaxMessageSize {
		return fmt.Errorf("send to %s: %w: %d bytes exceeds the limit of %d", s.res.Remote, ErrTooLarge, len(msg), MaxMessageSize)
	}
	s.sendMu.Lock()
	defer s.sendMu.Unlock()
	return s.sendLocked(msg, 0)
}

// sendLocked writes one frame with the given flags. s.sendMu held.
func (s *session) sendLocked(msg []byte, flags byte) error {
	if s.sendErr != nil {
		return s.sendErr
	}
	if s.send.counter == math.MaxUint64 {
		s.sendErr = fmt.Errorf("send to %s: frame counter exhausted", s.res.Remote)
		return s.sendErr
	}
	rekey := false
	if s.send.aead != nil {
		now := s.now().UnixNano()
		if s.send.sinceKey >= s.rekeyMessages || time.Duration(now-s.send.keyedAt) >= s.rekeyInterval {
			rekey = true
			s.send.keyedAt = now
		}
	}
	buf := s.send.seal(s.sendBuf[:0], msg, rekey, flags)
	_, err := s.conn.Write(buf)
	if cap(buf) <= reuseLimit {
		s.sendBuf = buf[:0]
	}
	if err != nil {
		// A partial write leaves the stream unusable.
		s.sendErr = fmt.Errorf("send to %s: %w", s.res.Remote, err)
		return s.sendErr
	}
	return nil
}

// Recv reads the next message. The returned slice belongs to the caller.
// Frames of the in-band key exchange are handled here and not returned.
func (s *session) Recv() ([]byte, error) {
	if s.recvErr != nil {
		return nil, s.recvErr
	}
	for {
		msg, flags, err := s.readFrame()
		if err == nil && flags&flagKX != 0 {
			err = s.handleKX(msg, flags&flagNewKey != 0)
			if err == nil {
				continue
			}
		}
		if err != nil {
			s.recvErr = fmt.Errorf("receive from %s: %w", s.res.Remote, err)
			return nil, s.recvErr
		}
		return msg, nil
	}
}

func (s *session) readFrame() ([]byte, byte, error) {
	if _, err := io.ReadFull(s.conn, s.recvHdr[:]); err != nil {
		return nil, 0, err
	}
	h, err := decodeHeader(s.recvHdr[:], s.recv.aead != nil)
	if err != nil {
		return nil, 0, err
	}
	body, err := readBody(s.conn, h.Length)
	if err != nil {
		return nil, 0, fmt.Errorf("frame %d: %w", h.Counter, err)
	}
	msg, err := s.recv.open(h, s.recvHdr[:], body)
	return msg, h.Flags, err
}

// readBody reads exactly n bytes. Large bodies grow with the bytes that
// actually arrive, so a header that claims 8 MiB costs memory only when the
// peer really sends them.
func readBody(r io.Reader, n int) ([]byte, error) {
	if n <= directReadLimit {
		b := make([]byte, n)
		_, err := io.ReadFull(r, b)
		return b, err
	}
	b, err := io.ReadAll(io.LimitReader(r, int64(n)))
	if err == nil && len(b) < n {
		err = io.ErrUnexpectedEOF
	}
	return b, err
}

// Close closes the connection; later calls return the first call's result.
func (s *session) Close() error {
	s.closeOnce.Do(func() {
		close(s.kx.done)
		s.closeErr = s.conn.Close()
	})
	return s.closeErr
}
