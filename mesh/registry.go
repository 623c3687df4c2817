package mesh

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"time"

	"github.com/weavelab/weave/mesh/handshake"
	"github.com/weavelab/weave/mesh/identity"
	"github.com/weavelab/weave/mesh/topology"
)

// Reasons for refusing a connection after its handshake.
var (
	errSelf       = errors.New("connection to ourselves")
	errDuplicate  = errors.New("duplicate connection to the same peer")
	errPeerName   = errors.New("duplicate peer name")
	errConnLimit  = errors.New("connection limit reached")
	errOverlayAdd = errors.New("data path setup failed")
)

// acceptLoop accepts inbound connections until the listener closes,
// backing off on errors instead of spinning. Each connection goes through
// the admission gate (admission.go) before anything is spent on it.
func (r *Router) acceptLoop(ln net.Listener) {
	gate := newAdmission(r.cfg, r.clk.Now, r.log)
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		gate.run(r.ctx)
	}()
	var delay time.Duration
	for {
		nc, err := ln.Accept()
		if err != nil {
			if r.ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return
			}
			delay = min(max(2*delay, 5*time.Millisecond), time.Second)
			r.log.Warn("accept failed", "err", err, "retry_in", delay)
			select {
			case <-time.After(delay):
				continue
			case <-r.ctx.Done():
				return
			}
		}
		delay = 0
		slot, err := gate.admit(sourceAddr(nc.RemoteAddr()), nc.RemoteAddr())
		if err != nil {
			refuse(nc)
			continue
		}
		slot.onEvict(func() { refuse(nc) })
		r.wg.Add(1)
		go func() {
			defer r.wg.Done()
			r.serveInbound(gate, slot, nc)
		}()
	}
}

// register admits a connection whose handshake and hello completed, or
// refuses it. Of two connections between the same pair of peers, both ends
// keep the same one (keepFirst), so they agree without talking. Actor only.
func (r *Router) register(c *conn) {
	if c.ctx.Err() != nil {
		return
	}
	remote := c.remote()
	our := r.cfg.Peer
	c.peer = remote
	c.state, c.since = StateHandshake, r.clk.Now()
	if remote.Name == our.Name {
		if remote.UID == our.UID {
			c.close(errSelf)
		} else {
			c.close(fmt.Errorf("%w: %s is also used by another peer (uid %d)", errPeerName, remote.Name, remote.UID))
		}
		return
	}
	if old := r.conns[remote.Name]; old != nil {
		if old.remote().UID != remote.UID {
			c.close(fmt.Errorf("%w: already connected to %s with uid %d, this one has uid %d", errPeerName, remote.Name, old.remote().UID, remote.UID))
			return
		}
		if keepFirst(old, c, our.Name) {
			c.close(errDuplicate)
			return
		}
		old.close(errDuplicate)
		r.unregister(old)
	}
	if r.cfg.ConnLimit > 0 && len(r.conns) >= r.cfg.ConnLimit {
		c.close(errConnLimit)
		return
	}
	if p, ok := r.topo.Get(remote.Name); ok && !p.Key.IsZero() && p.Key != c.res.RemoteKey {
		c.close(fmt.Errorf("%w: %s proved another key than the one its topology entry has", errPeerName, remote.Name))
		return
	}
	udp := netip.AddrPortFrom(c.remoteIP.Unmap(), uint16(c.res.RemoteUDPPort))
	ov, err := r.cfg.Overlay.AddConnection(OverlayConnParams{
		Local:     our,
		Remote:    remote,
		ConnID:    c.res.ConnID,
		Outbound:  c.outbound,
		RemoteUDP: udp,
		Keys:      c.res.DataKeys,
		Suite:     c.res.Suite,
		SendControl: func(msg []byte) error {
			return c.enqueue(envelope(tagOverlay, msg))
		},
		Events: connEvents{c},
	})
	if err != nil {
		c.close(fmt.Errorf("%w: %w", errOverlayAdd, err))
		return
	}
	c.overlay = ov
	c.setOverlay(ov)
	c.registered = true
	r.conns[remote.Name] = c
	ov.Confirm()
	r.neighDirty = true
	if t := r.targets[c.target]; t != nil && c.target != "" {
		t.peer = remote.Name
		r.clearFailed(c.target)
	}
	if !c.outbound {
		// An inbound connection satisfies the target at the remote's
		// advertised address (two hosts given each other, the first dial
		// refused before the other listened): connected, not a failure,
		// and not dialled while the connection lasts.
		if a := c.advertisedAddr(); a != "" {
			if t := r.targets[a]; t != nil && t.conn == nil && !t.self {
				t.peer, t.attempts, t.lastErr = remote.Name, 0, ""
				r.clearFailed(a)
			}
		}
	}
	r.makerDirty = true
	r.log.Info("connection added", "conn", c.res.ConnID, "addr", c.addr, "remote", remote.String(), "outbound", c.outbound)
	// Topology gossip starts with a summary exchange; the gossip channels
	// send their state.
	r.gossip.setLink(c.topologyConn())
	r.channels.sendAllState(c)
}

// keepFirst decides between two connections to the same peer, the same way
// on both ends and without anything either end can grind: the one dialled by
// the peer with the lower name stays. (Before names were proven by the
// handshake, the lower connection ID won, and an impostor could draw nonces
// until its connection displaced the real one.) Two connections dialled by
// the same end, which only its own reconnects make, keep the lower ID.
func keepFirst(a, b *conn, our identity.PeerName) bool {
	dialer := func(c *conn) identity.PeerName {
		if c.outbound {
			return our
		}
		return c.remote().Name
	}
	if da, db := dialer(a), dialer(b); da != db {
		return da < db
	}
	return a.res.ConnID <= b.res.ConnID
}

// markEstablished records that the overlay reported the data path up.
func (r *Router) markEstablished(c *conn) {
	if !c.registered || c.established || r.conns[c.remote().Name] != c {
		return
	}
	c.established = true
	c.state, c.reason, c.since = StateEstablished, "", r.clk.Now()
	r.gossip.setLink(c.topologyConn())
	if t := r.targets[c.target]; t != nil && c.target != "" {
		t.attempts, t.lastErr = 0, ""
	}
}

// unregister removes a registered connection from the topology's view.
func (r *Router) unregister(c *conn) {
	if !c.registered {
		return
	}
	c.registered = false
	if r.conns[c.remote().Name] == c {
		delete(r.conns, c.remote().Name)
	}
	c.overlay.Stop()
	r.gossip.dropLink(c.remote().Name)
	r.neighDirty, r.makerDirty = true, true
}

// connEnded runs when a connection's goroutines have finished. Actor only.
// clearFailed drops the remembered failed dials of addr, now that a
// connection serves it: status shows what is wrong now, not what was.
// Actor only.
func (r *Router) clearFailed(addr string) {
	r.failed = slices.DeleteFunc(r.failed, func(st ConnectionStatus) bool { return st.Outbound && st.Addr == addr })
}

func (r *Router) connEnded(c *conn, cause error) {
	delete(r.attempts, c)
	c.peer = c.remote() // the connection's goroutines have finished
	wasEstablished := c.established
	r.unregister(c)
	if other := r.conns[c.remote().Name]; c.remote().Name != identity.UnknownPeer && other != nil &&
		other.remote().UID == c.remote().UID && !errors.Is(cause, errDuplicate) {
		// We are connected to the same run of its peer by another
		// connection: this one lost the tie-break at the other end,
		// which closed it before we saw both.
		cause = fmt.Errorf("%w (%v)", errDuplicate, cause)
	}
	reason := "closed"
	if cause != nil {
		reason = cause.Error()
	}
	// A connection to ourselves (shown as its target's state), the
	// loser of a duplicate tie-break (its peer is connected) and a dial
	// to a target forgotten meanwhile are not failures worth a line in
	// status.
	forgotten := c.outbound && !wasEstablished && c.target != "" && r.targets[c.target] == nil
	if !errors.Is(cause, errSelf) && !errors.Is(cause, errDuplicate) && !forgotten {
		st := c.status()
		st.State, st.Reason, st.Since = StateFailed, reason, r.clk.Now()
		if !c.outbound {
			// A peer that keeps failing comes back from a new port
			// each time: one line per source address, the latest.
			host := addrHost(st.Addr)
			r.failed = slices.DeleteFunc(r.failed, func(f ConnectionStatus) bool { return !f.Outbound && addrHost(f.Addr) == host })
		}
		r.failed = append(r.failed, st)
		if len(r.failed) > maxFailed {
			r.failed = r.failed[len(r.failed)-maxFailed:]
		}
	}
	level := r.log.Info
	switch {
	case errors.Is(cause, errSelf):
		level = r.log.Debug
	case !c.outbound && c.sess == nil:
		// A failed inbound handshake: the admission gate logs those,
		// rate-limited by source (admission.go).
		level = func(string, ...any) {}
	case errors.Is(cause, handshake.ErrWrongPassword), errors.Is(cause, handshake.ErrPasswordMismatch),
		errors.Is(cause, handshake.ErrCipher), errors.Is(cause, handshake.ErrIdentity):
		level = r.log.Error
	case errors.Is(cause, errDuplicate), errors.Is(cause, context.Canceled):
		level = r.log.Debug
	}
	level("connection closed", "conn", c.res.ConnID, "addr", c.addr, "remote", c.remote().String(), "reason", reason)
	if c.target != "" {
		r.targetEnded(c, cause, wasEstablished)
	}
}

// ourConns lists our registered connections for our topology entry.
func (r *Router) ourConns() []topology.Conn {
	out := make([]topology.Conn, 0, len(r.conns))
	for _, c := range r.conns {
		out = append(out, c.topologyConn())
	}
	return out
}

// addrHost is the host part of a host:port address (the address itself if
// it has no port).
func addrHost(addr string) string {
	if host, _, err := net.SplitHostPort(addr); err == nil {
		return host
	}
	return addr
}
