package overlay

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/weavelab/weave/mesh"
	"github.com/weavelab/weave/mesh/identity"
	"github.com/weavelab/weave/router/overlay/bind"
	"github.com/weavelab/weave/router/overlay/encap"
)

var _ mesh.Overlay = (*Overlay)(nil)

// Overlay is the UDP data plane of one router. Create with New, then Start;
// AddConnection may be called before or after Start. All methods are safe
// for concurrent use.
//
// Goroutines (all owned, stopped by Close): one device reader, Workers send
// workers, the receive pipeline (one UDP reader and, with Openers > 1,
// that many openers and one deliverer: see receive.go), one maintenance loop (heartbeats, timeouts,
// path MTU discovery, MAC expiry), driven by Config.Clock.
type Overlay struct {
	cfg Config

	bind   bind.Bind
	lad    netip.AddrPort
	prober prober      // nil: no path MTU discovery (no CAP_NET_RAW)
	gso    atomic.Bool // send workers may send offloaded runs (UDP GSO)

	conns    connTable
	macs     *macTable
	fastProg *fastProgrammer // nil without a fast path; maintenance goroutine only
	stats    *statsTable

	// peers maps a peer to its confirmed connection; replaced whole on
	// change (copy on write) so the forwarding path reads it with one load.
	peers   atomic.Pointer[map[identity.PeerName]*conn]
	peersMu sync.Mutex

	workers []*worker
	rx      *rxPipeline
	// Packets come in two sizes so that the common frame does not carry
	// (and the pool does not clear) a 64 KiB buffer.
	smallPool, bigPool sync.Pool
	smallCap, frameCap int // frame capacities of small and big packets
	// inlineMax is the most frames of one device read (per worker) that
	// the reader sends itself (worker.take) rather than handing them over.
	inlineMax int

	devMu sync.Mutex // Device.Write is called by one goroutine at a time

	// coarse is the time (unix nanos on cfg.Clock) as of the last
	// maintenance tick: what the frame path stamps on learnt MAC addresses,
	// so that it never calls the clock per frame.
	coarse atomic.Int64

	mu      sync.Mutex // guards the lifecycle below
	started bool
	closed  bool
	cancel  context.CancelFunc
	wg      sync.WaitGroup
}

// packet is one frame travelling from the device reader or the UDP receiver
// to a send worker. Pooled; buf is sized once. The frame sits at
// buf[encap.SingleOffset:][:n], with room for a datagram's headers in front
// and for its tag behind, so a frame that travels alone in a datagram is
// sent from this buffer, sealed in place (see worker.sendAlone).
type packet struct {
	buf  []byte
	n    int
	src  identity.PeerName // origin peer
	dst  identity.PeerName // destination peer, 0 = broadcast
	from identity.PeerName // peer we received it from (relay), 0 = our device
	hop  uint8
}

// New validates cfg and binds the UDP socket unless cfg.Bind is set (so a
// port in use is reported here). It starts no goroutines.
func New(cfg Config) (*Overlay, error) {
	if err := cfg.fill(); err != nil {
		return nil, err
	}
	b, ownSocket := cfg.Bind, false
	if b == nil {
		var err error
		b, err = bind.Listen(netip.AddrPortFrom(cfg.BindAddr, uint16(cfg.UDPPort)),
			bind.Options{SocketBuffer: cfg.SocketBuffer, Logger: cfg.Logger})
		if err != nil {
			return nil, fmt.Errorf("overlay: %w", err)
		}
		ownSocket = true
	}
	o := &Overlay{
		cfg:   cfg,
		bind:  b,
		lad:   b.LocalAddr(),
		macs:  newMACTable(cfg.MACTableSize),
		stats: newStatsTable(),
	}
	empty := map[identity.PeerName]*conn{}
	o.peers.Store(&empty)
	devMTU := 0
	if cfg.Device != nil {
		devMTU = cfg.Device.MTU()
	}
	o.frameCap = min(encap.MaxFrameLen, max(devMTU, cfg.MTU)+ethHeader+4)
	o.smallCap = min(o.frameCap, cfg.MTU+ethHeader+4)
	o.smallPool.New = func() any { return newPacket(o.smallCap) }
	o.bigPool.New = func() any { return newPacket(o.frameCap) }
	o.coarse.Store(cfg.Clock.Now().UnixNano())
	// With a receive pipeline (enough CPUs for hand-offs to pay) the
	// device reader keeps only small reads to itself and leaves bulk to
	// the workers, which seal in parallel; without, it sends whole reads
	// itself whenever their worker is idle (see Config.Openers).
	o.inlineMax = inlineBatch
	if cfg.Openers <= 1 {
		o.inlineMax = math.MaxInt
	}
	if cfg.FastPath != nil {
		o.fastProg = newFastProgrammer(cfg.FastPath, cfg.Logger)
	}
	o.gso.Store(cfg.UDPOffload && b.Caps().GSO)
	if cfg.UDPOffload && !o.gso.Load() {
		cfg.Logger.Info("overlay: no UDP segmentation offload (UDP_SEGMENT) on this kernel; sending datagrams one by one")
	}
	if cfg.Registerer != nil {
		if err := cfg.Registerer.Register(newCollector(o.stats, o.connStates, o.macs)); err != nil {
			b.Close()
			return nil, fmt.Errorf("overlay: register metrics: %w", err)
		}
	}
	// Probes leave by a raw socket beside the data socket, so only an
	// overlay on its own socket probes unless a prober is injected.
	switch {
	case cfg.prober != nil:
		o.prober = cfg.prober
	case ownSocket:
		var err error
		if o.prober, err = newProber(cfg.BindAddr); err != nil {
			o.prober = nil
			cfg.Logger.Warn("overlay: no path MTU discovery; connections use the underlay MTU and let the kernel fragment", "err", err)
		}
	}
	return o, nil
}

// LocalAddr is the bound UDP address (useful when UDPPort was 0).
func (o *Overlay) LocalAddr() netip.AddrPort { return o.lad }

// ContainerMTU is the MTU to give container interfaces (and the bridge).
func (o *Overlay) ContainerMTU() int { return o.cfg.MTU }

// Start launches the overlay's goroutines; they run until Close (or until
// ctx is cancelled, after which Close must still be called).
func (o *Overlay) Start(ctx context.Context) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.closed {
		return errors.New("overlay: start after close")
	}
	if o.started {
		return errors.New("overlay: already started")
	}
	o.started = true
	ctx, o.cancel = context.WithCancel(ctx)
	o.workers = make([]*worker, o.cfg.Workers)
	for i := range o.workers {
		o.workers[i] = newWorker(o)
	}
	for _, w := range o.workers {
		o.goroutine(func() { w.run(ctx) })
	}
	o.rx = newRxPipeline(o.rxBatches())
	o.goroutine(func() { o.receiveLoop(ctx) })
	if o.cfg.Openers > 1 {
		for range o.cfg.Openers {
			o.goroutine(func() { o.openLoop(ctx) })
		}
		o.goroutine(func() { o.deliverLoop(ctx) })
	}
	if o.cfg.Device != nil {
		o.goroutine(func() { o.deviceLoop(ctx) })
	}
	// The ticker is armed here, not in the goroutine, so that the ticks
	// fall at Start + k*HeartbeatInterval on the clock whenever the
	// goroutine gets to run (a virtual clock's ticks are then exact).
	tick, since := o.cfg.Clock.NewTicker(o.cfg.HeartbeatInterval), o.cfg.Clock.Now()
	o.goroutine(func() { o.maintain(ctx, tick, since) })
	if o.cfg.FastPath != nil {
		o.goroutine(func() { o.fastRecvLoop(ctx) })
	}
	// Unblock the blocking reads when ctx ends.
	o.goroutine(func() {
		<-ctx.Done()
		o.bind.Close()
		if o.cfg.Device != nil {
			o.cfg.Device.Close()
		}
		if o.cfg.FastPath != nil {
			o.cfg.FastPath.Close()
		}
	})
	return nil
}

// pause waits d on the overlay's clock (the back-off after a read error);
// it returns false, at once, when ctx ends first.
func (o *Overlay) pause(ctx context.Context, d time.Duration) bool {
	t := o.cfg.Clock.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C():
		return true
	}
}

func (o *Overlay) goroutine(f func()) {
	o.wg.Add(1)
	go func() {
		defer o.wg.Done()
		f()
	}()
}

// Close stops all goroutines and waits for them, closes the UDP socket and
// the device, and stops every connection (without Failed events).
func (o *Overlay) Close() error {
	o.mu.Lock()
	if o.closed {
		o.mu.Unlock()
		return nil
	}
	o.closed = true
	cancel := o.cancel
	o.mu.Unlock()
	for _, c := range o.conns.all() {
		c.Stop()
	}
	if cancel != nil {
		cancel()
	} else {
		o.bind.Close()
		if o.cfg.Device != nil {
			o.cfg.Device.Close()
		}
		if o.cfg.FastPath != nil {
			o.cfg.FastPath.Close()
		}
	}
	o.wg.Wait()
	if o.prober != nil {
		o.prober.Close()
	}
	return nil
}

func (o *Overlay) isStarted() bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.started && !o.closed
}

// newPacket makes a packet for frames of up to frameCap bytes.
func newPacket(frameCap int) *packet {
	return &packet{buf: make([]byte, encap.SingleOffset+frameCap+encap.TagLen)}
}

// frame is the packet's frame.
func (p *packet) frame() []byte { return p.buf[encap.SingleOffset : encap.SingleOffset+p.n] }

// room is where the frame goes: its capacity, without the headroom in
// front and the tag's room behind.
func (p *packet) room() []byte { return p.buf[encap.SingleOffset : len(p.buf)-encap.TagLen] }

// getPacket returns a packet whose room holds at least size bytes
// (size <= o.frameCap).
func (o *Overlay) getPacket(size int) *packet {
	if size <= o.smallCap {
		return o.smallPool.Get().(*packet)
	}
	return o.bigPool.Get().(*packet)
}

func (o *Overlay) putPacket(p *packet) {
	p.n, p.from = 0, 0
	if len(p.buf) == encap.SingleOffset+o.smallCap+encap.TagLen {
		o.smallPool.Put(p)
	} else {
		o.bigPool.Put(p)
	}
}

// peerConn returns the confirmed connection to p, or nil.
func (o *Overlay) peerConn(p identity.PeerName) *conn {
	return (*o.peers.Load())[p]
}

// setPeerConn makes c the connection for its remote (c nil: remove old if
// it is still the current one).
func (o *Overlay) setPeerConn(remote identity.PeerName, c, old *conn) {
	o.peersMu.Lock()
	defer o.peersMu.Unlock()
	cur := *o.peers.Load()
	if c == nil && cur[remote] != old {
		return
	}
	next := make(map[identity.PeerName]*conn, len(cur)+1)
	for k, v := range cur {
		next[k] = v
	}
	if c == nil {
		delete(next, remote)
	} else {
		next[remote] = c
	}
	o.peers.Store(&next)
}

// noRoutes is used while the mesh has no routes yet.
type noRoutes struct{}

func (noRoutes) Unicast(identity.PeerName) (identity.PeerName, bool) {
	return identity.UnknownPeer, false
}
func (noRoutes) Broadcast(identity.PeerName) []identity.PeerName { return nil }

// routes returns the current route table, never nil.
func (o *Overlay) routes() RouteTable {
	if rt := o.cfg.Routes(); rt != nil {
		return rt
	}
	return noRoutes{}
}

// workerFor picks the worker for a frame's flow (see flowHash), so that the
// frames of a flow stay in order.
func (o *Overlay) workerFor(frame []byte) *worker {
	return o.workers[o.workerIndex(frame)]
}

// workerIndex is the index in o.workers of workerFor(frame).
func (o *Overlay) workerIndex(frame []byte) int {
	return int(flowHash(frame) % uint64(len(o.workers)))
}

// flowHash hashes a frame's flow: the MAC pair, plus for IPv4 the addresses
// and, for TCP/UDP, the ports, so that several connections between two
// containers spread over the workers. All fragments of an IPv4 packet hash
// alike (later fragments carry no ports). It reads only those header
// fields, within the frame, whatever the frame holds.
func flowHash(frame []byte) uint64 {
	if len(frame) < 12 {
		return 0
	}
	h := macKey(frame[0:6])*0x9E3779B97F4A7C15 ^ macKey(frame[6:12])*0xC2B2AE3D27D4EB4F
	if ip, ihl, ok := ipv4Packet(frame); ok {
		h ^= uint64(binary.BigEndian.Uint32(ip[12:16]))*0x165667B19E3779F9 ^ uint64(binary.BigEndian.Uint32(ip[16:20]))*0x27D4EB2F165667C5
		if (ip[9] == 6 || ip[9] == 17) && ip[6]&0x3f == 0 && ip[7] == 0 && len(ip) >= ihl+4 {
			h ^= uint64(binary.BigEndian.Uint32(ip[ihl:ihl+4])) * 0x85EBCA77C2B2AE63
		}
	}
	h ^= h >> 29
	return h * 0xBF58476D1CE4E5B9 >> 32
}

// Stats returns a snapshot of the counters and connection states.
func (o *Overlay) Stats() Stats {
	st := Stats{ContainerMTU: o.cfg.MTU, FragNeeded: o.stats.fragNeeded.Load(), Fragmented: o.stats.fragmented.Load()}
	byPeer := map[identity.PeerName]*PeerStats{}
	for p, ct := range o.stats.snapshot() {
		ps := &PeerStats{Peer: p, State: "none", FramesIn: ct.framesIn.Load(), FramesOut: ct.framesOut.Load(),
			BytesIn: ct.bytesIn.Load(), BytesOut: ct.bytesOut.Load(), Drops: dropMap(ct, nil)}
		byPeer[p] = ps
		st.Drops = dropMap(ct, st.Drops)
	}
	st.Drops = dropMap(&o.stats.global, st.Drops)
	st.Drops = dropMap(&o.stats.gone, st.Drops)
	st.MACs, st.MACEvictions = o.macs.len(), o.macs.evictions.Load()
	for _, c := range o.conns.all() {
		ps := byPeer[c.remote]
		if ps == nil {
			continue
		}
		// prefer the confirmed connection when there are several
		if ps.Addr != "" && o.peerConn(c.remote) != c {
			continue
		}
		ps.State, ps.Reason = c.state()
		ps.Addr = c.addr.Load().String()
		ps.Encrypted = c.sealer != nil
		ps.Cipher = c.cipher()
		if c.sealer != nil {
			ps.KeyEpoch = c.sealer.Epoch()
		}
		ps.MaxFrame = c.maxFrame()
		ps.PMTU = c.pathMTU()
		ps.PMTUProbed = c.pmtuProbed()
		ps.Path, ps.PathReason = c.fastStatus()
	}
	for _, ps := range byPeer {
		st.Peers = append(st.Peers, *ps)
	}
	sortPeerStats(st.Peers)
	return st
}

func (o *Overlay) connStates() map[string]int {
	m := map[string]int{}
	for _, c := range o.conns.all() {
		s, _ := c.state()
		m[s]++
	}
	return m
}
