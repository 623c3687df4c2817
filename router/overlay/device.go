package overlay

import (
	"context"
	"errors"
	"net"
	"os"
	"time"

	"github.com/weavelab/weave/mesh/identity"
	"github.com/weavelab/weave/router/overlay/encap"
)

// deviceLoop reads frames from the device in batches, straight into
// pooled packets (each frame behind the headroom of its future datagram),
// learns the local source MACs, picks each frame's destination peer from
// the MAC table, and hands the frames to the send workers by flow. A
// worker with nothing queued and nobody working takes its share of the
// batch on this goroutine (a ping, a request, or bulk while the workers
// keep up): no hand-off, no wake-up of another goroutine. Otherwise the
// frames go to the worker's queue; a full queue blocks this loop
// (back-pressure to the device) rather than dropping.
func (o *Overlay) deviceLoop(ctx context.Context) {
	dev := o.cfg.Device
	bs := max(1, dev.BatchSize())
	pkts := make([]*packet, bs)
	bufs := make([][]byte, bs)
	sizes := make([]int, bs)
	icmp := make([]byte, icmpReplyMax)
	shares := make([][]*packet, len(o.workers)) // this batch's frames per worker
	for i := range shares {
		shares[i] = make([]*packet, 0, bs)
	}
	defer func() {
		for _, p := range pkts {
			if p != nil {
				o.putPacket(p)
			}
		}
	}()
	for {
		for i, p := range pkts {
			if p == nil {
				p = o.getPacket(o.frameCap)
				pkts[i] = p
			}
			// Read writes each frame at offset: the buffer from there is
			// the packet's room.
			bufs[i] = p.buf[:len(p.buf)-encap.TagLen]
		}
		n, err := dev.Read(bufs, sizes, encap.SingleOffset)
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) || errors.Is(err, os.ErrClosed) {
				return
			}
			o.cfg.Logger.Error("overlay: device read failed", "err", err)
			if !o.pause(ctx, 100*time.Millisecond) {
				return
			}
			continue
		}
		now := o.coarse.Load() // per batch, not per frame
		for i := range n {
			p := pkts[i]
			p.n = sizes[i]
			if wi, ok := o.fromDevice(p, now, icmp); ok {
				shares[wi] = append(shares[wi], p)
				pkts[i] = nil // taken; a fresh packet reads in its place
			}
		}
		for wi, share := range shares {
			if len(share) == 0 {
				continue
			}
			o.workers[wi].take(ctx, share)
			clear(share)
			shares[wi] = share[:0]
		}
	}
}

// fromDevice handles one frame read from the device. It returns the index
// of the worker that is to send it, and ok false when the frame goes no
// further (local, runt, answered with ICMP): then p may be reused.
func (o *Overlay) fromDevice(p *packet, now int64, icmp []byte) (wi int, ok bool) {
	frame := p.frame()
	if p.n < ethHeader {
		o.stats.drop(nil, dropRunt, 1)
		return 0, false
	}
	if !isGroupMAC(frame[6:12]) {
		if prev, moved := o.macs.learn(macKey(frame[6:12]), o.cfg.Peer, now); moved {
			o.cfg.Logger.Debug("overlay: MAC moved to us", "mac", net.HardwareAddr(frame[6:12]).String(), "peer", prev.String())
		}
	}
	dst := identity.UnknownPeer
	if !isGroupMAC(frame[0:6]) {
		if owner, ok := o.macs.lookup(macKey(frame[0:6])); ok {
			if owner == o.cfg.Peer {
				return 0, false // local to this host; the bridge delivered it
			}
			dst = owner
		}
	}
	if p.n > o.cfg.MTU+ethHeader {
		if m := fragNeeded(icmp, frame, o.cfg.MTU); m > 0 {
			o.writeDevice([][]byte{icmp[:m]}, 0)
			o.stats.fragNeeded.Add(1)
			return 0, false
		}
		// No DF (or not IPv4): the send worker sends it alone (and counts
		// it); the kernel fragments the datagram on the underlay.
	}
	p.src, p.dst, p.from, p.hop = o.cfg.Peer, dst, identity.UnknownPeer, encap.DefaultHopLimit
	return o.workerIndex(frame), true
}

// inlineBatch is the largest share of a device read that the reader sends
// itself when there is a receive pipeline (Config.Openers > 1): a ping, a
// request, a few ACKs.
const inlineBatch = 4

// writeDevice writes each frames[i][offset:] to the device (which may use
// frames[i][:offset] as headroom); serialised because the device allows one
// writer at a time.
func (o *Overlay) writeDevice(frames [][]byte, offset int) {
	dev := o.cfg.Device
	if dev == nil || len(frames) == 0 {
		return
	}
	o.devMu.Lock()
	defer o.devMu.Unlock()
	for len(frames) > 0 {
		n, err := dev.Write(frames, offset)
		if err != nil {
			if !errors.Is(err, net.ErrClosed) && !errors.Is(err, os.ErrClosed) {
				o.cfg.Logger.Debug("overlay: device write failed", "err", err)
			}
			o.stats.drop(nil, dropDeviceError, uint64(len(frames)-n))
			return
		}
		if n <= 0 {
			o.stats.drop(nil, dropDeviceError, uint64(len(frames)))
			return
		}
		frames = frames[n:]
	}
}
