package overlay

import (
	"context"
	"errors"
	"net"

	"golang.org/x/net/ipv4"

	"github.com/weavelab/weave/mesh/identity"
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
// a flow keep their order. All state is the worker's own: no locks.
type worker struct {
	o    *Overlay
	in   chan *packet
	bufs [][]byte // datagram buffers
	free []int    // indexes of free buffers
	open []pending
	msgs []ipv4.Message
	held []int // buffer index of each msg
	iov  [][1][]byte
	done []*packet
}

func newWorker(o *Overlay) *worker {
	w := &worker{
		o:    o,
		in:   make(chan *packet, workerQueue),
		bufs: make([][]byte, workerBuffers),
		msgs: make([]ipv4.Message, 0, sendBatch),
		held: make([]int, 0, sendBatch),
		iov:  make([][1][]byte, sendBatch),
	}
	for i := range w.bufs {
		w.bufs[i] = make([]byte, dgramBufSize)
		w.free = append(w.free, i)
	}
	return w
}

func (w *worker) run(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case p := <-w.in:
			rt := w.o.routes()
			w.handle(rt, p)
			// Drain what queued up meanwhile so frames share datagrams and
			// datagrams share syscalls.
		drain:
			for range 4 * sendBatch {
				select {
				case p := <-w.in:
					w.handle(rt, p)
				default:
					break drain
				}
			}
			w.finishAll()
			w.flush()
			for _, p := range w.done {
				w.o.putPacket(p)
			}
			clear(w.done)
			w.done = w.done[:0]
		}
	}
}

// handle routes one packet and adds it to the datagram of each next hop.
func (w *worker) handle(rt RouteTable, p *packet) {
	w.done = append(w.done, p)
	if p.dst != identity.UnknownPeer {
		next, ok := rt.Unicast(p.dst)
		if !ok {
			w.o.stats.drop(w.o.stats.peer(p.dst), dropNoRoute, 1)
			return
		}
		if next == p.from {
			w.o.stats.drop(w.o.stats.peer(p.dst), dropLoop, 1)
			return
		}
		w.sendTo(next, p)
		return
	}
	for _, next := range rt.Broadcast(p.src) {
		if next == p.from || next == w.o.cfg.Peer {
			continue
		}
		w.sendTo(next, p)
	}
}

func (w *worker) sendTo(next identity.PeerName, p *packet) {
	c := w.o.peerConn(next)
	if c == nil || !c.usable() {
		w.o.stats.drop(w.o.stats.peer(next), dropNoConn, 1)
		return
	}
	frame := p.buf[:p.n]
	fh := encap.FrameHeader{Src: p.src, Dst: p.dst, HopLimit: p.hop}
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
	if len(w.msgs) == sendBatch {
		w.flush()
	}
	k := len(w.msgs)
	w.iov[k][0] = d
	w.msgs = append(w.msgs, ipv4.Message{Buffers: w.iov[k][:], Addr: c.addr.Load()})
	w.held = append(w.held, bi)
}

func (w *worker) finishAll() {
	for len(w.open) > 0 {
		w.finish(len(w.open) - 1)
	}
}

// flush sends the queued datagrams and frees their buffers.
func (w *worker) flush() {
	for sent := 0; sent < len(w.msgs); {
		n, err := w.o.pc.WriteBatch(w.msgs[sent:], 0)
		if err != nil {
			if !errors.Is(err, net.ErrClosed) {
				w.o.cfg.Logger.Debug("overlay: udp send failed", "addr", w.msgs[sent].Addr.String(), "err", err)
			}
			// skip the datagram that failed (e.g. unreachable) and go on
			w.o.stats.drop(nil, dropSendError, 1)
			n = 1
		}
		sent += n
	}
	for i := range w.msgs {
		w.msgs[i] = ipv4.Message{}
	}
	w.msgs = w.msgs[:0]
	w.free = append(w.free, w.held...)
	w.held = w.held[:0]
}
