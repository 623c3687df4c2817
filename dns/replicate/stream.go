package replicate

import (
	"bytes"
	"fmt"
	"io"
	"math"
	"net"
	"os"
	"sync"
	"time"

	"github.com/weavelab/weave/mesh/identity"
)

// streamKey names a stream: the remote peer, the dialler's number, and
// whether we are the dialler.
type streamKey struct {
	peer   identity.PeerName
	id     uint32
	dialed bool
}

// stream is one end of a stream: a net.Conn over frames. Deliver feeds it
// through deliver, the Transport's ticker through tick, and the owner
// (memberlist) reads, writes and closes it.
//
// Locks: mu guards the state below it and is never held while sending.
// wsem (a one-slot semaphore, so that waiting for it can honour deadlines)
// orders the frames that carry a sequence number, DATA and FIN.
type stream struct {
	t     *Transport
	key   streamKey
	local Addr
	peer  Addr

	rdl, wdl    *deadline
	wsem        chan struct{}
	established chan struct{} // closed when the stream may carry data
	done        chan struct{} // closed when the stream ends (fault or Close)

	mu          sync.Mutex
	isOpen      bool  // established has been closed
	fault       error // why the stream ended, if it did other than by Close
	localClosed bool
	lastRecv    time.Time
	lastSend    time.Time
	readable    chan struct{} // poked when data, FIN or the end arrives
	writable    chan struct{} // poked when credit grows or the end arrives

	// Receive side.
	rbuf     bytes.Buffer      // in-order bytes the reader has not taken
	rseq     uint32            // next sequence number expected
	rRead    uint64            // bytes the reader has taken, in total
	finRecv  bool              // the peer's FIN arrived in order
	ooo      map[uint32]*frame // frames after a gap, by seq
	oooBytes int               // their payload bytes
	gapSince time.Time         // when the current gap was first seen
	advSeq   uint32            // credit last granted: seq limit
	advBytes uint64            // credit last granted: byte limit

	// Send side.
	sseq          uint32 // next sequence number to send
	sBytes        uint64 // DATA payload bytes sent, in total
	peerSeqLimit  uint32 // credit granted by the peer
	peerByteLimit uint64
}

var _ net.Conn = (*stream)(nil)

func newStream(t *Transport, key streamKey, accepted bool) *stream {
	now := time.Now()
	s := &stream{
		t: t, key: key, local: t.self, peer: Addr{key.peer},
		rdl: newDeadline(), wdl: newDeadline(),
		wsem:        make(chan struct{}, 1),
		established: make(chan struct{}),
		done:        make(chan struct{}),
		lastRecv:    now, lastSend: now,
		readable: make(chan struct{}, 1),
		writable: make(chan struct{}, 1),
		ooo:      make(map[uint32]*frame),
		advSeq:   uint32(t.cfg.ReorderWindow),
		advBytes: uint64(t.cfg.Window),
	}
	if accepted {
		s.isOpen = true
		close(s.established)
	}
	return s
}

func poke(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

// frameFor fills in the fields every frame of this stream shares.
func (s *stream) frameFor(kind byte) frame {
	return frame{kind: kind, fromAcceptor: !s.key.dialed, stream: s.key.id}
}

// deliver handles a frame for this stream (called by Transport.Deliver,
// never blocks).
func (s *stream) deliver(f *frame) {
	s.mu.Lock()
	if s.fault != nil || s.localClosed {
		s.mu.Unlock()
		return
	}
	s.lastRecv = time.Now()
	var reply *frame
	switch f.kind {
	case kindAccept:
		if s.key.dialed && !s.isOpen {
			s.isOpen = true
			s.raiseCreditLocked(f.seqLimit, f.byteLimit)
			close(s.established)
		}
	case kindWindow:
		if s.isOpen {
			s.raiseCreditLocked(f.seqLimit, f.byteLimit)
		}
	case kindData, kindFIN:
		var err error
		if reply, err = s.receiveLocked(f); err != nil {
			s.mu.Unlock()
			s.fail(resetProtocol, err)
			return
		}
	case kindReset:
		s.mu.Unlock()
		s.fail(0, fmt.Errorf("%w: %s", ErrReset, resetText[f.reason]))
		return
	}
	s.mu.Unlock()
	if reply != nil {
		s.sendControl(reply)
	}
}

func (s *stream) raiseCreditLocked(seqLimit uint32, byteLimit uint64) {
	if seqLimit > s.peerSeqLimit {
		s.peerSeqLimit = seqLimit
	}
	if byteLimit > s.peerByteLimit {
		s.peerByteLimit = byteLimit
	}
	poke(s.writable)
}

// receiveLocked places a DATA or FIN frame, and returns the WINDOW frame
// to send if the credit it frees is worth telling the peer about.
func (s *stream) receiveLocked(f *frame) (*frame, error) {
	switch {
	case !s.isOpen:
		return nil, fmt.Errorf("%w: %s before the stream was accepted", ErrProtocol, kindName(f.kind))
	case s.finRecv:
		return nil, fmt.Errorf("%w: %s after FIN", ErrProtocol, kindName(f.kind))
	case f.seq < s.rseq:
		return nil, nil // a duplicate; the fabric should not make them, but they are harmless
	case f.kind == kindData && f.seq >= s.advSeq, f.kind == kindFIN && f.seq > s.advSeq:
		return nil, fmt.Errorf("%w: seq %d outside the window %d..%d", ErrProtocol, f.seq, s.rseq, s.advSeq)
	}
	if f.seq > s.rseq && s.ooo[f.seq] != nil {
		return nil, nil // a duplicate of a frame we hold
	}
	if f.kind == kindData {
		held := uint64(s.rbuf.Len()) + uint64(s.oooBytes) + uint64(len(f.payload))
		if held > s.advBytes-s.rRead {
			return nil, fmt.Errorf("%w: %d bytes buffered exceed the %d granted", ErrProtocol, held, s.advBytes-s.rRead)
		}
	}
	if f.seq > s.rseq {
		c := *f
		c.payload = bytes.Clone(f.payload)
		s.ooo[f.seq] = &c
		s.oooBytes += len(c.payload)
		if s.gapSince.IsZero() {
			s.gapSince = time.Now()
		}
		return nil, nil
	}
	s.applyLocked(f)
	for !s.finRecv {
		next := s.ooo[s.rseq]
		if next == nil {
			break
		}
		delete(s.ooo, s.rseq)
		s.oooBytes -= len(next.payload)
		s.applyLocked(next)
	}
	switch {
	case s.finRecv && len(s.ooo) > 0:
		return nil, fmt.Errorf("%w: frames after FIN", ErrProtocol)
	case len(s.ooo) == 0:
		s.gapSince = time.Time{}
	default:
		s.gapSince = time.Now() // progress: the next gap gets its own time
	}
	poke(s.readable)
	return s.windowUpdateLocked(), nil
}

func (s *stream) applyLocked(f *frame) {
	s.rseq++
	if f.kind == kindFIN {
		s.finRecv = true
		return
	}
	s.rbuf.Write(f.payload)
}

// windowUpdateLocked grants the peer the credit the reader and the
// reassembly freed, once it amounts to half a window of either kind.
func (s *stream) windowUpdateLocked() *frame {
	if s.finRecv {
		return nil
	}
	rw, w := s.t.cfg.ReorderWindow, uint64(s.t.cfg.Window)
	seqLimit := satAdd(s.rseq, rw)
	byteLimit := s.rRead + w
	if int(seqLimit-s.advSeq) < rw/2 && byteLimit-s.advBytes < w/2 {
		return nil
	}
	s.advSeq, s.advBytes = seqLimit, byteLimit
	f := s.frameFor(kindWindow)
	f.seqLimit, f.byteLimit = seqLimit, byteLimit
	s.lastSend = time.Now()
	return &f
}

// sendControl sends a frame without a sequence number; losing one is
// harmless (keepalives and WINDOW repeat the latest credit).
func (s *stream) sendControl(f *frame) {
	if err := s.t.send(s.key.peer, f); err != nil {
		s.t.log.Debug("replication stream control frame not sent", "peer", s.key.peer.String(), "conn", s.key.id, "err", err)
	}
}

// tick is the Transport's periodic check: keepalives, silence, lost frames.
func (s *stream) tick(now time.Time) {
	s.mu.Lock()
	if s.fault != nil || s.localClosed || !s.isOpen {
		s.mu.Unlock()
		return
	}
	cfg := &s.t.cfg
	switch {
	case !s.finRecv && now.Sub(s.lastRecv) > cfg.IdleTimeout:
		s.mu.Unlock()
		s.fail(resetTimeout, fmt.Errorf("%w for %v", ErrPeerSilent, cfg.IdleTimeout))
		return
	case !s.gapSince.IsZero() && now.Sub(s.gapSince) > cfg.ReorderTimeout:
		s.mu.Unlock()
		s.fail(resetLost, fmt.Errorf("%w: seq %d missing for %v", ErrFramesLost, s.rseq, cfg.ReorderTimeout))
		return
	}
	var ka *frame
	if !s.finRecv && now.Sub(s.lastSend) >= cfg.KeepaliveInterval {
		f := s.frameFor(kindWindow)
		f.seqLimit, f.byteLimit = s.advSeq, s.advBytes
		s.lastSend = now
		ka = &f
	}
	s.mu.Unlock()
	if ka != nil {
		s.sendControl(ka)
	}
}

// fail ends the stream with err unless it has already ended, forgets it,
// and resets the peer's end when reason is not 0.
func (s *stream) fail(reason byte, err error) {
	s.mu.Lock()
	if s.fault != nil || s.localClosed {
		s.mu.Unlock()
		return
	}
	s.fault = err
	close(s.done)
	poke(s.readable)
	poke(s.writable)
	s.mu.Unlock()
	s.t.forget(s)
	if reason != 0 {
		s.t.sendReset(s.key, reason)
	}
	s.t.log.Debug("replication stream ended", "peer", s.key.peer.String(), "conn", s.key.id, "err", err)
}

func (s *stream) failure() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.fault != nil {
		return s.fault
	}
	return net.ErrClosed
}

func (s *stream) opError(op string, err error) error {
	if err == io.EOF {
		return err
	}
	return &net.OpError{Op: op, Net: s.local.Network(), Source: s.local, Addr: s.peer, Err: err}
}

// Read reads in-order bytes. It returns io.EOF after the peer's FIN, the
// stream's fault once its data is drained, os.ErrDeadlineExceeded (in a
// net.OpError) when the read deadline passes, net.ErrClosed after Close.
func (s *stream) Read(p []byte) (int, error) {
	for {
		s.mu.Lock()
		if s.localClosed {
			s.mu.Unlock()
			return 0, s.opError("read", net.ErrClosed)
		}
		expiry := s.rdl.done()
		if closed(expiry) {
			s.mu.Unlock()
			return 0, s.opError("read", os.ErrDeadlineExceeded)
		}
		if s.rbuf.Len() > 0 {
			n, _ := s.rbuf.Read(p)
			s.rRead += uint64(n)
			upd := s.windowUpdateLocked()
			s.mu.Unlock()
			if upd != nil {
				s.sendControl(upd)
			}
			return n, nil
		}
		switch {
		case s.finRecv:
			s.mu.Unlock()
			return 0, io.EOF
		case s.fault != nil:
			err := s.fault
			s.mu.Unlock()
			return 0, s.opError("read", err)
		}
		s.mu.Unlock()
		select {
		case <-s.readable:
		case <-expiry:
		case <-s.done:
		}
	}
}

// Write sends p as DATA frames as the peer's credit allows, blocking for
// credit until the write deadline. A frame the Sender refuses is lost,
// which ends the stream.
func (s *stream) Write(p []byte) (int, error) {
	select {
	case s.wsem <- struct{}{}:
	case <-s.wdl.done():
		return 0, s.opError("write", os.ErrDeadlineExceeded)
	case <-s.done:
		return 0, s.opError("write", s.failure())
	}
	defer func() { <-s.wsem }()
	written := 0
	for len(p) > 0 {
		s.mu.Lock()
		expiry := s.wdl.done()
		var err error
		switch {
		case s.localClosed:
			err = net.ErrClosed
		case s.fault != nil:
			err = s.fault
		case closed(expiry):
			err = os.ErrDeadlineExceeded
		case s.sseq == math.MaxUint32:
			err = fmt.Errorf("%w: sequence numbers exhausted", ErrProtocol)
		}
		if err != nil {
			s.mu.Unlock()
			return written, s.opError("write", err)
		}
		credit := 0
		if s.sseq < s.peerSeqLimit && s.peerByteLimit > s.sBytes {
			credit = int(min(s.peerByteLimit-s.sBytes, uint64(s.t.cfg.Segment)))
		}
		if credit == 0 {
			s.mu.Unlock()
			select {
			case <-s.writable:
			case <-expiry:
			case <-s.done:
			}
			continue
		}
		n := min(credit, len(p))
		f := s.frameFor(kindData)
		f.seq, f.payload = s.sseq, p[:n]
		s.sseq++
		s.sBytes += uint64(n)
		s.lastSend = time.Now()
		s.mu.Unlock()
		if err := s.t.send(s.key.peer, &f); err != nil {
			err = fmt.Errorf("%w: %w", ErrFramesLost, err)
			s.fail(resetLost, err)
			return written, s.opError("write", err)
		}
		p = p[n:]
		written += n
	}
	return written, nil
}

// Close ends the stream: blocked calls return net.ErrClosed, the peer gets
// a FIN after everything already written, and later frames from the peer
// are answered with RESET. A second Close returns net.ErrClosed.
func (s *stream) Close() error {
	s.mu.Lock()
	if s.localClosed {
		s.mu.Unlock()
		return s.opError("close", net.ErrClosed)
	}
	s.localClosed = true
	healthy := s.fault == nil && s.isOpen
	if s.fault == nil {
		close(s.done)
	}
	poke(s.readable)
	poke(s.writable)
	s.mu.Unlock()
	s.rdl.stop()
	s.wdl.stop()
	s.t.forget(s)
	if !healthy {
		return nil
	}
	// Wait for a Write in progress to hand over its last frame (it sees
	// done and stops), so the FIN follows it.
	s.wsem <- struct{}{}
	s.mu.Lock()
	fin := s.frameFor(kindFIN)
	fin.seq = s.sseq
	s.sseq++
	s.mu.Unlock()
	err := s.t.send(s.key.peer, &fin)
	<-s.wsem
	if err != nil {
		// The peer will see silence and give up after its IdleTimeout.
		s.t.log.Debug("replication stream FIN not sent", "peer", s.key.peer.String(), "conn", s.key.id, "err", err)
	}
	return nil
}

// LocalAddr returns our address.
func (s *stream) LocalAddr() net.Addr { return s.local }

// RemoteAddr returns the peer's address.
func (s *stream) RemoteAddr() net.Addr { return s.peer }

// SetDeadline sets both deadlines.
func (s *stream) SetDeadline(t time.Time) error {
	s.rdl.set(t)
	s.wdl.set(t)
	return nil
}

// SetReadDeadline sets the deadline for Read; zero means none.
func (s *stream) SetReadDeadline(t time.Time) error { s.rdl.set(t); return nil }

// SetWriteDeadline sets the deadline for Write; zero means none.
func (s *stream) SetWriteDeadline(t time.Time) error { s.wdl.set(t); return nil }

func kindName(k byte) string {
	switch k {
	case kindPacket:
		return "PACKET"
	case kindSYN:
		return "SYN"
	case kindAccept:
		return "ACCEPT"
	case kindData:
		return "DATA"
	case kindWindow:
		return "WINDOW"
	case kindFIN:
		return "FIN"
	case kindReset:
		return "RESET"
	}
	return fmt.Sprintf("kind 0x%02x", k)
}
