package replicate

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"math/rand/v2"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/memberlist"

	"github.com/weavelab/weave/mesh/identity"
)

// Sender carries one message to one peer, as (*mesh.GossipChannel).Unicast
// does. Delivery is best effort; messages to one peer should normally
// arrive in order. Unicast must not block for long and must not hold locks
// of ours: it may call the destination's Deliver before it returns (the
// mesh does so for messages to ourselves).
type Sender interface {
	Unicast(dst identity.PeerName, msg []byte) error
}

var (
	// ErrReset is returned (wrapped, with the peer's reason) by stream
	// operations after the peer reset the stream.
	ErrReset = errors.New("stream reset by peer")
	// ErrPeerSilent ends a stream whose peer sent nothing, not even a
	// keepalive, for TransportConfig.IdleTimeout.
	ErrPeerSilent = errors.New("stream peer went silent")
	// ErrFramesLost ends a stream when a frame is missing for longer than
	// TransportConfig.ReorderTimeout, or could not be sent at all.
	ErrFramesLost = errors.New("stream frames lost")
	// ErrProtocol ends a stream whose peer broke the stream protocol.
	ErrProtocol = errors.New("stream protocol violation")
)

// TransportConfig configures a Transport. Start from DefaultTransportConfig.
type TransportConfig struct {
	// Self is our peer name; required.
	Self identity.PeerName
	// Sender carries our frames; required.
	Sender Sender
	// Logger gets debug records about streams; nil discards them.
	Logger *slog.Logger

	// Segment is the most payload we put in one DATA frame (at most
	// MaxSegment).
	Segment int
	// Window bounds, in bytes, what each stream buffers for its reader
	// (in order or not); the peer may send no more than that ahead of the
	// reader.
	Window int
	// ReorderWindow is how many frames past the first missing one a
	// stream accepts and holds; the peer sends no more than that ahead.
	ReorderWindow int
	// ReorderTimeout is how long a stream waits for a missing frame
	// before it gives the frame up for lost and resets.
	ReorderTimeout time.Duration
	// KeepaliveInterval is how long a stream may send nothing before it
	// sends a WINDOW frame to show it is alive.
	KeepaliveInterval time.Duration
	// IdleTimeout ends a stream that heard nothing from its peer for this
	// long (several KeepaliveIntervals).
	IdleTimeout time.Duration
	// PacketQueue and AcceptQueue bound the packets and streams waiting
	// for memberlist; past them, packets are dropped and streams refused.
	PacketQueue int
	AcceptQueue int
}

// DefaultTransportConfig returns settings for routers on a LAN or a few
// hops apart; Self and Sender are left for the caller.
func DefaultTransportConfig() TransportConfig {
	return TransportConfig{
		Segment:           16 << 10,
		Window:            256 << 10,
		ReorderWindow:     32,
		ReorderTimeout:    2 * time.Second,
		KeepaliveInterval: time.Second,
		IdleTimeout:       5 * time.Second,
		PacketQueue:       1024,
		AcceptQueue:       64,
	}
}

func (c *TransportConfig) validate() error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("replication transport config: "+format, args...)
	}
	switch {
	case c.Self == identity.UnknownPeer:
		return bad("Self is required")
	case c.Sender == nil:
		return bad("Sender is required")
	case c.Segment < 1 || c.Segment > MaxSegment:
		return bad("Segment %d is outside 1..%d", c.Segment, MaxSegment)
	case c.Window < c.Segment:
		return bad("Window %d is smaller than Segment %d", c.Window, c.Segment)
	case c.ReorderWindow < 2 || c.ReorderWindow > 1<<16:
		return bad("ReorderWindow %d is outside 2..65536", c.ReorderWindow)
	case c.ReorderTimeout <= 0 || c.KeepaliveInterval <= 0:
		return bad("ReorderTimeout and KeepaliveInterval must be positive")
	case c.IdleTimeout <= c.KeepaliveInterval:
		return bad("IdleTimeout %v must exceed KeepaliveInterval %v", c.IdleTimeout, c.KeepaliveInterval)
	case c.PacketQueue < 1 || c.AcceptQueue < 1:
		return bad("PacketQueue and AcceptQueue must be positive")
	}
	return nil
}

// Transport is a memberlist.NodeAwareTransport over a message fabric: the
// Sender for output and Deliver for input. Packets map to one message
// each; streams (memberlist's push/pull and joins) are net.Conns built from
// numbered frames, with credit-based flow control, in-order reassembly
// within a small window, FIN, RESET, deadlines, keepalives and an idle
// timeout. Streams assume the fabric rarely loses or reorders messages
// (the mesh's routers relay over TCP): nothing is retransmitted, and a
// stream that loses a frame is reset, which memberlist treats like a
// broken TCP connection (the push/pull is retried at its next interval).
//
// Addresses are the synthetic ones of PeerAddr. Methods are safe for
// concurrent use.
type Transport struct {
	cfg      TransportConfig
	log      *slog.Logger
	self     Addr
	packetCh chan *memberlist.Packet
	streamCh chan net.Conn
	nextID   atomic.Uint32
	dropped  atomic.Uint64 // packets dropped because memberlist lagged
	unsent   atomic.Uint64 // packets the Sender refused

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu      sync.Mutex
	streams map[streamKey]*stream // nil after Shutdown
}

var _ memberlist.NodeAwareTransport = (*Transport)(nil)

// NewTransport returns a running Transport; stop it with Shutdown (which
// memberlist calls from its own Shutdown).
func NewTransport(cfg TransportConfig) (*Transport, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t := &Transport{
		cfg:      cfg,
		log:      log,
		self:     Addr{cfg.Self},
		packetCh: make(chan *memberlist.Packet, cfg.PacketQueue),
		streamCh: make(chan net.Conn, cfg.AcceptQueue),
		ctx:      ctx,
		cancel:   cancel,
		streams:  make(map[streamKey]*stream),
	}
	// Start numbering at random so that a restarted peer's new streams do
	// not collide with ones its peers still remember from the last run.
	t.nextID.Store(rand.Uint32())
	t.wg.Add(1)
	go t.maintain()
	return t, nil
}

// Deliver hands the Transport a message that src sent us with its Sender.
// It never blocks: packets are dropped if memberlist is not keeping up,
// and stream data is bounded by the credit each stream grants. It returns
// an error (wrapping ErrBadFrame) only for malformed input. msg is not
// retained.
func (t *Transport) Deliver(src identity.PeerName, msg []byte) error {
	f, err := decodeFrame(msg)
	if err != nil {
		return fmt.Errorf("from %s: %w", src, err)
	}
	if src == identity.UnknownPeer {
		return fmt.Errorf("%w: from the zero peer", ErrBadFrame)
	}
	if t.ctx.Err() != nil {
		return nil
	}
	if f.kind == kindPacket {
		p := &memberlist.Packet{
			Buf:       append([]byte(nil), f.payload...),
			From:      Addr{src},
			Timestamp: time.Now(),
		}
		select {
		case t.packetCh <- p:
		default:
			t.dropped.Add(1)
			t.log.Debug("replication packet dropped: memberlist is behind", "peer", src.String())
		}
		return nil
	}
	key := streamKey{peer: src, id: f.stream, dialed: f.fromAcceptor}
	t.mu.Lock()
	s := t.streams[key]
	t.mu.Unlock()
	if s != nil {
		s.deliver(&f)
		return nil
	}
	switch f.kind {
	case kindSYN:
		t.accept(key, &f)
	case kindData:
		// The stream is gone (closed or reset here): tell the sender.
		t.sendReset(key, resetUnknown)
	}
	// WINDOW, FIN, RESET and ACCEPT for streams we have forgotten are
	// stragglers of streams that ended; there is nothing to say to them.
	return nil
}

// accept creates the stream that a SYN opens and hands it to memberlist.
func (t *Transport) accept(key streamKey, syn *frame) {
	s := newStream(t, key, true)
	s.peerSeqLimit, s.peerByteLimit = syn.seqLimit, syn.byteLimit
	t.mu.Lock()
	if t.streams == nil {
		t.mu.Unlock()
		t.sendReset(key, resetRefused)
		return
	}
	if t.streams[key] != nil { // a racing duplicate SYN
		t.mu.Unlock()
		return
	}
	t.streams[key] = s
	t.mu.Unlock()
	select {
	case t.streamCh <- s:
	default:
		s.fail(resetRefused, errors.New("accept queue full"))
		t.log.Debug("replication stream refused: accept queue full", "peer", key.peer.String(), "conn", key.id)
		return
	}
	acc := frame{kind: kindAccept, fromAcceptor: true, stream: key.id, seqLimit: s.advSeq, byteLimit: s.advBytes}
	if err := t.send(key.peer, &acc); err != nil {
		s.fail(0, fmt.Errorf("%w: accept: %w", ErrFramesLost, err))
	}
}

func (t *Transport) send(dst identity.PeerName, f *frame) error {
	return t.cfg.Sender.Unicast(dst, f.encode())
}

func (t *Transport) sendReset(key streamKey, reason byte) {
	f := frame{kind: kindReset, fromAcceptor: !key.dialed, stream: key.id, reason: reason}
	_ = t.send(key.peer, &f) // best effort: a peer that misses it times out
}

// forget removes s from the table if it is still there.
func (t *Transport) forget(s *stream) {
	t.mu.Lock()
	if t.streams[s.key] == s {
		delete(t.streams, s.key)
	}
	t.mu.Unlock()
}

// maintain sends keepalives and ends silent or stuck streams.
func (t *Transport) maintain() {
	defer t.wg.Done()
	tick := min(t.cfg.KeepaliveInterval, t.cfg.ReorderTimeout) / 2
	ticker := time.NewTicker(max(tick, time.Millisecond))
	defer ticker.Stop()
	var batch []*stream
	for {
		select {
		case <-t.ctx.Done():
			return
		case now := <-ticker.C:
			batch = batch[:0]
			t.mu.Lock()
			for _, s := range t.streams {
				batch = append(batch, s)
			}
			t.mu.Unlock()
			for _, s := range batch {
				s.tick(now)
			}
		}
	}
}

// FinalAdvertiseAddr returns our synthetic address whatever memberlist was
// configured with. See memberlist.Transport.
func (t *Transport) FinalAdvertiseAddr(string, int) (net.IP, int, error) {
	return net.IP(PeerIP(t.cfg.Self).AsSlice()), AddrPort, nil
}

// WriteTo sends a packet to addr, a PeerAddr. See memberlist.Transport.
func (t *Transport) WriteTo(b []byte, addr string) (time.Time, error) {
	return t.WriteToAddress(b, memberlist.Address{Addr: addr})
}

// WriteToAddress sends a packet to a peer. Like UDP it reports no error
// for a packet that is lost, even one the Sender refused (see Dropped); an
// address that is not a peer's is an error. See
// memberlist.NodeAwareTransport.
func (t *Transport) WriteToAddress(b []byte, a memberlist.Address) (time.Time, error) {
	dst, err := peerOf(a)
	if err != nil {
		return time.Time{}, err
	}
	if len(b) == 0 {
		return time.Time{}, errors.New("replication: empty packet")
	}
	f := frame{kind: kindPacket, payload: b}
	now := time.Now()
	if err := t.send(dst, &f); err != nil {
		// A packet that cannot be sent (no route to the peer, a full
		// queue) is a lost packet, and must look like one: memberlist
		// only suspects a peer whose ping got no ack, and a ping that
		// fails to send with an error other than a UDP or TCP one ends
		// the probe as if nothing had happened. So an unreachable peer
		// would never be declared dead.
		t.log.Debug("replication packet not sent", "peer", dst.String(), "err", err)
		t.unsent.Add(1)
	}
	return now, nil
}

// PacketCh returns the packets peers sent us. It is never closed.
func (t *Transport) PacketCh() <-chan *memberlist.Packet { return t.packetCh }

// DialTimeout opens a stream to addr, a PeerAddr. See memberlist.Transport.
func (t *Transport) DialTimeout(addr string, timeout time.Duration) (net.Conn, error) {
	return t.DialAddressTimeout(memberlist.Address{Addr: addr}, timeout)
}

// DialAddressTimeout opens a stream to a peer and waits for it to accept,
// at most timeout. See memberlist.NodeAwareTransport.
func (t *Transport) DialAddressTimeout(a memberlist.Address, timeout time.Duration) (net.Conn, error) {
	dst, err := peerOf(a)
	if err != nil {
		return nil, err
	}
	opErr := func(err error) error {
		return &net.OpError{Op: "dial", Net: t.self.Network(), Source: t.self, Addr: Addr{dst}, Err: err}
	}
	id := t.nextID.Add(1)
	if id == 0 {
		id = t.nextID.Add(1)
	}
	key := streamKey{peer: dst, id: id, dialed: true}
	s := newStream(t, key, false)
	t.mu.Lock()
	if t.streams == nil {
		t.mu.Unlock()
		return nil, opErr(net.ErrClosed)
	}
	t.streams[key] = s
	t.mu.Unlock()

	syn := frame{kind: kindSYN, stream: id, seqLimit: s.advSeq, byteLimit: s.advBytes}
	if err := t.send(dst, &syn); err != nil {
		s.fail(0, err)
		return nil, opErr(err)
	}
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	select {
	case <-s.established:
		return s, nil
	case <-s.done:
		return nil, opErr(s.failure())
	case <-timer.C:
		s.fail(resetTimeout, os.ErrDeadlineExceeded)
		return nil, opErr(os.ErrDeadlineExceeded)
	}
}

// StreamCh returns the streams peers opened to us. It is never closed.
func (t *Transport) StreamCh() <-chan net.Conn { return t.streamCh }

// Shutdown resets every stream, stops the Transport's goroutine and waits
// for it. Later input is ignored and dials fail. It is idempotent.
func (t *Transport) Shutdown() error {
	t.mu.Lock()
	streams := t.streams
	t.streams = nil
	t.mu.Unlock()
	t.cancel()
	for _, s := range streams {
		s.fail(resetAborted, net.ErrClosed)
	}
	t.wg.Wait()
	return nil
}

// Dropped returns how many packets were dropped: received ones that
// memberlist did not take fast enough, and ones the Sender refused.
func (t *Transport) Dropped() (received, sent uint64) {
	return t.dropped.Load(), t.unsent.Load()
}

// peerOf resolves a memberlist address; a Name, when present, must agree.
func peerOf(a memberlist.Address) (identity.PeerName, error) {
	p, err := ParsePeerAddr(a.Addr)
	if err != nil {
		return 0, err
	}
	if a.Name != "" {
		n, err := identity.ParsePeerName(a.Name)
		if err != nil || n != p {
			return 0, fmt.Errorf("%w: node %q does not live at %s", ErrBadAddr, a.Name, a.Addr)
		}
	}
	return p, nil
}

// satAdd adds without wrapping past the largest uint32.
func satAdd(a uint32, b int) uint32 {
	if uint64(a)+uint64(b) > math.MaxUint32 {
		return math.MaxUint32
	}
	return a + uint32(b)
}
