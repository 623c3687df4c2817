// Package meshtest provides an in-memory network for mesh simulations: a
// Network of hosts, each a mesh.Transport whose connections are net.Pipe
// pairs carrying ip:port addresses like TCP's. It counts the bytes written
// and can freeze a host (its traffic vanishes, as when a machine hangs) to
// exercise dead-peer detection.
//
// The mesh package's tests assert that *Host implements mesh.Transport.
package meshtest

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/weavelab/weave/mesh/identity"
)

// ErrRefused is returned by Dial when nothing listens at the address.
var ErrRefused = errors.New("connection refused")

// Network is a set of hosts that can reach each other. Safe for concurrent
// use.
type Network struct {
	mu        sync.Mutex
	listeners map[netip.AddrPort]*listener
	hosts     map[netip.Addr]*Host
	dials     map[string]int
	bytes     atomic.Uint64
}

// Dials returns how many times some host dialled addr.
func (n *Network) Dials(addr string) int {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.dials[addr]
}

// NewNetwork returns an empty network.
func NewNetwork() *Network {
	return &Network{listeners: make(map[netip.AddrPort]*listener), hosts: make(map[netip.Addr]*Host), dials: make(map[string]int)}
}

// BytesWritten returns the bytes written on all connections so far.
func (n *Network) BytesWritten() uint64 { return n.bytes.Load() }

// Host returns the host with address ip (which must parse), creating it.
func (n *Network) Host(ip string) *Host {
	a := netip.MustParseAddr(ip)
	n.mu.Lock()
	defer n.mu.Unlock()
	h := n.hosts[a]
	if h == nil {
		h = &Host{n: n, ip: a, nextPort: 32768}
		n.hosts[a] = h
	}
	return h
}

// Host is one machine on the network; it implements mesh.Transport.
type Host struct {
	n        *Network
	ip       netip.Addr
	frozen   atomic.Bool
	mu       sync.Mutex
	nextPort uint16
}

// IP returns the host's address.
func (h *Host) IP() netip.Addr { return h.ip }

// Freeze makes the host's connections black holes in both directions
// (writes succeed but deliver nothing), or undoes that. New dials to or
// from a frozen host time out.
func (h *Host) Freeze(on bool) { h.frozen.Store(on) }

func (h *Host) ephemeralPort() uint16 {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.nextPort++
	if h.nextPort < 32768 {
		h.nextPort = 32768
	}
	return h.nextPort
}

// Listen listens on addr, whose host must be empty or the host's IP.
func (h *Host) Listen(ctx context.Context, addr string) (net.Listener, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, err
	}
	if host != "" && host != h.ip.String() && host != "0.0.0.0" && host != "::" {
		return nil, fmt.Errorf("listen %s: address not on host %s", addr, h.ip)
	}
	p, err := strconv.Atoi(port)
	if err != nil || p < 0 || p > 65535 {
		return nil, fmt.Errorf("listen %s: bad port", addr)
	}
	if p == 0 {
		p = int(h.ephemeralPort())
	}
	ap := netip.AddrPortFrom(h.ip, uint16(p))
	l := &listener{n: h.n, h: h, addr: ap, conns: make(chan net.Conn), done: make(chan struct{})}
	h.n.mu.Lock()
	defer h.n.mu.Unlock()
	if _, busy := h.n.listeners[ap]; busy {
		return nil, fmt.Errorf("listen %s: address in use", ap)
	}
	h.n.listeners[ap] = l
	return l, nil
}

// Dial connects to addr (ip:port).
func (h *Host) Dial(ctx context.Context, addr string) (net.Conn, error) {
	ap, err := netip.ParseAddrPort(addr)
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", addr, err)
	}
	h.n.mu.Lock()
	l := h.n.listeners[ap]
	h.n.dials[addr]++
	h.n.mu.Unlock()
	if l == nil {
		return nil, fmt.Errorf("dial %s: %w", addr, ErrRefused)
	}
	if h.frozen.Load() || l.h.frozen.Load() {
		<-ctx.Done()
		return nil, fmt.Errorf("dial %s: %w", addr, ctx.Err())
	}
	local := netip.AddrPortFrom(h.ip, h.ephemeralPort())
	a, b := net.Pipe()
	client := &pipeConn{Conn: a, n: h.n, local: local, remote: ap, hosts: [2]*Host{h, l.h}}
	server := &pipeConn{Conn: b, n: h.n, local: ap, remote: local, hosts: [2]*Host{l.h, h}}
	select {
	case l.conns <- server:
		return client, nil
	case <-l.done:
		return nil, fmt.Errorf("dial %s: %w", addr, ErrRefused)
	case <-ctx.Done():
		return nil, fmt.Errorf("dial %s: %w", addr, ctx.Err())
	}
}

type listener struct {
	n     *Network
	h     *Host
	addr  netip.AddrPort
	conns chan net.Conn
	once  sync.Once
	done  chan struct{}
}

func (l *listener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *listener) Close() error {
	l.once.Do(func() {
		close(l.done)
		l.n.mu.Lock()
		delete(l.n.listeners, l.addr)
		l.n.mu.Unlock()
	})
	return nil
}

func (l *listener) Addr() net.Addr { return net.TCPAddrFromAddrPort(l.addr) }

// pipeConn is one end of a net.Pipe with TCP-like addresses, byte counting
// and freezing.
type pipeConn struct {
	net.Conn
	n             *Network
	local, remote netip.AddrPort
	hosts         [2]*Host // ours, theirs
}

func (c *pipeConn) Write(b []byte) (int, error) {
	if c.hosts[0].frozen.Load() || c.hosts[1].frozen.Load() {
		return len(b), nil
	}
	n, err := c.Conn.Write(b)
	c.n.bytes.Add(uint64(n))
	return n, err
}

func (c *pipeConn) LocalAddr() net.Addr  { return net.TCPAddrFromAddrPort(c.local) }
func (c *pipeConn) RemoteAddr() net.Addr { return net.TCPAddrFromAddrPort(c.remote) }

// SetDeadline and friends are net.Pipe's; kept explicit for readers.
func (c *pipeConn) SetDeadline(t time.Time) error { return c.Conn.SetDeadline(t) }

// Key returns test peer i's identity key, the same in every run (a seed
// made from i), so tests can name peers before starting them.
func Key(i int) *identity.Key {
	keyCache.Lock()
	defer keyCache.Unlock()
	if k, ok := keyCache.m[i]; ok {
		return k
	}
	var seed [identity.SeedSize]byte
	binary.BigEndian.PutUint64(seed[:], uint64(i))
	copy(seed[8:], "weave mesh test key")
	k, err := identity.KeyFromSeed(seed[:])
	if err != nil {
		panic(err)
	}
	if keyCache.m == nil {
		keyCache.m = make(map[int]*identity.Key)
	}
	keyCache.m[i] = k
	return k
}

// Name is the name of Key(i).
func Name(i int) identity.PeerName { return Key(i).Name() }

var keyCache struct {
	sync.Mutex
	m map[int]*identity.Key
}
