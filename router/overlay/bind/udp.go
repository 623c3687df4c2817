package bind

import (
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"

	"golang.org/x/net/ipv4"
)

var _ Bind = (*UDP)(nil)

// Options configures Listen.
type Options struct {
	// SocketBuffer is the SO_RCVBUF/SO_SNDBUF size asked for (0: the
	// kernel's default).
	SocketBuffer int
	// Logger gets warnings about socket tuning (nil: discard).
	Logger *slog.Logger
}

// UDP is a Bind over an IPv4 UDP socket: recvmmsg/sendmmsg (x/net's
// batches), UDP_SEGMENT for offloaded runs where the kernel has it, and
// UDP_GRO on receive. The socket lets the kernel fragment datagrams larger
// than the path MTU (IP_PMTUDISC_DONT).
type UDP struct {
	conn *net.UDPConn
	pc   *ipv4.PacketConn
	lad  netip.AddrPort
	caps Caps
	// scratch holds per-call x/net messages, so that calls from several
	// goroutines allocate nothing.
	scratch sync.Pool
}

// scratchLen is how many messages one x/net call takes; longer batches
// are cut into calls of this size.
const scratchLen = 64

type scratch struct {
	msgs  []ipv4.Message
	addrs []net.UDPAddr
	oob   [][]byte
}

// Listen binds an IPv4 UDP socket to addr (port 0 picks one).
func Listen(addr netip.AddrPort, opt Options) (*UDP, error) {
	log := opt.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	conn, err := net.ListenUDP("udp4", net.UDPAddrFromAddrPort(addr))
	if err != nil {
		return nil, fmt.Errorf("listen udp %s: %w", addr, err)
	}
	if opt.SocketBuffer > 0 {
		if err := tuneSocket(conn, opt.SocketBuffer); err != nil {
			log.Warn("overlay: socket tuning incomplete", "err", err)
		}
	}
	u := &UDP{
		conn: conn,
		pc:   ipv4.NewPacketConn(conn),
		lad:  conn.LocalAddr().(*net.UDPAddr).AddrPort(),
		caps: Caps{GSO: udpGSOSupported(conn), GRO: enableUDPGRO(conn)},
	}
	u.scratch.New = func() any {
		s := &scratch{
			msgs:  make([]ipv4.Message, scratchLen),
			addrs: make([]net.UDPAddr, scratchLen),
			oob:   make([][]byte, scratchLen),
		}
		for i := range s.addrs {
			s.addrs[i].IP = make(net.IP, 4)
			s.oob[i] = make([]byte, max(udpSegmentOOBLen, groOOBLen))
		}
		return s
	}
	return u, nil
}

// Caps implements Bind.
func (u *UDP) Caps() Caps { return u.caps }

// LocalAddr implements Bind.
func (u *UDP) LocalAddr() netip.AddrPort { return u.lad }

// Close implements Bind.
func (u *UDP) Close() error { return u.conn.Close() }

// ReadBatch implements Bind. x/net allocates each message's source
// address: the one allocation per received message left.
func (u *UDP) ReadBatch(msgs []Message) (int, error) {
	s := u.scratch.Get().(*scratch)
	defer u.scratch.Put(s)
	k := min(len(msgs), scratchLen)
	for i := range k {
		s.msgs[i] = ipv4.Message{Buffers: msgs[i].Buffers[:1]}
		if u.caps.GRO {
			s.msgs[i].OOB = s.oob[i][:groOOBLen]
		}
	}
	n, err := u.pc.ReadBatch(s.msgs[:k], 0)
	for i := range n {
		m := &s.msgs[i]
		msgs[i].N, msgs[i].Segment, msgs[i].Addr = m.N, 0, netip.AddrPort{}
		if ua, ok := m.Addr.(*net.UDPAddr); ok {
			msgs[i].Addr = ua.AddrPort()
		}
		if u.caps.GRO && m.NN > 0 {
			if seg := groSize(m.OOB[:m.NN]); seg > 0 && seg < m.N {
				msgs[i].Segment = seg
			}
		}
	}
	clear(s.msgs[:k])
	return n, err
}

// WriteBatch implements Bind.
func (u *UDP) WriteBatch(msgs []Message) (int, error) {
	s := u.scratch.Get().(*scratch)
	defer u.scratch.Put(s)
	sent := 0
	for sent < len(msgs) {
		k := min(len(msgs)-sent, scratchLen)
		for i := range k {
			m := &msgs[sent+i]
			a := &s.addrs[i]
			ip4 := m.Addr.Addr().Unmap().As4()
			a.IP = a.IP[:4]
			copy(a.IP, ip4[:])
			a.Port = int(m.Addr.Port())
			s.msgs[i] = ipv4.Message{Buffers: m.Buffers, Addr: a}
			if len(m.Buffers) > 1 {
				s.msgs[i].OOB = putUDPSegment(s.oob[i], len(m.Buffers[0]))
			}
		}
		n, err := u.pc.WriteBatch(s.msgs[:k], 0)
		clear(s.msgs[:k])
		if n < 0 {
			n = 0
		}
		sent += n
		if err != nil {
			if sent < len(msgs) && len(msgs[sent].Buffers) > 1 && gsoRefused(err) {
				err = fmt.Errorf("%w: %w", ErrGSORefused, err)
			}
			return sent, err
		}
		if n == 0 {
			break
		}
	}
	return sent, nil
}
