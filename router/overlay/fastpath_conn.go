package overlay

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"os"
	"time"

	"github.com/weavelab/weave/mesh/identity"
)

// fastConn is a connection's fast-path state; conn.fastMu guards it.
type fastConn struct {
	st     fastState
	port   uint16 // the peer's VXLAN port from its hello; 0: none
	hello  bool   // the peer's hello arrived
	reason string // why the path is not up ("" while up)
}

// onFastHello records the peer's fast port from its hello.
func (c *conn) onFastHello(port uint16, now time.Time) {
	c.fastMu.Lock()
	defer c.fastMu.Unlock()
	if !c.fast.hello || c.fast.port != port {
		c.fast.st.start = now
	}
	c.fast.hello, c.fast.port = true, port
}

// fastStaticReason says why the connection cannot use the fast path
// whatever the heartbeats do, "" if it could. c.fastMu held.
func (c *conn) fastStaticReasonLocked() string {
	switch {
	case c.sealer != nil:
		return "encrypted: the fast path carries only unencrypted traffic"
	case c.o.cfg.FastPath == nil:
		return "fast path off here (--no-fastdp)"
	case !c.fast.hello:
		return "not yet confirmed: waiting for the peer's overlay hello"
	case c.fast.port == 0:
		return "the peer has no fast path (--no-fastdp there, or an older router)"
	}
	return ""
}

// fastDst is the peer's VXLAN address.
func (c *conn) fastDstLocked() netip.AddrPort {
	return netip.AddrPortFrom(c.addr.Load().AddrPort().Addr().Unmap(), c.fast.port)
}

// fastTick sends a fast-path ping and re-evaluates the path; called by the
// maintenance loop after the connection's own tick.
func (c *conn) fastTick(now time.Time) {
	if c.stopped.Load() {
		return
	}
	c.mu.Lock()
	established, failed := c.established, c.failed != nil
	c.mu.Unlock()
	c.fastMu.Lock()
	reason := c.fastStaticReasonLocked()
	if reason == "" && failed {
		reason = "the connection failed"
	}
	var ping []byte
	var dst netip.AddrPort
	up, changed := false, false
	if reason == "" {
		if ri := c.remoteIndex.Load(); ri != 0 {
			ping = encodeBeatFrame(fastBeat{Type: beatPing, Receiver: ri, Sender: c.o.cfg.Peer, Nonce: c.fast.st.nextPing()})
			dst = c.fastDstLocked()
		}
		up, changed, reason = c.fast.st.eval(now, c.o.cfg.FastPathTimeout)
		if up && !established {
			up, reason = false, "not yet confirmed: the overlay connection is not established"
		}
	} else {
		changed = c.fast.st.up
		c.fast.st.up = false
	}
	c.fast.reason = reason
	c.fastMu.Unlock()
	// The verdict is published before the ping leaves, so that whoever
	// receives the ping sees this tick's state (tests stepping a virtual
	// clock rely on that).
	c.fastUp.Store(up)
	if ping != nil {
		if err := c.o.cfg.FastPath.SendBeat(dst, ping); err != nil {
			c.o.cfg.Logger.Debug("overlay: fast-path heartbeat send failed", "peer", c.remote.String(), "addr", dst.String(), "err", err)
		}
	}
	if changed {
		if up {
			c.o.cfg.Logger.Info("overlay: fast path up", "peer", c.remote.String(), "addr", dst.String(), "conn", c.localIndex)
		} else {
			c.o.cfg.Logger.Info("overlay: fast path down, using the userspace path", "peer", c.remote.String(), "conn", c.localIndex, "reason", reason)
		}
	}
}

// onFastBeat handles a heartbeat that arrived through the VXLAN device.
func (c *conn) onFastBeat(b fastBeat, now time.Time) {
	c.fastMu.Lock()
	if c.fastStaticReasonLocked() != "" {
		c.fastMu.Unlock()
		return
	}
	var pong []byte
	dst := c.fastDstLocked()
	switch b.Type {
	case beatPing:
		c.fast.st.onPing(now)
		if ri := c.remoteIndex.Load(); ri != 0 {
			pong = encodeBeatFrame(fastBeat{Type: beatPong, Receiver: ri, Sender: c.o.cfg.Peer, Nonce: b.Nonce})
		}
	case beatPong:
		c.fast.st.onPong(now, b.Nonce)
	}
	c.fastMu.Unlock()
	if pong != nil {
		if err := c.o.cfg.FastPath.SendBeat(dst, pong); err != nil {
			c.o.cfg.Logger.Debug("overlay: fast-path heartbeat send failed", "peer", c.remote.String(), "addr", dst.String(), "err", err)
		}
	}
}

// fastStatus returns the path the connection's unicast frames take and,
// for the sleeve, why.
func (c *conn) fastStatus() (path, reason string) {
	c.fastMu.Lock()
	reason = c.fast.reason
	if reason == "" && !c.fastUp.Load() {
		reason = c.fastStaticReasonLocked()
		if reason == "" {
			reason = "not yet confirmed"
		}
	}
	c.fastMu.Unlock()
	if c.fastUp.Load() {
		if next, ok := c.o.routes().Unicast(c.remote); !ok || next != c.remote {
			return PathSleeve, "the route to the peer is not direct"
		}
		return PathFastDP, ""
	}
	return PathSleeve, reason
}

// fastRecvLoop reads fast-path heartbeats from the VXLAN device until ctx
// ends (Close closes the device's socket, which unblocks it).
func (o *Overlay) fastRecvLoop(ctx context.Context) {
	fp := o.cfg.FastPath
	buf := make([]byte, 256)
	for {
		n, err := fp.RecvBeat(buf)
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, os.ErrClosed) || errors.Is(err, net.ErrClosed) {
				return
			}
			o.cfg.Logger.Warn("overlay: fast-path heartbeat receive failed", "err", err)
			if !o.pause(ctx, 100*time.Millisecond) {
				return
			}
			continue
		}
		b, err := decodeBeat(buf[:n])
		if err != nil {
			continue
		}
		c := o.conns.get(b.Receiver)
		if c == nil || c.remote != b.Sender || c.stopped.Load() {
			continue
		}
		c.onFastBeat(b, o.cfg.Clock.Now())
	}
}

// fastPeers returns the underlay address of every peer whose frames may
// take the fast path now: a confirmed, unencrypted connection whose fast
// path is up, and a direct route.
func (o *Overlay) fastPeers() map[identity.PeerName]netip.Addr {
	out := map[identity.PeerName]netip.Addr{}
	rt := o.routes()
	for p, c := range *o.peers.Load() {
		if !c.fastUp.Load() || c.sealer != nil || c.stopped.Load() {
			continue
		}
		if next, ok := rt.Unicast(p); !ok || next != p {
			continue
		}
		out[p] = c.addr.Load().AddrPort().Addr().Unmap()
	}
	return out
}
