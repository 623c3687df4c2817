package overlay

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"syscall"

	"github.com/weavelab/weave/mesh/identity"
	"github.com/weavelab/weave/router/overlay/bind"
	"github.com/weavelab/weave/router/overlay/encap"
)

const (
	workerQueue   = 1024 // packets waiting per worker
	sendBatch     = 64   // datagrams per sendmmsg
	workerBuffers = sendBatch + 16
	dgramBufSize  = 1 << 16 // room for one maximal frame plus header and tag
)

// pending is a datagram under construction for one connection.
type pending struct {
	c   *conn
	b   encap.Builder
	buf int // index into worker.bufs
}

// worker packs frames into datagrams per next-hop connection, seals them
// and sends them with sendmmsg. Each flow hashes to one worker, so frames of
// a flow keep their order.
//
// Frames reach a worker by its queue (in), handled by its goroutine, or
// inline on the producer's goroutine (take) when nothing is queued. mu is
// held while either works on the fields below it; queued counts the
// packets put in the queue and not yet sent, so an inline frame never
// overtakes a queued one.
type worker struct {
	o      *Overlay
	in     chan *packet
	queued atomic.Int64

	mu   sync.Mutex // guards everything below
	bufs [][]byte   // datagram buffers
	free []int      // indexes of free buffers
	open []pending
	msgs []bind.Message
	held []int      // buffer indexes of the datagrams in msgs
	dest []*conn    // connection of each msg
	iov  [][][]byte // Buffers of each msg: one datagram, or several with UDP GSO
	// per msg with UDP GSO: datagram size, total bytes, whether a shorter
	// datagram already ended it
	segSize, segBytes []int
	segEnded          []bool
	done              []*packet
	icmp              []byte // scratch for ICMP "fragmentation needed"
}

func newWorker(o *Overlay) *worker {
	w := &worker{
		o:    o,
		in:   make(chan *packet, workerQueue),
		bufs: make([][]byte, workerBuffers),
		msgs: make([]bind.Message, 0, sendBatch),
		held: make([]int, 0, sendBatch),
		dest: make([]*conn, 0, sendBatch),
		iov:  make([][][]byte, sendBatch),

		segSize:  make([]int, sendBatch),
		segBytes: make([]int, sendBatch),
		segEnded: make([]bool, sendBatch),
		icmp:     make([]byte, icmpReplyMax),
	}
	for i := range w.bufs {
		w.bufs[i] = make([]byte, dgramBufSize)
		w.free = append(w.free, i)
	}
	for i := range w.iov {
		w.iov[i] = make([][]byte, 0, bind.MaxGSOSegments)
	}
	return w
}

func (w *worker) run(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case p := <-w.in:
			w.mu.Lock()
			rt := w.o.routes()
			w.handle(rt, p)
			handled := int64(1)
			// Drain what queued up meanwhile so frames share datagrams and
			// datagrams share syscalls.
		drain:
			for range 4 * sendBatch {
				select {
				case p := <-w.in:
					w.handle(rt, p)
					handled++
				default:
					break drain
				}
			}
			w.sendLocked()
			w.queued.Add(-handled)
			w.mu.Unlock()
		}
	}
}

// sendLocked seals and sends the open datagrams and recycles the packets
// handled. w.mu must be held.
func (w *worker) sendLocked() {
	w.finishAll()
	w.flush()
	for _, p := range w.done {
		w.o.putPacket(p)
	}
	clear(w.done)
	w.done = w.done[:0]
}

// enqueue hands p to the worker's goroutine, blocking while the queue is
// full unless block is false (then p is not taken: false) or ctx ends.
func (w *worker) enqueue(ctx context.Context, p *packet, block bool) bool {
	w.queued.Add(1)
	if block {
		select {
		case w.in <- p:
			return true
		case <-ctx.Done():
		}
	} else {
		select {
		case w.in <- p:
			return true
		default:
		}
	}
	w.queued.Add(-1)
	return false
}

// take sends ps, frames whose flows hash to w in the order read, on the
// caller's goroutine when w has nothing queued and nobody works on it, and
// otherwise queues them for w's goroutine, blocking while the queue is
// full (frames left when ctx ends are recycled). Either way w owns them.
// Inline sending spares a frame the hand-off to w's goroutine (latency, and
// on few cores the cost of waking it); it never overtakes a queued frame.
func (w *worker) take(ctx context.Context, ps []*packet) {
	if len(ps) <= w.o.inlineMax && w.queued.Load() == 0 && w.mu.TryLock() {
		if w.queued.Load() == 0 {
			rt := w.o.routes()
			for _, p := range ps {
				w.handle(rt, p)
			}
			w.sendLocked()
			w.mu.Unlock()
			return
		}
		w.mu.Unlock()
	}
	for _, p := range ps {
		if !w.enqueue(ctx, p, true) {
			w.o.putPacket(p)
		}
	}
}

// handle routes one packet and adds it to the datagram of each next hop.
func (w *worker) handle(rt RouteTable, p *packet) {
	w.done = append(w.done, p)
	if p.dst != identity.UnknownPeer {
		next, ok := rt.Unicast(p.dst)
		if !ok {
			w.o.stats.drop(w.o.stats.lookup(p.dst), dropNoRoute, 1)
			return
		}
		if next == p.from {
			w.o.stats.drop(w.o.stats.lookup(p.dst), dropLoop, 1)
			return
		}
		w.sendTo(next, p, true)
		return
	}
	for _, next := range rt.Broadcast(p.src) {
		if next == p.from || next == w.o.cfg.Peer {
			continue
		}
		w.sendTo(next, p, false)
	}
}

// sendTo adds p's frame to the datagrams for next. With only, next is the
// frame's one next hop, so a frame that travels alone may be sealed in
// p's own buffer (sendAlone).
func (w *worker) sendTo(next identity.PeerName, p *packet, only bool) {
	c := w.o.peerConn(next)
	if c == nil || !c.usable() {
		w.o.stats.drop(w.o.stats.lookup(next), dropNoConn, 1)
		return
	}
	frame := p.frame()
	if p.n > c.maxFrame() && !w.tooBig(c, p) {
		return
	}
	fh := encap.FrameHeader{Src: p.src, Dst: p.dst, HopLimit: p.hop}
	if only && 2*(encap.FrameHeaderLen+p.n)+encap.HeaderLen > c.datagramLimit() {
		// No second frame this large would fit its datagram.
		w.sendAlone(c, fh, p)
		return
	}
	i := w.pendingFor(c)
	if i < 0 {
		w.o.stats.drop(c.ctr, dropQueueFull, 1)
		return
	}
	if !w.open[i].b.Add(fh, frame) {
		w.finish(i)
		if i = w.pendingFor(c); i < 0 {
			w.o.stats.drop(c.ctr, dropQueueFull, 1)
			return
		}
		if !w.open[i].b.Add(fh, frame) {
			w.o.stats.drop(c.ctr, dropOversize, 1)
			return
		}
	}
	c.ctr.framesOut.Add(1)
	c.ctr.bytesOut.Add(uint64(p.n))
}

// tooBig handles a frame larger than c's path carries in one datagram. A
// unicast IPv4 frame with DF from our own device gets an ICMP
// "fragmentation needed" with the connection's frame MTU, written back to
// the device, and is not sent (tooBig returns false). Any other frame is
// sent alone in a datagram that the kernel (or a router on the path)
// fragments; tooBig counts it and returns true.
func (w *worker) tooBig(c *conn, p *packet) bool {
	if p.from == identity.UnknownPeer && p.dst != identity.UnknownPeer {
		if m := fragNeeded(w.icmp, p.frame(), c.frameMTU()); m > 0 {
			w.o.writeDevice([][]byte{w.icmp[:m]}, 0)
			w.o.stats.fragNeeded.Add(1)
			return false
		}
	}
	w.o.stats.fragmented.Add(1)
	return true
}

// pendingFor returns the index in w.open of the datagram being built for
// c, starting one if needed; -1 when no buffer is free.
func (w *worker) pendingFor(c *conn) int {
	for i := range w.open {
		if w.open[i].c == c {
			return i
		}
	}
	if len(w.free) == 0 {
		w.flush()
		if len(w.free) == 0 {
			w.finishAll()
			w.flush()
		}
	}
	if len(w.free) == 0 {
		return -1
	}
	bi := w.free[len(w.free)-1]
	w.free = w.free[:len(w.free)-1]
	w.open = append(w.open, pending{c: c, buf: bi})
	i := len(w.open) - 1
	// leave room for the tag at the end of the buffer
	w.open[i].b.Reset(w.bufs[bi][:dgramBufSize-encap.TagLen],
		encap.Header{Receiver: c.remoteIndex.Load(), Sender: w.o.cfg.Peer}, c.datagramLimit())
	return i
}

// finish seals the datagram w.open[i] and queues it for sending; it is
// removed from w.open (the last open datagram takes index i).
func (w *worker) finish(i int) {
	pd := w.open[i]
	last := len(w.open) - 1
	w.open[i] = w.open[last]
	w.open[last] = pending{}
	w.open = w.open[:last]
	c, bi, frames := pd.c, pd.buf, pd.b.Frames()
	if frames == 0 {
		w.free = append(w.free, bi)
		return
	}
	d := w.bufs[bi][:pd.b.Len()]
	if err := c.seal(&d); err != nil {
		w.o.stats.drop(c.ctr, dropSendError, uint64(frames))
		w.free = append(w.free, bi)
		return
	}
	w.queue(c, d, bi)
}

// sendAlone sends p's frame in a datagram of its own, made around the
// frame in p's buffer and sealed there: no copy. The datagram being built
// for c goes first, so that c's frames keep their order. p's frame is
// gone afterwards (sealed), so p must have no other next hop.
func (w *worker) sendAlone(c *conn, fh encap.FrameHeader, p *packet) {
	for i := range w.open {
		if w.open[i].c == c {
			w.finish(i)
			break
		}
	}
	d := encap.PutSingle(p.buf, encap.Header{Receiver: c.remoteIndex.Load(), Sender: w.o.cfg.Peer}, fh, p.n)
	if err := c.seal(&d); err != nil {
		w.o.stats.drop(c.ctr, dropSendError, 1)
		return
	}
	c.ctr.framesOut.Add(1)
	c.ctr.bytesOut.Add(uint64(p.n))
	w.queue(c, d, -1)
}

// queue adds the sealed datagram d for c to the next sendmmsg: to the
// message before it when both go to c and UDP GSO may join them, else as
// a message of its own. bi is the index of d's buffer in w.bufs, freed
// after the send, or -1 when d lies in a packet (recycled after the send,
// see sendLocked).
func (w *worker) queue(c *conn, d []byte, bi int) {
	if k := len(w.msgs) - 1; k >= 0 && w.o.gso.Load() && w.dest[k] == c && w.gsoFits(k, c, len(d)) {
		// one more datagram of the same message (UDP GSO)
		if bi >= 0 {
			w.held = append(w.held, bi)
		}
		w.iov[k] = append(w.iov[k], d)
		w.msgs[k].Buffers = w.iov[k]
		w.segBytes[k] += len(d)
		w.segEnded[k] = len(d) < w.segSize[k]
		return
	}
	if len(w.msgs) == sendBatch {
		w.flush()
	}
	if bi >= 0 {
		w.held = append(w.held, bi)
	}
	k := len(w.msgs)
	w.iov[k] = append(w.iov[k][:0], d)
	w.msgs = append(w.msgs, bind.Message{Buffers: w.iov[k], Addr: c.addr.Load().AddrPort()})
	w.dest = append(w.dest, c)
	w.segSize[k], w.segBytes[k], w.segEnded[k] = len(d), len(d), false
}

// gsoFits says whether a datagram of n bytes for c may join message k.
func (w *worker) gsoFits(k int, c *conn, n int) bool {
	return !w.segEnded[k] && n <= w.segSize[k] && len(w.iov[k]) < bind.MaxGSOSegments &&
		w.segBytes[k]+n <= bind.MaxGSOBytes &&
		w.segSize[k] <= c.pathMTU()-ipv4Header-udpHeader // the kernel does not fragment GSO segments
}

func (w *worker) finishAll() {
	for len(w.open) > 0 {
		w.finish(len(w.open) - 1)
	}
}

// flush sends the queued datagrams and frees their buffers.
func (w *worker) flush() {
	for sent := 0; sent < len(w.msgs); {
		n, err := w.o.bind.WriteBatch(w.msgs[sent:])
		if err != nil && len(w.msgs[sent].Buffers) > 1 && !errors.Is(err, net.ErrClosed) {
			w.sendSegments(sent, err)
			n, err = 1, nil
		}
		if err != nil {
			if !errors.Is(err, net.ErrClosed) {
				w.o.cfg.Logger.Debug("overlay: udp send failed", "addr", w.msgs[sent].Addr.String(), "err", err)
			}
			// skip the datagram that failed (e.g. unreachable) and go on
			w.o.stats.drop(w.dest[sent].ctr, dropSendError, 1)
			if errors.Is(err, syscall.EMSGSIZE) {
				w.dest[sent].requestProbe() // the path narrowed under us
			}
			n = 1
		}
		sent += n
	}
	for i := range w.msgs {
		w.msgs[i] = bind.Message{}
		clear(w.iov[i])
		w.iov[i] = w.iov[i][:0]
	}
	w.msgs = w.msgs[:0]
	w.free = append(w.free, w.held...)
	w.held = w.held[:0]
	clear(w.dest)
	w.dest = w.dest[:0]
}

// sendSegments sends the datagrams of GSO message k one by one after the
// kernel refused the message (err), so no datagram is lost to the refusal.
// A refusal of segmentation itself (bind.ErrGSORefused) turns GSO off for good,
// logged once; others (EMSGSIZE: the path narrowed; unreachable) leave it on.
func (w *worker) sendSegments(k int, err error) {
	if errors.Is(err, bind.ErrGSORefused) && w.o.gso.CompareAndSwap(true, false) {
		w.o.cfg.Logger.Warn("overlay: kernel refused UDP segmentation offload; sending datagrams one by one from now on",
			"addr", w.msgs[k].Addr.String(), "err", err)
	}
	c := w.dest[k]
	addr := w.msgs[k].Addr
	for _, d := range w.msgs[k].Buffers {
		if err := w.o.writeTo(d, addr); err != nil {
			w.o.stats.drop(c.ctr, dropSendError, 1)
			if errors.Is(err, syscall.EMSGSIZE) {
				c.requestProbe()
			}
		}
	}
}

// writeTo sends one datagram (heartbeats, probe acks, and datagrams of a
// refused offloaded run).
func (o *Overlay) writeTo(d []byte, addr netip.AddrPort) error {
	msgs := [1]bind.Message{{Buffers: [][]byte{d}, Addr: addr}}
	_, err := o.bind.WriteBatch(msgs[:])
	return err
}
