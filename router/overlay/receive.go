package overlay

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"sync/atomic"
	"time"

	"github.com/weavelab/weave/mesh/identity"
	"github.com/weavelab/weave/router/overlay/bind"
	"github.com/weavelab/weave/router/overlay/encap"
)

const recvBatch = 64 // messages per ReadBatch

// The receive side is a pipeline, so that several goroutines open (decrypt)
// datagrams while frames still reach the device and the relays in the
// order they arrived:
//
//	receiveLoop: ReadBatch into a free rxBatch -> order and open queues
//	openLoop (Workers of them): open the batch's datagrams, learn MACs,
//	    collect its frames for the device and for relaying
//	deliverLoop: in read order, wait until each batch is opened, write its
//	    frames to the device, hand its relayed frames to the send workers
//
// A batch of one datagram read while nothing is in the pipeline (a ping,
// a heartbeat) is handled on receiveLoop itself: no hand-off on the
// latency path. With Config.Openers 1 (the default below 4 CPUs) there is
// no pipeline: receiveLoop handles every batch. Batches (64 receive
// buffers of 64 KiB each) are made as traffic needs them, at most
// rxBatches.

// rxBatch is one ReadBatch on its way through the pipeline.
type rxBatch struct {
	msgs   []bind.Message
	n      int
	out    rxOut
	opened chan struct{} // one token once openLoop is done with it
}

// rxOut collects what the datagrams of a batch hold: frames for the device
// and copies of frames to relay, in order. Each entry of local is a frame's
// whole record, aliasing the receive buffer: the record header (which the
// device may overwrite with its own, see netdev.Device.Write), then the
// frame.
type rxOut struct {
	local [][]byte
	relay []*packet
}

func newRxBatch() *rxBatch {
	b := &rxBatch{msgs: make([]bind.Message, recvBatch), opened: make(chan struct{}, 1)}
	for i := range b.msgs {
		b.msgs[i].Buffers = [][]byte{make([]byte, dgramBufSize)}
	}
	b.out.local = make([][]byte, 0, 4*recvBatch)
	return b
}

// rxPipeline joins the receive goroutines; made by Start.
type rxPipeline struct {
	free    chan *rxBatch
	open    chan *rxBatch
	order   chan *rxBatch
	made    int          // batches made; receiveLoop only
	pending atomic.Int64 // batches read and not yet delivered
}

func (o *Overlay) rxBatches() int {
	if o.cfg.Openers <= 1 {
		return 1
	}
	return o.cfg.Openers + 2
}

func newRxPipeline(batches int) *rxPipeline {
	return &rxPipeline{
		free:  make(chan *rxBatch, batches),
		open:  make(chan *rxBatch, batches),
		order: make(chan *rxBatch, batches),
	}
}

// receiveLoop reads batches of datagrams and feeds the pipeline.
func (o *Overlay) receiveLoop(ctx context.Context) {
	rx := o.rx
	for {
		var b *rxBatch
		select {
		case b = <-rx.free:
		default:
			if rx.made < o.rxBatches() {
				rx.made++
				b = newRxBatch()
				break
			}
			select {
			case b = <-rx.free:
			case <-ctx.Done():
				return
			}
		}
		n, err := o.bind.ReadBatch(b.msgs)
		if err != nil {
			rx.free <- b
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return
			}
			o.cfg.Logger.Warn("overlay: udp receive failed", "err", err)
			if !o.pause(ctx, 10*time.Millisecond) {
				return
			}
			continue
		}
		b.n = n
		if o.cfg.Openers <= 1 || n == 1 && b.msgs[0].Segment == 0 && rx.pending.Load() == 0 {
			o.openBatch(b)
			o.deliver(&b.out)
			rx.free <- b
			continue
		}
		rx.pending.Add(1)
		rx.order <- b // never blocks: there are no more batches than room
		rx.open <- b
	}
}

// openLoop opens batches handed over by receiveLoop.
func (o *Overlay) openLoop(ctx context.Context) {
	for {
		select {
		case b := <-o.rx.open:
			o.openBatch(b)
			b.opened <- struct{}{}
		case <-ctx.Done():
			return
		}
	}
}

// deliverLoop delivers opened batches in the order they were read.
func (o *Overlay) deliverLoop(ctx context.Context) {
	for {
		var b *rxBatch
		select {
		case b = <-o.rx.order:
		case <-ctx.Done():
			return
		}
		select {
		case <-b.opened:
		case <-ctx.Done():
			return
		}
		o.deliver(&b.out)
		o.rx.pending.Add(-1)
		o.rx.free <- b
	}
}

// openBatch handles the datagrams of b into b.out.
func (o *Overlay) openBatch(b *rxBatch) {
	now := o.coarse.Load() // per batch, not per frame
	for i := range b.n {
		m := &b.msgs[i]
		d := m.Buffers[0][:m.N]
		// With UDP GRO one buffer may hold several datagrams of seg bytes
		// each (the last may be shorter).
		seg := len(d)
		if s := m.Segment; s > 0 && s < len(d) {
			seg = s
		}
		for off := 0; off < len(d); off += seg {
			o.handleDatagram(d[off:min(off+seg, len(d))], m.Addr, now, &b.out)
		}
	}
}

// deliver writes out's local frames to the device (one write) and hands
// its relayed frames to the send workers; out is empty afterwards.
func (o *Overlay) deliver(out *rxOut) {
	o.writeDevice(out.local, encap.FrameHeaderLen)
	clear(out.local)
	out.local = out.local[:0]
	for _, p := range out.relay {
		if !o.workerFor(p.frame()).enqueue(context.Background(), p, false) {
			o.stats.drop(o.stats.lookup(p.from), dropQueueFull, 1)
			o.putPacket(p)
		}
	}
	clear(out.relay)
	out.relay = out.relay[:0]
}

// handleDatagram processes one datagram, adding its frames to out.
func (o *Overlay) handleDatagram(d []byte, from netip.AddrPort, now int64, out *rxOut) {
	h, err := encap.ParseHeader(d)
	if err != nil {
		o.stats.drop(nil, dropMalformed, 1)
		return
	}
	c := o.conns.get(h.Receiver)
	if c == nil || c.remote != h.Sender || c.stopped.Load() {
		o.stats.drop(nil, dropUnknownConn, 1)
		return
	}
	payload := d[encap.HeaderLen:]
	if c.opener != nil {
		payload, err = c.opener.Open(&h, d)
		if err != nil {
			o.stats.drop(c.ctr, openDropReason(err), 1)
			return
		}
	}
	switch h.Type {
	case encap.TypeHeartbeat, encap.TypeHeartbeatAck:
		c.onHeartbeat(h.Type, payload, from)
		return
	case encap.TypeProbe:
		c.onProbe(payload, len(d)+ipv4Header+udpHeader)
		return
	case encap.TypeProbeAck:
		c.onProbeAck(payload)
		return
	case encap.TypeFrames:
	default:
		return
	}
	fr := encap.NewFrames(payload)
	for {
		fh, rec, ok := fr.NextRecord()
		if !ok {
			break
		}
		o.receiveFrame(c, fh, rec, now, out)
	}
	if fr.Err() != nil {
		o.stats.drop(c.ctr, dropMalformed, 1)
	}
}

func openDropReason(err error) dropReason {
	switch {
	case errors.Is(err, encap.ErrReplay):
		return dropReplay
	case errors.Is(err, encap.ErrTooOld):
		return dropTooOld
	case errors.Is(err, encap.ErrEpoch):
		return dropEpoch
	case errors.Is(err, encap.ErrShort):
		return dropMalformed
	default:
		return dropAuth
	}
}

// receiveFrame learns the frame's source MAC, delivers it locally if it is
// for us (or broadcast) and relays it if it is for others. rec is the
// frame's record (header, then frame).
func (o *Overlay) receiveFrame(c *conn, fh encap.FrameHeader, rec []byte, now int64, out *rxOut) {
	frame := rec[encap.FrameHeaderLen:]
	if fh.Src == o.cfg.Peer {
		o.stats.drop(c.ctr, dropLoop, 1)
		return
	}
	src := c.ctr // counters are per connection: the peer that sent the datagram
	src.framesIn.Add(1)
	src.bytesIn.Add(uint64(len(frame)))
	if !isGroupMAC(frame[6:12]) {
		if prev, moved := o.macs.learn(macKey(frame[6:12]), fh.Src, now); moved {
			o.cfg.Logger.Debug("overlay: MAC moved", "mac", net.HardwareAddr(frame[6:12]).String(), "peer", fh.Src.String(), "from", prev.String())
		}
	}
	forUs := fh.Dst == identity.UnknownPeer || fh.Dst == o.cfg.Peer
	if forUs && o.cfg.Device != nil {
		out.local = append(out.local, rec)
	}
	if fh.Dst == o.cfg.Peer {
		return
	}
	if fh.HopLimit <= 1 {
		o.stats.drop(src, dropHopLimit, 1)
		return
	}
	if len(frame) > o.frameCap {
		o.stats.drop(src, dropOversize, 1)
		return
	}
	if fh.Dst == identity.UnknownPeer {
		// Only relay a broadcast if the tree from its source has children
		// below us; cheap check before copying.
		if len(o.routes().Broadcast(fh.Src)) == 0 {
			return
		}
	}
	p := o.getPacket(len(frame))
	p.n = copy(p.room(), frame)
	p.src, p.dst, p.from, p.hop = fh.Src, fh.Dst, c.remote, fh.HopLimit-1
	out.relay = append(out.relay, p)
}
