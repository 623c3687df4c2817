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

// deviceLoop reads frames from the device in batches, learns the local
// source MACs, picks each frame's destination peer from the MAC table, and
// hands frames to the send workers by flow. It blocks on a full worker
// queue (back-pressure to the device) rather than dropping. It reads into
// its own buffers, sized for the device's largest frame, and copies each
// frame into a packet of the right size class.
func (o *Overlay) deviceLoop(ctx context.Context) {
	dev := o.cfg.Device
	bs := max(1, dev.BatchSize())
	bufs := make([][]byte, bs)
	for i := range bufs {
		bufs[i] = make([]byte, o.frameCap)
	}
	sizes := make([]int, bs)
	icmp := make([]byte, icmpReplyMax)
	for {
		n, err := dev.Read(bufs, sizes, 0)
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) || errors.Is(err, os.ErrClosed) {
				break
			}
			o.cfg.Logger.Error("overlay: device read failed", "err", err)
			select {
			case <-ctx.Done():
			case <-time.After(100 * time.Millisecond):
			}
			continue
		}
		now := o.clock.Load()
		// A small batch (a ping, a request) goes out on this goroutine
		// when its worker is idle: no hand-off on the latency path. Bulk
		// reads go to the workers, which seal and send in parallel.
		inline := n <= inlineBatch
		for i := range n {
			p := o.getPacket(sizes[i])
			p.n = copy(p.buf, bufs[i][:sizes[i]])
			if !o.fromDevice(ctx, p, now, icmp, inline) {
				o.putPacket(p)
			}
		}
	}
}

// inlineBatch is the largest device read whose frames may be sent without
// a hand-off to the send workers.
const inlineBatch = 4

// fromDevice handles one frame read from the device. It returns true when
// it took ownership of p (queued or sent it), false when p may be reused.
func (o *Overlay) fromDevice(ctx context.Context, p *packet, now int64, icmp []byte, inline bool) bool {
	frame := p.buf[:p.n]
	if p.n < ethHeader {
		o.stats.drop(nil, dropRunt, 1)
		return false
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
				return false // local to this host; the bridge delivered it
			}
			dst = owner
		}
	}
	if p.n > o.cfg.MTU+ethHeader {
		if m := fragNeeded(icmp, frame, o.cfg.MTU); m > 0 {
			o.writeDevice([][]byte{icmp[:m]}, 0)
			o.stats.fragNeeded.Add(1)
			return false
		}
		// No DF (or not IPv4): the send worker sends it alone (and counts
		// it); the kernel fragments the datagram on the underlay.
	}
	p.src, p.dst, p.from, p.hop = o.cfg.Peer, dst, identity.UnknownPeer, encap.DefaultHopLimit
	w := o.workerFor(frame)
	if inline && w.tryInline(p) {
		return true
	}
	return w.enqueue(ctx, p, true)
}

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
