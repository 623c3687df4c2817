package mesh

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/weavelab/weave/mesh/handshake"
	"github.com/weavelab/weave/mesh/identity"
	"github.com/weavelab/weave/mesh/topology"
)

var (
	errDead      = errors.New("no heartbeat from the peer")
	errQueueFull = errors.New("send queue full")
	errConnGone  = errors.New("connection closed")
)

// conn is one control connection, from the first dial or accept to its end.
// Its two goroutines (reader, writer) live in runConn.
type conn struct {
	r        *Router
	outbound bool
	addr     string // outbound: the target dialled; inbound: remote ip:port
	target   string // outbound: the target's key
	ctx      context.Context
	cancel   context.CancelCauseFunc
	out      chan []byte  // allocated by handshaken
	slot     *pendingSlot // inbound: its place under the pending caps
	lastRecv atomic.Int64 // unix nanos
	ov       atomic.Value // OverlayConn, once registered

	// keyMu orders fresh data keys (from the session's key exchanges) with
	// the overlay connection's registration: keys that come first wait in
	// pendingKeys.
	keyMu       sync.Mutex
	pendingKeys []handshake.DataKeyUpdate
	estFlag     atomic.Bool // overlay said Established

	// Set by the connection goroutine before it posts register; read-only
	// afterwards.
	sess       handshake.Session
	res        handshake.Result
	remoteIP   netip.Addr
	listenPort int

	// Owned by the actor.
	peer        identity.Peer // copy of res.Remote, once registered or ended
	state       string
	reason      string
	since       time.Time
	registered  bool
	established bool
	overlay     OverlayConn
	// known holds the newest stamp of each topology entry the remote is
	// known to hold: sent by us, received from it, or in its last summary.
	// Gossip skips entries the remote already has.
	known topology.Summary
}

func (r *Router) newConn(outbound bool, addr, target string) *conn {
	ctx, cancel := context.WithCancelCause(r.ctx)
	c := &conn{
		r: r, outbound: outbound, addr: addr, target: target,
		ctx: ctx, cancel: cancel,
		state: StateConnecting, since: r.clk.Now(),
	}
	if !outbound {
		c.state = StateHandshake
	}
	return c
}

// remote returns who is at the other end (zero before the handshake).
func (c *conn) remote() identity.Peer { return c.res.Remote }

// advertisedAddr is the address other peers can dial to reach the remote:
// the target we dialled, or for inbound connections the remote's IP with
// the listen port it announced.
func (c *conn) advertisedAddr() string {
	if c.outbound {
		return c.addr
	}
	if !c.remoteIP.IsValid() || c.listenPort == 0 {
		return ""
	}
	return netip.AddrPortFrom(c.remoteIP.Unmap(), uint16(c.listenPort)).String()
}

// status is for the actor (it reads only actor-owned fields).
func (c *conn) status() ConnectionStatus {
	st := ConnectionStatus{
		Peer: c.peer, Addr: c.addr, Outbound: c.outbound,
		State: c.state, Reason: c.reason, Since: c.since,
	}
	if c.registered && c.res.Suite != 0 {
		st.Cipher = c.res.Suite.String()
	}
	return st
}

func (c *conn) topologyConn() topology.Conn {
	return topology.Conn{
		Remote:      c.res.Remote.Name,
		RemoteAddr:  c.advertisedAddr(),
		Outbound:    c.outbound,
		Established: c.established,
	}
}

// enqueue queues msg for the writer without blocking.
func (c *conn) enqueue(msg []byte) error {
	select {
	case c.out <- msg:
		return nil
	case <-c.ctx.Done():
		return errConnGone
	default:
		c.r.stats.dropped.Add(1)
		return errQueueFull
	}
}

// close ends the connection with cause as the reason; idempotent (the
// first cause wins).
func (c *conn) close(cause error) { c.cancel(cause) }

// dataKeys hands fresh data keys to the overlay connection, or keeps them
// until it is registered. Called from the reader goroutine.
func (c *conn) dataKeys(u handshake.DataKeyUpdate) {
	c.keyMu.Lock()
	defer c.keyMu.Unlock()
	if ov, ok := c.ov.Load().(OverlayConn); ok {
		ov.Rekey(u)
		return
	}
	c.pendingKeys = append(c.pendingKeys, u)
}

// setOverlay publishes the registered overlay connection and gives it the
// keys that arrived before it. Actor only.
func (c *conn) setOverlay(ov OverlayConn) {
	c.keyMu.Lock()
	defer c.keyMu.Unlock()
	c.ov.Store(ov)
	for _, u := range c.pendingKeys {
		ov.Rekey(u)
	}
	c.pendingKeys = nil
}

// runConn owns one connection from the raw net.Conn to its end: handshake,
// hello, registration with the actor, then the reader (here) and the
// writer (its own goroutine). It tells the actor when the connection ends.
func (r *Router) runConn(c *conn, nc net.Conn) {
	err := r.serveConn(c, nc)
	c.cancel(err)
	cause := context.Cause(c.ctx)
	if r.ctx.Err() != nil {
		return
	}
	r.post(func() { r.connEnded(c, cause) })
}

func (r *Router) serveConn(c *conn, nc net.Conn) error {
	if ap, err := netip.ParseAddrPort(nc.RemoteAddr().String()); err == nil {
		c.remoteIP = ap.Addr()
	}
	hctx, cancel := context.WithTimeout(c.ctx, r.cfg.HandshakeTimeout)
	var sess handshake.Session
	var err error
	if c.outbound {
		sess, err = handshake.Client(hctx, nc, r.hcfg)
	} else {
		sess, err = handshake.Server(hctx, nc, r.hcfg)
	}
	cancel()
	if errors.Is(err, handshake.ErrSelf) {
		return errSelf // our own address is among the targets
	}
	if err != nil {
		return fmt.Errorf("handshake: %w", err)
	}
	c.sess = sess
	c.res = sess.Result()
	c.handshaken()
	sess.OnDataKeys(c.dataKeys)
	defer sess.Close()
	stop := context.AfterFunc(c.ctx, func() { sess.Close() })
	defer stop()
	c.lastRecv.Store(r.clk.Now().UnixNano())

	werr := make(chan error, 1)
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		err := c.writeLoop()
		c.cancel(err)
		werr <- err
	}()
	rerr := c.readLoop()
	c.cancel(rerr)
	sess.Close()
	<-werr
	return rerr
}

// writeLoop sends our hello, then queued messages and heartbeats, and
// closes the connection when the peer has been silent for too long.
func (c *conn) writeLoop() error {
	r := c.r
	if err := c.send(encodeHello(r.port)); err != nil {
		return err
	}
	hb := r.clk.NewTicker(r.cfg.HeartbeatInterval)
	defer hb.Stop()
	deadAfter := time.Duration(r.cfg.DeadAfter) * r.cfg.HeartbeatInterval
	heartbeat := []byte{tagHeartbeat}
	for {
		select {
		case m := <-c.out:
			if err := c.send(m); err != nil {
				return err
			}
		case now := <-hb.C():
			if silent := now.Sub(time.Unix(0, c.lastRecv.Load())); silent > deadAfter {
				return fmt.Errorf("%w for %s", errDead, silent.Round(time.Millisecond))
			}
			if err := c.send(heartbeat); err != nil {
				return err
			}
		case <-c.ctx.Done():
			return context.Cause(c.ctx)
		}
	}
}

func (c *conn) send(m []byte) error {
	if err := c.sess.Send(m); err != nil {
		return err
	}
	c.r.stats.sent(m)
	return nil
}

// readLoop receives messages until the connection fails. The first message
// must be the hello; then the actor registers the connection.
func (c *conn) readLoop() error {
	r := c.r
	first := true
	for {
		msg, err := c.sess.Recv()
		if err != nil {
			return err
		}
		c.lastRecv.Store(r.clk.Now().UnixNano())
		r.stats.received(msg)
		if len(msg) == 0 {
			return fmt.Errorf("%w: empty message", errEnvelope)
		}
		tag, body := msg[0], msg[1:]
		if first {
			if tag != tagHello {
				return fmt.Errorf("%w: first message has tag %d, want hello", errEnvelope, tag)
			}
			if c.listenPort, err = decodeHello(body); err != nil {
				return err
			}
			first = false
			// Wait until the actor has registered the connection (or
			// refused it) before reading on: the remote's overlay sends
			// its first control message as soon as it registered its
			// side, and that message must find our OverlayConn in place.
			done := make(chan struct{})
			if !r.post(func() { r.register(c); close(done) }) {
				return ErrClosed
			}
			select {
			case <-done:
			case <-c.ctx.Done():
				return context.Cause(c.ctx)
			}
			continue
		}
		if err := c.dispatch(tag, body); err != nil {
			return err
		}
	}
}

// dispatch handles one message in the reader goroutine. Decoding happens
// here, off the actor; topology changes go to the actor.
func (c *conn) dispatch(tag byte, body []byte) error {
	r := c.r
	switch tag {
	case tagHeartbeat:
	case tagUpdate, tagSummary, tagDigest, tagHave, tagWant, tagBuckets:
		m, err := decodeTopoMsg(tag, body)
		if err != nil {
			return err
		}
		r.post(func() {
			if name := c.remote().Name; r.conns[name] == c {
				r.gossip.receive(name, m)
			}
		})
	case tagOverlay:
		if ov, ok := c.ov.Load().(OverlayConn); ok {
			ov.ControlMessage(body)
		}
	case tagGossip:
		m, err := decodeGossip(body)
		if err != nil {
			return err
		}
		r.onGossip(c, m)
	default:
		// A newer peer may send kinds we do not know; skip them.
		r.log.Debug("unknown message", "peer", c.remote().String(), "tag", tag)
	}
	return nil
}

// connEvents is how the overlay reports on one connection.
type connEvents struct{ c *conn }

func (e connEvents) Established() {
	if e.c.estFlag.CompareAndSwap(false, true) {
		e.c.r.postAsync(func() { e.c.r.markEstablished(e.c) })
	}
}

func (e connEvents) Failed(err error) {
	e.c.close(fmt.Errorf("data path: %w", err))
}
