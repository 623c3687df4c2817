package overlay

import (
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/weavelab/weave/mesh"
	"github.com/weavelab/weave/mesh/handshake"
	"github.com/weavelab/weave/mesh/identity"
	"github.com/weavelab/weave/router/overlay/encap"
)

const maxConns = 1 << 16

// connTable finds a connection by the receiver index in a datagram header
// with one atomic load: the low 16 bits pick a slot, the high 16 bits must
// match too, so that a stale index of a stopped connection matches nothing.
// Indexes are random (crypto/rand: slot and high bits), non-zero and unique
// among live connections, so an off-path sender cannot guess one: before,
// they were handed out in sequence (0x00010001, 0x00020002, ...).
type connTable struct {
	slots [maxConns]atomic.Pointer[conn]
	mu    sync.Mutex
	live  map[*conn]struct{}
	// rand is the source of indexes (crypto/rand.Reader); tests replace it.
	rand io.Reader
}

func (t *connTable) get(index uint32) *conn {
	c := t.slots[index&(maxConns-1)].Load()
	if c == nil || c.localIndex != index {
		return nil
	}
	return c
}

var errTooManyConns = errors.New("overlay: too many connections")

// add gives c a fresh random index and makes it findable.
func (t *connTable) add(c *conn) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.live == nil {
		t.live = make(map[*conn]struct{})
	}
	if len(t.live) >= maxConns-1 {
		return errTooManyConns
	}
	src := t.rand
	if src == nil {
		src = rand.Reader
	}
	var b [4]byte
	for {
		if _, err := io.ReadFull(src, b[:]); err != nil {
			return fmt.Errorf("overlay: random connection index: %w", err)
		}
		index := binary.BigEndian.Uint32(b[:])
		slot := index & (maxConns - 1)
		// Slot 0 keeps every index non-zero (0 means "no index yet");
		// a free slot keeps indexes unique. With fewer than maxConns-1
		// live connections some slot is free, and while the table is
		// not nearly full a draw or two finds one.
		if slot == 0 || t.slots[slot].Load() != nil {
			continue
		}
		c.localIndex = index
		t.slots[slot].Store(c)
		t.live[c] = struct{}{}
		return nil
	}
}

func (t *connTable) remove(c *conn) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.slots[c.localIndex&(maxConns-1)].CompareAndSwap(c, nil)
	delete(t.live, c)
}

func (t *connTable) all() []*conn {
	t.mu.Lock()
	defer t.mu.Unlock()
	cs := make([]*conn, 0, len(t.live))
	for c := range t.live {
		cs = append(cs, c)
	}
	return cs
}

// conn is the data-plane half of one mesh connection.
type conn struct {
	o           *Overlay
	remote      identity.PeerName
	connID      uint64
	localIndex  uint32
	remoteIndex atomic.Uint32
	remoteMax   atomic.Uint32 // remote's max datagram, 0 until its hello
	// addr is where we send: the mesh's RemoteUDP, moved only by an
	// authenticated datagram from elsewhere (never without keys).
	addr        atomic.Pointer[net.UDPAddr]
	sealer      *encap.Sealer // nil without keys
	opener      *encap.Opener
	plainCtr    atomic.Uint64
	ctr         *counters
	sendControl func([]byte) error
	events      mesh.OverlayEvents

	confirmed atomic.Bool
	stopped   atomic.Bool

	pmtu    atomic.Int32 // settled path MTU (IP bytes), 0 until a search settles
	rtt     atomic.Int64 // last heartbeat round trip, nanoseconds
	reprobe atomic.Bool  // search the path MTU again at the next tick
	pmtuMu  sync.Mutex   // guards probe
	probe   pmtuState

	fastMu sync.Mutex // guards fast
	fast   fastConn
	fastUp atomic.Bool // the fast path works both ways (read by syncFastPath)

	mu          sync.Mutex // guards the heartbeat state below
	created     time.Time
	lastHeard   time.Time
	gotBeat     bool // a heartbeat from the remote arrived
	gotAck      bool // the remote acknowledged one of ours
	established bool
	failed      error
}

// AddConnection prepares the UDP side of a connection whose handshake
// completed: it allocates a receiver index and sends it (with our maximum
// datagram size) to the remote over p.SendControl. Heartbeats start once the
// remote's index arrives; p.Events hears Established or Failed. With
// p.Keys, datagrams are sealed with p.Suite for every key epoch; keys with
// no suite or one encap does not know (an error wrapping encap.ErrSuite),
// or a suite without keys, are refused.
func (o *Overlay) AddConnection(p mesh.OverlayConnParams) (mesh.OverlayConn, error) {
	if p.Remote.Name == identity.UnknownPeer || p.Remote.Name == o.cfg.Peer {
		return nil, fmt.Errorf("overlay: add connection: bad remote peer %s", p.Remote.Name)
	}
	ip := p.RemoteUDP.Addr().Unmap()
	if !ip.Is4() || p.RemoteUDP.Port() == 0 {
		return nil, fmt.Errorf("overlay: add connection to %s: remote UDP address %s: want IPv4 host:port", p.Remote, p.RemoteUDP)
	}
	if p.Events == nil || p.SendControl == nil {
		return nil, errors.New("overlay: add connection: events and send control required")
	}
	now := o.cfg.Clock.Now()
	c := &conn{
		o: o, remote: p.Remote.Name, connID: p.ConnID,
		sendControl: p.SendControl, events: p.Events,
		created: now, lastHeard: now,
	}
	c.addr.Store(net.UDPAddrFromAddrPort(netip.AddrPortFrom(ip, p.RemoteUDP.Port())))
	var secret [4]byte
	if _, err := rand.Read(secret[:]); err != nil {
		return nil, fmt.Errorf("overlay: add connection to %s: %w", p.Remote, err)
	}
	c.fast.st.secret = binary.BigEndian.Uint32(secret[:])
	switch {
	case p.Keys == nil && p.Suite != 0:
		// The handshake settled on a cipher but handed no keys: sending
		// plain would contradict what both ends agreed.
		return nil, fmt.Errorf("overlay: add connection to %s: cipher suite %s without data keys", p.Remote, p.Suite)
	case p.Keys != nil:
		var err error
		if c.sealer, err = encap.NewSealer(p.Suite, p.Keys.Send); err != nil {
			return nil, fmt.Errorf("overlay: add connection to %s: data keys: %w", p.Remote, err)
		}
		if c.opener, err = encap.NewOpener(p.Suite, p.Keys.Recv, o.cfg.Clock); err != nil {
			return nil, fmt.Errorf("overlay: add connection to %s: data keys: %w", p.Remote, err)
		}
	}
	if err := o.conns.add(c); err != nil {
		return nil, err
	}
	c.ctr = o.stats.attach(p.Remote.Name)
	hi := hello{Index: c.localIndex, MaxDatagram: uint16(o.maxDatagram())}
	if o.cfg.FastPath != nil {
		hi.FastPort = uint16(o.cfg.FastPath.Port())
	}
	if err := c.sendControl(encodeHello(hi)); err != nil {
		o.conns.remove(c)
		o.stats.detach(p.Remote.Name)
		return nil, fmt.Errorf("overlay: add connection to %s: send hello: %w", p.Remote, err)
	}
	o.cfg.Logger.Debug("overlay connection added", "peer", p.Remote.String(), "addr", p.RemoteUDP.String(), "conn", c.localIndex)
	return c, nil
}

// maxDatagram is the largest UDP payload that leaves this host unfragmented.
func (o *Overlay) maxDatagram() int { return o.cfg.UnderlayMTU - ipv4Header - udpHeader }

// datagramLimit is the largest datagram (header + records, without the tag)
// that the builder may produce for this connection before the kernel would
// have to fragment it.
func (c *conn) datagramLimit() int {
	return c.pathMTU() - ipv4Header - udpHeader - encap.TagLen
}

// maxFrame is the largest frame that travels unfragmented on this connection.
func (c *conn) maxFrame() int { return c.datagramLimit() - encap.HeaderLen - encap.FrameHeaderLen }

// Confirm makes the connection the one used to forward to its remote.
func (c *conn) Confirm() {
	if c.stopped.Load() || c.confirmed.Swap(true) {
		return
	}
	c.o.setPeerConn(c.remote, c, nil)
}

// ControlMessage handles a message the remote sent over TCP.
func (c *conn) ControlMessage(msg []byte) {
	h, err := decodeControl(msg)
	if err != nil {
		c.o.cfg.Logger.Warn("overlay: bad control message", "peer", c.remote.String(), "err", err)
		return
	}
	c.remoteMax.Store(uint32(h.MaxDatagram))
	c.remoteIndex.Store(h.Index)
	now := c.o.cfg.Clock.Now()
	c.onFastHello(h.FastPort, now)
	if c.o.isStarted() {
		c.sendHeartbeat(encap.TypeHeartbeat, uint64(now.UnixNano()))
	}
}

// Rekey installs fresh data keys from the mesh's in-band key exchange:
// the receive key beside the current one (the opener switches when the
// first datagram of its epoch authenticates), then the send key, which
// seals from now on. The mesh gives a receive key to us before the peer
// gets the matching send key, so no datagram is refused across a rekey.
// Called from the mesh connection's reader goroutine; does not block
// (builds at most two AEADs).
func (c *conn) Rekey(u handshake.DataKeyUpdate) {
	if c.sealer == nil || c.opener == nil {
		c.o.cfg.Logger.Warn("overlay: fresh keys for a connection without keys; ignored", "peer", c.remote.String(), "conn", c.localIndex)
		return
	}
	if u.Recv != nil {
		if err := c.opener.Install(u.Epoch, *u.Recv); err != nil {
			c.o.cfg.Logger.Error("overlay: install receive key", "peer", c.remote.String(), "conn", c.localIndex, "epoch", u.Epoch, "err", err)
		}
	}
	if u.Send != nil {
		if err := c.sealer.Install(u.Epoch, *u.Send); err != nil {
			c.o.cfg.Logger.Error("overlay: install send key", "peer", c.remote.String(), "conn", c.localIndex, "epoch", u.Epoch, "err", err)
		}
	}
	c.o.cfg.Logger.Debug("overlay: fresh data keys", "peer", c.remote.String(), "conn", c.localIndex,
		"epoch", u.Epoch, "recv", u.Recv != nil, "send", u.Send != nil)
}

// Stop ends the connection; idempotent. The peer's counters go with its
// last connection.
func (c *conn) Stop() {
	if c.stopped.Swap(true) {
		return
	}
	c.o.conns.remove(c)
	c.o.setPeerConn(c.remote, nil, c)
	c.o.stats.detach(c.remote)
}

// cipher names the connection's cipher suite, "" without keys.
func (c *conn) cipher() string {
	if c.sealer == nil {
		return ""
	}
	return c.sealer.Suite().String()
}

// usable says whether frames may be sent on c now.
func (c *conn) usable() bool { return !c.stopped.Load() && c.remoteIndex.Load() != 0 }

func (c *conn) state() (state, reason string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	switch {
	case c.failed != nil:
		return "failed", c.failed.Error()
	case c.established:
		return "established", ""
	case c.remoteIndex.Load() == 0:
		return "connecting", "waiting for the remote's overlay hello over TCP"
	case !c.gotBeat:
		return "connecting", "no UDP heartbeat from the remote yet"
	default:
		return "connecting", "the remote has not acknowledged our UDP heartbeats yet"
	}
}

// sendHeartbeat sends a heartbeat or heartbeat-ack carrying value.
func (c *conn) sendHeartbeat(t encap.Type, value uint64) {
	ri := c.remoteIndex.Load()
	if ri == 0 || c.stopped.Load() {
		return
	}
	var buf [encap.HeaderLen + 8 + encap.TagLen]byte
	h := encap.Header{Type: t, Receiver: ri, Sender: c.o.cfg.Peer}
	h.Put(buf[:])
	putUint64(buf[encap.HeaderLen:], value)
	d := buf[:encap.HeaderLen+8]
	if err := c.seal(&d); err != nil {
		return
	}
	if err := c.o.writeTo(d, c.addr.Load().AddrPort()); err != nil {
		c.o.cfg.Logger.Debug("overlay: heartbeat send failed", "peer", c.remote.String(), "err", err)
	}
}

// seal seals *d in place (needs TagLen spare capacity) or, without keys,
// stamps a counter.
func (c *conn) seal(d *[]byte) error {
	if c.sealer == nil {
		encap.SetCounter(*d, 0, c.plainCtr.Add(1))
		return nil
	}
	out, err := c.sealer.Seal(*d)
	if err != nil {
		c.o.cfg.Logger.Error("overlay: cannot seal", "peer", c.remote.String(), "err", err)
		return err
	}
	*d = out
	return nil
}

func putUint64(b []byte, v uint64) {
	_ = b[7]
	for i := range 8 {
		b[i] = byte(v >> (56 - 8*i))
	}
}

func getUint64(b []byte) uint64 {
	_ = b[7]
	var v uint64
	for i := range 8 {
		v = v<<8 | uint64(b[i])
	}
	return v
}

// onHeartbeat handles an authenticated heartbeat or ack from addr.
func (c *conn) onHeartbeat(t encap.Type, payload []byte, from netip.AddrPort) {
	if len(payload) < 8 {
		c.o.stats.drop(c.ctr, dropMalformed, 1)
		return
	}
	now := c.o.cfg.Clock.Now()
	c.mu.Lock()
	if c.failed != nil {
		c.mu.Unlock()
		return
	}
	c.lastHeard = now
	if t == encap.TypeHeartbeat {
		c.gotBeat = true
	} else {
		c.gotAck = true
	}
	becameEstablished := !c.established && c.gotBeat && c.gotAck
	if becameEstablished {
		c.established = true
	}
	c.mu.Unlock()
	// The remote may sit behind NAT or have moved: answer where it speaks
	// from, but only when the datagram authenticated (with keys), so it is
	// the peer. Without keys anyone can send a heartbeat with the right
	// index and sender, and following it would let one spoofed datagram
	// redirect the whole flow; the address stays what the mesh gave.
	if cur := c.addr.Load(); c.opener != nil && from.IsValid() && cur.AddrPort() != from {
		c.addr.Store(net.UDPAddrFromAddrPort(from))
		c.o.cfg.Logger.Info("overlay: peer's UDP address changed", "peer", c.remote.String(), "addr", from.String())
		c.requestProbe() // another path
	}
	if t == encap.TypeHeartbeat {
		c.sendHeartbeat(encap.TypeHeartbeatAck, getUint64(payload))
	} else if rtt := now.UnixNano() - int64(getUint64(payload)); rtt > 0 && rtt < int64(time.Minute) {
		c.rtt.Store(rtt) // the ack echoes our send time
	}
	if becameEstablished {
		c.o.cfg.Logger.Info("overlay connection established", "peer", c.remote.String(), "addr", c.addr.Load().String(), "conn", c.localIndex, "cipher", c.cipher())
		c.events.Established()
	}
}

// tick runs the connection's periodic work at now (the maintenance tick's
// time): the failure timeout, path MTU discovery and a heartbeat, which
// goes last, so that whoever receives it knows the tick's probes went
// before it (tests stepping a virtual clock rely on that).
func (c *conn) tick(now time.Time) {
	if c.stopped.Load() {
		return
	}
	c.mu.Lock()
	if c.failed != nil {
		c.mu.Unlock()
		return
	}
	var err error
	timeout := c.o.cfg.FailTimeout
	addr := c.addr.Load().String()
	established := c.established
	switch {
	case c.established && now.Sub(c.lastHeard) > timeout:
		err = fmt.Errorf("no UDP heartbeats from %s for %s: is UDP port %d blocked or the peer gone?", addr, timeout, c.addr.Load().Port)
	case !c.established && now.Sub(c.created) > timeout:
		switch {
		case c.remoteIndex.Load() == 0:
			err = fmt.Errorf("no overlay hello from the peer over TCP within %s", timeout)
		case !c.gotBeat:
			err = fmt.Errorf("no UDP heartbeats from %s within %s: is UDP port %d blocked?", addr, timeout, c.addr.Load().Port)
		default:
			err = fmt.Errorf("UDP from %s reaches us but it never acknowledged our heartbeats within %s: is UDP to port %d blocked?", addr, timeout, c.addr.Load().Port)
		}
	}
	c.failed = err
	c.mu.Unlock()
	if err != nil {
		c.o.cfg.Logger.Warn("overlay connection failed", "peer", c.remote.String(), "addr", addr, "conn", c.localIndex, "err", err)
		c.o.setPeerConn(c.remote, nil, c)
		c.events.Failed(err)
		return
	}
	if established {
		c.pmtuTick(now)
	}
	c.sendHeartbeat(encap.TypeHeartbeat, uint64(now.UnixNano()))
}
