package overlay

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"time"

	"golang.org/x/net/ipv4"

	"github.com/weavelab/weave/mesh/identity"
	"github.com/weavelab/weave/router/overlay/encap"
)

const recvBatch = 64 // datagrams per recvmmsg

// receiveLoop reads datagrams in batches (recvmmsg), opens them, delivers
// frames for us to the device in one write per batch, and queues frames for
// others to the send workers. Frames delivered locally alias the receive
// buffers, which are reused only after the device write returns.
func (o *Overlay) receiveLoop(ctx context.Context) {
	msgs := make([]ipv4.Message, recvBatch)
	for i := range msgs {
		msgs[i].Buffers = [][]byte{make([]byte, dgramBufSize)}
		if o.gro {
			msgs[i].OOB = make([]byte, groOOBLen)
		}
	}
	local := make([][]byte, 0, 4*recvBatch)
	for {
		n, err := o.pc.ReadBatch(msgs, 0)
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return
			}
			o.cfg.Logger.Warn("overlay: udp receive failed", "err", err)
			select {
			case <-ctx.Done():
				return
			case <-time.After(10 * time.Millisecond):
			}
			continue
		}
		now := o.clock.Load()
		for i := range n {
			var from netip.AddrPort
			if ua, ok := msgs[i].Addr.(*net.UDPAddr); ok {
				from = ua.AddrPort()
			}
			d := msgs[i].Buffers[0][:msgs[i].N]
			// With UDP GRO one buffer may hold several datagrams of seg
			// bytes each (the last may be shorter).
			seg := len(d)
			if o.gro && msgs[i].NN > 0 {
				if s := groSize(msgs[i].OOB[:msgs[i].NN]); s > 0 && s < len(d) {
					seg = s
					o.groRun.Add(1)
				}
			}
			for off := 0; off < len(d); off += seg {
				local = o.handleDatagram(d[off:min(off+seg, len(d))], from, now, local)
			}
		}
		o.writeDevice(local)
		clear(local)
		local = local[:0]
	}
}

// handleDatagram processes one datagram and appends the frames to deliver
// locally to local.
func (o *Overlay) handleDatagram(d []byte, from netip.AddrPort, now int64, local [][]byte) [][]byte {
	h, err := encap.ParseHeader(d)
	if err != nil {
		o.stats.drop(nil, dropMalformed, 1)
		return local
	}
	c := o.conns.get(h.Receiver)
	if c == nil || c.remote != h.Sender || c.stopped.Load() {
		o.stats.drop(nil, dropUnknownConn, 1)
		return local
	}
	payload := d[encap.HeaderLen:]
	if c.opener != nil {
		payload, err = c.opener.Open(&h, d)
		if err != nil {
			o.stats.drop(c.ctr, openDropReason(err), 1)
			return local
		}
	}
	switch h.Type {
	case encap.TypeHeartbeat, encap.TypeHeartbeatAck:
		c.onHeartbeat(h.Type, payload, from)
		return local
	case encap.TypeProbe:
		c.onProbe(payload, len(d)+ipv4Header+udpHeader)
		return local
	case encap.TypeProbeAck:
		c.onProbeAck(payload)
		return local
	case encap.TypeFrames:
	default:
		return local
	}
	fr := encap.NewFrames(payload)
	for {
		fh, frame, ok := fr.Next()
		if !ok {
			break
		}
		local = o.receiveFrame(c, fh, frame, now, local)
	}
	if fr.Err() != nil {
		o.stats.drop(c.ctr, dropMalformed, 1)
	}
	return local
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
// for us (or broadcast) and relays it if it is for others.
func (o *Overlay) receiveFrame(c *conn, fh encap.FrameHeader, frame []byte, now int64, local [][]byte) [][]byte {
	if fh.Src == o.cfg.Peer {
		o.stats.drop(c.ctr, dropLoop, 1)
		return local
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
		local = append(local, frame)
	}
	if fh.Dst == o.cfg.Peer {
		return local
	}
	if fh.HopLimit <= 1 {
		o.stats.drop(src, dropHopLimit, 1)
		return local
	}
	if len(frame) > o.frameCap {
		o.stats.drop(src, dropOversize, 1)
		return local
	}
	if fh.Dst == identity.UnknownPeer {
		// Only relay a broadcast if the tree from its source has children
		// below us; cheap check before copying.
		if len(o.routes().Broadcast(fh.Src)) == 0 {
			return local
		}
	}
	p := o.getPacket(len(frame))
	p.n = copy(p.buf, frame)
	p.src, p.dst, p.from, p.hop = fh.Src, fh.Dst, c.remote, fh.HopLimit-1
	select {
	case o.workerFor(frame).in <- p:
	default:
		o.putPacket(p)
		o.stats.drop(src, dropQueueFull, 1)
	}
	return local
}
