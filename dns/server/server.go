// Package server is the DNS server that every weave router runs, over UDP
// and TCP on one port (github.com/miekg/dns).
//
// It answers names in its domain (default weave.local.) from a name table
// that the caller provides (Names): A and AAAA with every registered
// address, in the table's (shuffled) order, matched case-insensitively and
// answered in the question's case; NXDOMAIN with the zone's SOA for unknown
// names; NODATA (NOERROR, no answer, the SOA) for a known name without an
// address of the asked type; PTR for the table's addresses. Local answers
// carry a short TTL, 1 s by default (DefaultTTL says why), and so do
// negative ones (the SOA's minimum). Zone transfers are REFUSED, ANY in
// the domain gets NOTIMP.
//
// Every other name, reverse names of addresses outside the table and
// single-label names included, goes to the upstream resolvers in order;
// the first that answers wins, and its reply (rcode and all sections) is
// relayed with the client's ID. An upstream that errs, refuses, answers
// SERVFAIL or is silent for its share of the time left is passed over for
// the next. UpstreamTimeout bounds the whole: then the client gets
// SERVFAIL, never silence. Identical questions in flight at the same time
// share one upstream exchange.
//
// UDP answers larger than 512 bytes, or than the client's EDNS0 buffer,
// are truncated with TC set and the client retries over TCP, where
// everything fits; forwarding uses the client's transport.
//
// The server never forwards to itself: see loop.go for the three layers
// (own address dropped from the upstreams, a marker on forwarded queries,
// coalescing of identical questions).
package server

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"syscall"

	"github.com/miekg/dns"
)

// Sizes.
const (
	// ednsSize is the EDNS0 buffer we advertise and the least we ask
	// upstreams for: the DNS flag day 2020 value, safe from
	// fragmentation on any path.
	ednsSize = 1232
	// readSize is the largest UDP query or upstream reply we read.
	readSize = 4096
	// maxExchanges caps concurrent upstream exchanges (one per distinct
	// question in flight): a backstop against loops and floods, far above
	// what a host's containers ask of a healthy upstream.
	maxExchanges = 1024
)

// Server is a running DNS server. Its methods are safe for concurrent use.
type Server struct {
	cfg       Config
	log       *slog.Logger
	domain    string           // canonical, fully qualified
	ttl       uint32           // seconds
	upstreams []netip.AddrPort // own address removed
	token     []byte           // loop marker
	soa       *dns.SOA

	udpConn     *net.UDPConn
	tcpLn       net.Listener
	udpAddr     netip.AddrPort
	tcpAddr     netip.AddrPort
	udp, tcp    *dns.Server
	flights     flights
	exchanges   chan struct{} // semaphore of maxExchanges
	stats       counters
	lastLoopLog lastLog

	mu      sync.Mutex // guards the lifecycle below
	started bool
	closed  bool
	ctx     context.Context // ends on Close; handlers' forwards derive from it
	cancel  context.CancelFunc
	wg      sync.WaitGroup
}

// New validates cfg and binds the UDP and TCP sockets (so that a port in
// use is reported here), on one port. It drops from the upstreams any that
// is the server's own address: its listen IP:port, and when listening on
// every address, the loopback, unspecified and local interface addresses
// on its port (logged as a warning). It starts no goroutines.
func New(cfg Config) (*Server, error) {
	ups, err := cfg.fill()
	if err != nil {
		return nil, err
	}
	s := &Server{
		cfg:       cfg,
		log:       cfg.Logger,
		domain:    cfg.Domain,
		ttl:       uint32(cfg.TTL.Seconds()),
		token:     make([]byte, loopTokenLen),
		exchanges: make(chan struct{}, maxExchanges),
	}
	rand.Read(s.token)
	s.soa = &dns.SOA{
		Hdr:  dns.RR_Header{Name: s.domain, Rrtype: dns.TypeSOA, Class: dns.ClassINET, Ttl: s.ttl},
		Ns:   s.domain,
		Mbox: "hostmaster." + s.domain,
		// The zone changes with every container and is never
		// transferred, so the serial means nothing; the timers are
		// those of a zone nobody slaves, and Minttl, the negative
		// TTL, is ours.
		Serial: 1, Refresh: 3600, Retry: 600, Expire: 86400, Minttl: s.ttl,
	}
	s.flights.m = make(map[flightKey]*flight)
	if err := s.listen(cfg.ListenAddr); err != nil {
		return nil, err
	}
	var local []netip.Addr
	if s.udpAddr.Addr().IsUnspecified() {
		local = localAddrs()
	}
	for _, up := range ups {
		if isSelf(up, s.udpAddr, local) {
			s.log.Warn("dns: not forwarding to our own address", "addr", up.String())
			continue
		}
		s.upstreams = append(s.upstreams, up)
	}
	if len(s.upstreams) == 0 {
		s.log.Warn("dns: no upstream resolvers; names outside the domain get SERVFAIL", "domain", s.domain)
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	return s, nil
}

// listen binds UDP, then TCP on the same port. With port 0 the kernel picks
// the UDP port, which may be taken on TCP: then it tries again.
func (s *Server) listen(addr string) error {
	host, port, _ := net.SplitHostPort(addr)
	const attempts = 16
	for i := 0; ; i++ {
		pc, err := net.ListenPacket("udp", addr)
		if err != nil {
			return fmt.Errorf("dns: listen udp %s: %w", addr, err)
		}
		udp := pc.(*net.UDPConn)
		p := udp.LocalAddr().(*net.UDPAddr).Port
		tcpAddr := net.JoinHostPort(host, fmt.Sprint(p))
		ln, err := net.Listen("tcp", tcpAddr)
		if err != nil {
			udp.Close()
			if port == "0" && errors.Is(err, syscall.EADDRINUSE) && i < attempts {
				continue
			}
			return fmt.Errorf("dns: listen tcp %s: %w", tcpAddr, err)
		}
		s.udpConn, s.tcpLn = udp, ln
		s.udpAddr = unmapAP(udp.LocalAddr().(*net.UDPAddr).AddrPort())
		s.tcpAddr = unmapAP(ln.Addr().(*net.TCPAddr).AddrPort())
		return nil
	}
}

func unmapAP(ap netip.AddrPort) netip.AddrPort {
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
}

// Addr returns the bound UDP and TCP addresses (one port).
func (s *Server) Addr() (udp, tcp netip.AddrPort) { return s.udpAddr, s.tcpAddr }

// Upstreams returns the resolvers the server forwards to, in order, after
// dropping its own address.
func (s *Server) Upstreams() []netip.AddrPort {
	return append([]netip.AddrPort(nil), s.upstreams...)
}

// Start serves queries until Close or until ctx ends (after which Close
// must still be called). It returns once both sockets are being served.
func (s *Server) Start(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return errors.New("dns: start after close")
	}
	if s.started {
		return errors.New("dns: already started")
	}
	s.started = true
	handler := dns.HandlerFunc(s.serveDNS)
	s.udp = &dns.Server{PacketConn: s.udpConn, Handler: handler, UDPSize: readSize}
	s.tcp = &dns.Server{Listener: s.tcpLn, Handler: handler}
	// Each server reports once started and once if it fails: never more
	// than 4 sends, so none blocks.
	ready := make(chan error, 4)
	for _, srv := range []*dns.Server{s.udp, s.tcp} {
		srv.NotifyStartedFunc = func() { ready <- nil }
		s.goroutine(func() {
			if err := srv.ActivateAndServe(); err != nil {
				ready <- err
				s.log.Error("dns: serve", "addr", s.udpAddr.String(), "err", err)
			}
		})
	}
	var err error
	for range 2 {
		if e := <-ready; e != nil && err == nil {
			err = fmt.Errorf("dns: serve %s: %w", s.udpAddr, e)
		}
	}
	// Both servers are started (or failed and returned): shutting them
	// down is now safe. Stop on Close or when the caller's ctx ends.
	s.goroutine(func() {
		select {
		case <-ctx.Done():
		case <-s.ctx.Done():
		}
		s.cancel() // abort forwards in flight, so that handlers return
		s.udp.Shutdown()
		s.tcp.Shutdown()
	})
	if err != nil {
		return err
	}
	s.log.Info("dns: serving", "addr", s.udpAddr.String(), "domain", s.domain, "upstreams", fmt.Sprint(s.upstreams))
	return nil
}

func (s *Server) goroutine(f func()) {
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		f()
	}()
}

// Close stops serving, aborts forwards in flight and returns once every
// goroutine of the server has exited and the sockets are closed. It may be
// called more than once, and without Start.
func (s *Server) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	started := s.started
	s.mu.Unlock()
	s.cancel()
	if !started {
		s.udpConn.Close()
		s.tcpLn.Close()
		return nil
	}
	s.wg.Wait()
	return nil
}
