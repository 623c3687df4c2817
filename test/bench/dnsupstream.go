package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"hash/fnv"
	"io"
	"net"
	"net/netip"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/miekg/dns"
)

// The dns scenario's upstream resolver (helper role dns-upstream): an
// authoritative server for upstreamZone, over UDP and TCP, that answers an
// A record for every name in the zone (a fixed address per name, from
// 198.18.0.0/15, the range set aside for benchmarks) and refuses every
// other name. Both weaveDNS and dnsmasq forward the scenario's
// "forwarded" names to it. It runs until SIGTERM or SIGINT.

const (
	upstreamZone = "ext.test."
	// upstreamTTL is long enough for a caching forwarder to keep every
	// answer through a whole run, which is what dnsmasq's cached row
	// shows.
	upstreamTTL = 60
)

func runDNSUpstream(args []string, stderr io.Writer) int {
	fs := flag.NewFlagSet(helperDNSUpstream, flag.ContinueOnError)
	fs.SetOutput(stderr)
	listen := fs.String("listen", "", "IP:port to serve on, UDP and TCP")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if _, err := netip.ParseAddrPort(*listen); err != nil || fs.NArg() > 0 {
		fmt.Fprintf(stderr, "dns-upstream: want -listen IP:port and no arguments\n")
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	u, err := startUpstream(*listen)
	if err != nil {
		fmt.Fprintf(stderr, "dns-upstream: %v\n", err)
		return 1
	}
	var serveErr error
	select {
	case <-ctx.Done():
	case serveErr = <-u.errs:
	}
	if err := errors.Join(serveErr, u.close()); err != nil {
		fmt.Fprintf(stderr, "dns-upstream: %v\n", err)
		return 1
	}
	return 0
}

// upstream is the running server.
type upstream struct {
	udp, tcp *dns.Server
	addr     netip.AddrPort // UDP's; TCP has the same port
	errs     chan error     // a server that stopped by itself
	done     chan struct{}  // closed when both serve loops have returned
}

// listenUDPAndTCP listens on addr with UDP and TCP on one port. With port 0
// the kernel picks a free UDP port, whose number TCP may have in use
// already: then it tries another, a few times.
func listenUDPAndTCP(addr string) (net.PacketConn, net.Listener, error) {
	for try := 0; ; try++ {
		pc, err := net.ListenPacket("udp", addr)
		if err != nil {
			return nil, nil, err
		}
		ap := pc.LocalAddr().(*net.UDPAddr).AddrPort()
		l, err := net.Listen("tcp", ap.String())
		if err == nil {
			return pc, l, nil
		}
		pc.Close()
		if !errors.Is(err, syscall.EADDRINUSE) || !strings.HasSuffix(addr, ":0") || try == 20 {
			return nil, nil, err
		}
	}
}

// startUpstream listens on addr (port 0: a free one, the same for UDP and
// TCP) and serves until close.
func startUpstream(addr string) (*upstream, error) {
	pc, l, err := listenUDPAndTCP(addr)
	if err != nil {
		return nil, err
	}
	ap := pc.LocalAddr().(*net.UDPAddr).AddrPort()
	h := dns.HandlerFunc(answerUpstream)
	u := &upstream{
		udp:  &dns.Server{PacketConn: pc, Handler: h},
		tcp:  &dns.Server{Listener: l, Handler: h},
		addr: netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()),
		errs: make(chan error, 2),
		done: make(chan struct{}),
	}
	started := make(chan struct{}, 2)
	u.udp.NotifyStartedFunc = func() { started <- struct{}{} }
	u.tcp.NotifyStartedFunc = func() { started <- struct{}{} }
	serving := make(chan struct{}, 2)
	for _, s := range []*dns.Server{u.udp, u.tcp} {
		go func() {
			defer func() { serving <- struct{}{} }()
			if err := s.ActivateAndServe(); err != nil {
				u.errs <- err
			}
		}()
	}
	go func() {
		<-serving
		<-serving
		close(u.done)
	}()
	for range 2 {
		select {
		case <-started:
		case err := <-u.errs:
			_ = u.close()
			return nil, err
		}
	}
	return u, nil
}

// close shuts both servers down and waits for their loops.
func (u *upstream) close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := errors.Join(u.udp.ShutdownContext(ctx), u.tcp.ShutdownContext(ctx))
	select {
	case <-u.done:
	case <-ctx.Done():
		err = errors.Join(err, errors.New("serve loops did not return"))
	}
	return err
}

// answerUpstream answers one query: see the file comment.
func answerUpstream(w dns.ResponseWriter, req *dns.Msg) {
	_ = w.WriteMsg(upstreamReply(req))
}

// upstreamReply is the reply to req.
func upstreamReply(req *dns.Msg) *dns.Msg {
	m := new(dns.Msg)
	if len(req.Question) != 1 {
		return m.SetRcode(req, dns.RcodeFormatError)
	}
	q := req.Question[0]
	name := strings.ToLower(q.Name)
	if !dns.IsSubDomain(upstreamZone, name) || q.Qclass != dns.ClassINET {
		return m.SetRcode(req, dns.RcodeRefused)
	}
	m.SetReply(req)
	m.Authoritative = true
	if q.Qtype == dns.TypeA || q.Qtype == dns.TypeANY {
		m.Answer = []dns.RR{&dns.A{
			Hdr: dns.RR_Header{Name: q.Name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: upstreamTTL},
			A:   upstreamAddr(name).AsSlice(),
		}}
		return m
	}
	m.Ns = []dns.RR{&dns.SOA{
		Hdr: dns.RR_Header{Name: upstreamZone, Rrtype: dns.TypeSOA, Class: dns.ClassINET, Ttl: upstreamTTL},
		Ns:  "ns." + upstreamZone, Mbox: "bench." + upstreamZone,
		Serial: 1, Refresh: 3600, Retry: 600, Expire: 86400, Minttl: upstreamTTL,
	}}
	return m
}

// upstreamAddr is the address the upstream gives name (lower case, fully
// qualified): one of 198.18.0.0/15 chosen by a hash of the name.
func upstreamAddr(name string) netip.Addr {
	h := fnv.New32a()
	h.Write([]byte(name))
	v := h.Sum32()
	return netip.AddrFrom4([4]byte{198, 18 + byte(v>>16)&1, byte(v >> 8), byte(v)})
}
