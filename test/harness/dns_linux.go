package harness

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// DigResult is one run of dig: the header and answer section of the last
// reply it printed (after a truncated UDP reply dig retries over TCP and
// prints both; the TCP one counts).
type DigResult struct {
	Result
	// Status is the reply's rcode (NOERROR, NXDOMAIN, SERVFAIL, ...),
	// empty when no reply came.
	Status string
	// Flags are the reply's header flags (qr, aa, rd, ra, tc, ...).
	Flags []string
	// Answer holds the records of the answer section.
	Answer []dns.RR
	// RetriedTCP reports that dig got a truncated UDP reply and asked
	// again over TCP.
	RetriedTCP bool
	// Took is the wall time of the whole command, process start included.
	Took time.Duration
}

// Addrs returns the A and AAAA addresses of the answer, sorted.
func (d DigResult) Addrs() []string {
	var out []string
	for _, rr := range d.Answer {
		switch rr := rr.(type) {
		case *dns.A:
			out = append(out, rr.A.String())
		case *dns.AAAA:
			out = append(out, rr.AAAA.String())
		}
	}
	slices.Sort(out)
	return out
}

// PTRs returns the names of the answer's PTR records, sorted.
func (d DigResult) PTRs() []string {
	var out []string
	for _, rr := range d.Answer {
		if p, ok := rr.(*dns.PTR); ok {
			out = append(out, p.Ptr)
		}
	}
	slices.Sort(out)
	return out
}

// HasFlag reports whether the reply's header has flag (e.g. "tc").
func (d DigResult) HasFlag(flag string) bool { return slices.Contains(d.Flags, flag) }

// Summary is a one-line account for test logs.
func (d DigResult) Summary() string {
	return fmt.Sprintf("dig %s: status %q flags %v, %d answers %v, took %v (exit %d)",
		strings.Join(d.Args[1:], " "), d.Status, d.Flags, len(d.Answer), d.Addrs(), d.Took.Round(time.Millisecond), d.ExitCode)
}

// Dig runs `dig ARGS...` in the namespace with one try of up to 5 s
// (ARGS may override with +tries and +time) and parses what it printed.
func (n Netns) Dig(ctx context.Context, args ...string) DigResult {
	args = append([]string{"dig", "+tries=1", "+time=5"}, args...)
	start := time.Now()
	r := n.Run(ctx, args...)
	d := DigResult{Result: r, Took: time.Since(start)}
	section := ""
	for _, line := range strings.Split(r.Stdout, "\n") {
		switch {
		case strings.HasPrefix(line, ";; Truncated, retrying in TCP mode"):
			d.RetriedTCP = true
		case strings.HasPrefix(line, ";; ->>HEADER<<-"):
			// A new reply: forget what an earlier one said.
			d.Status, d.Flags, d.Answer, section = "", nil, nil, ""
			if _, s, ok := strings.Cut(line, "status: "); ok {
				d.Status, _, _ = strings.Cut(s, ",")
			}
		case strings.HasPrefix(line, ";; flags:"):
			f, _, _ := strings.Cut(strings.TrimPrefix(line, ";; flags:"), ";")
			d.Flags = strings.Fields(f)
		case strings.HasPrefix(line, ";; ") && strings.HasSuffix(line, "SECTION:"):
			section = strings.TrimSuffix(strings.TrimPrefix(line, ";; "), " SECTION:")
		case strings.TrimSpace(line) == "":
			section = ""
		case section == "ANSWER" && !strings.HasPrefix(line, ";"):
			if rr, err := dns.NewRR(line); err == nil && rr != nil {
				d.Answer = append(d.Answer, rr)
			}
		}
	}
	return d
}

// DNSServer is a small authoritative DNS server for tests (an "upstream
// resolver"), serving fixed A records over UDP and TCP from a socket in a
// namespace. Its methods are safe for concurrent use.
type DNSServer struct {
	// Addr is where it listens, IP:port.
	Addr string

	records map[string][]netip.Addr
	silent  map[string]bool
	queries atomic.Int64

	pc       net.PacketConn
	ln       net.Listener
	udp, tcp *dns.Server
	wg       sync.WaitGroup
	stop     sync.Once
}

// StartDNSServer starts a DNSServer in namespace n on addr (IP:port, UDP
// and TCP) that answers the A records of records (keys are FQDNs, any
// case, with or without the final dot), never answers the names in
// silent (an upstream that does not respond), and answers NXDOMAIN for
// everything else. t.Cleanup stops it.
func StartDNSServer(t testing.TB, n Netns, addr string, records map[string][]netip.Addr, silent ...string) *DNSServer {
	t.Helper()
	s := &DNSServer{Addr: addr, records: map[string][]netip.Addr{}, silent: map[string]bool{}}
	for name, ips := range records {
		s.records[dns.CanonicalName(name)] = ips
	}
	for _, name := range silent {
		s.silent[dns.CanonicalName(name)] = true
	}
	var err error
	if s.pc, err = n.ListenPacket("udp", addr); err != nil {
		t.Fatalf("dns server: %v", err)
	}
	if s.ln, err = n.Listen("tcp", addr); err != nil {
		s.pc.Close()
		t.Fatalf("dns server: %v", err)
	}
	s.udp = &dns.Server{PacketConn: s.pc, Handler: dns.HandlerFunc(s.serve)}
	s.tcp = &dns.Server{Listener: s.ln, Handler: dns.HandlerFunc(s.serve)}
	for _, srv := range []*dns.Server{s.udp, s.tcp} {
		started := make(chan struct{})
		srv.NotifyStartedFunc = func() { close(started) }
		errc := make(chan error, 1)
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			errc <- srv.ActivateAndServe()
		}()
		// Shutdown refuses a server that has not started: wait for it.
		select {
		case <-started:
		case err := <-errc:
			s.Stop()
			t.Fatalf("dns server on %s: %v", addr, err)
		}
	}
	t.Cleanup(s.Stop)
	return s
}

func (s *DNSServer) serve(w dns.ResponseWriter, req *dns.Msg) {
	s.queries.Add(1)
	if len(req.Question) != 1 {
		m := new(dns.Msg)
		m.SetRcode(req, dns.RcodeFormatError)
		w.WriteMsg(m)
		return
	}
	q := req.Question[0]
	name := dns.CanonicalName(q.Name)
	if s.silent[name] {
		return
	}
	m := new(dns.Msg)
	m.SetReply(req)
	m.Authoritative = true
	ips, ok := s.records[name]
	if !ok {
		m.SetRcode(req, dns.RcodeNameError)
	}
	for _, ip := range ips {
		if q.Qtype == dns.TypeA && ip.Is4() {
			m.Answer = append(m.Answer, &dns.A{
				Hdr: dns.RR_Header{Name: q.Name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 60},
				A:   net.IP(ip.AsSlice()),
			})
		}
	}
	w.WriteMsg(m)
}

// Queries is the number of queries the server has received.
func (s *DNSServer) Queries() int64 { return s.queries.Load() }

// Stop closes the server's sockets (a query then gets an ICMP port
// unreachable) and waits for its goroutines. It may be called more than
// once.
func (s *DNSServer) Stop() {
	s.stop.Do(func() {
		for _, srv := range []*dns.Server{s.udp, s.tcp} {
			// A server that never started says so; its socket is
			// closed below all the same.
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			_ = srv.ShutdownContext(ctx)
			cancel()
		}
		s.pc.Close()
		s.ln.Close()
		s.wg.Wait()
	})
}
