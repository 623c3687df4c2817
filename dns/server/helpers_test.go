package server

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// table is a Names for tests: lower-case FQDN -> addresses, in order.
type table struct {
	mu    sync.Mutex
	names map[string][]netip.Addr
}

var _ Names = (*table)(nil)

func newTable(entries map[string][]string) *table {
	t := &table{names: make(map[string][]netip.Addr)}
	for name, addrs := range entries {
		for _, a := range addrs {
			t.names[name] = append(t.names[name], netip.MustParseAddr(a))
		}
	}
	return t
}

func (t *table) LookupName(fqdn string) []netip.Addr {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.names[strings.ToLower(fqdn)]
}

func (t *table) LookupAddr(ip netip.Addr) []string {
	t.mu.Lock()
	defer t.mu.Unlock()
	var out []string
	for name, addrs := range t.names {
		for _, a := range addrs {
			if a == ip {
				out = append(out, name)
			}
		}
	}
	return out
}

// startServer starts a Server on 127.0.0.1:0 with names and an upstream
// timeout of 10 s, after mod has adjusted the config; it is closed at the
// end of the test.
func startServer(tb testing.TB, names Names, mod func(*Config)) *Server {
	tb.Helper()
	cfg := DefaultConfig()
	cfg.ListenAddr = "127.0.0.1:0"
	cfg.Names = names
	// Generous, for loaded test machines; tests of the bound set theirs.
	cfg.UpstreamTimeout = 10 * time.Second
	if mod != nil {
		mod(&cfg)
	}
	s, err := New(cfg)
	if err != nil {
		tb.Fatalf("New: %v", err)
	}
	tb.Cleanup(func() { s.Close() })
	if err := s.Start(context.Background()); err != nil {
		tb.Fatalf("Start: %v", err)
	}
	return s
}

func addrOf(s *Server) string {
	udp, _ := s.Addr()
	return udp.String()
}

// upstream is a fake resolver (UDP and TCP on one port) whose answers come
// from handle; it counts the queries it gets.
type upstream struct {
	addr    string
	queries atomic.Int64
	mu      sync.Mutex
	last    *dns.Msg // the last query received
}

func (u *upstream) lastQuery() *dns.Msg {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.last
}

// startUpstream starts a fake resolver on 127.0.0.1:0. handle returns the
// reply, or nil to stay silent.
func startUpstream(tb testing.TB, handle func(req *dns.Msg) *dns.Msg) *upstream {
	tb.Helper()
	u := &upstream{}
	pc, ln := listenPair(tb)
	u.addr = pc.LocalAddr().String()
	h := dns.HandlerFunc(func(w dns.ResponseWriter, req *dns.Msg) {
		u.queries.Add(1)
		u.mu.Lock()
		u.last = req.Copy()
		u.mu.Unlock()
		if r := handle(req); r != nil {
			w.WriteMsg(r)
		}
	})
	for _, srv := range []*dns.Server{
		{PacketConn: pc, Handler: h},
		{Listener: ln, Handler: h},
	} {
		started := make(chan struct{})
		srv.NotifyStartedFunc = func() { close(started) }
		done := make(chan struct{})
		go func() {
			defer close(done)
			srv.ActivateAndServe()
		}()
		<-started
		tb.Cleanup(func() {
			srv.Shutdown()
			<-done
		})
	}
	return u
}

// answerA is an upstream handler answering every A question with ips, and
// NXDOMAIN for nxName.
func answerA(nxName string, ips ...string) func(*dns.Msg) *dns.Msg {
	return func(req *dns.Msg) *dns.Msg {
		m := new(dns.Msg)
		m.SetReply(req)
		m.RecursionAvailable = true
		q := req.Question[0]
		if strings.EqualFold(q.Name, nxName) {
			m.Rcode = dns.RcodeNameError
			m.Ns = []dns.RR{mustRR("example.com. 300 IN SOA ns.example.com. host.example.com. 7 3600 600 86400 60")}
			return m
		}
		if q.Qtype == dns.TypeA {
			for _, ip := range ips {
				m.Answer = append(m.Answer, mustRR(fmt.Sprintf("%s 300 IN A %s", q.Name, ip)))
			}
		}
		return m
	}
}

func mustRR(s string) dns.RR {
	rr, err := dns.NewRR(s)
	if err != nil {
		panic(err)
	}
	return rr
}

// query asks addr over network ("udp" or "tcp") for name/qtype; edns > 0
// adds an OPT with that buffer size.
func query(tb testing.TB, addr, network, name string, qtype uint16, edns uint16) *dns.Msg {
	tb.Helper()
	r, err := tryQuery(addr, network, name, qtype, edns)
	if err != nil {
		tb.Fatalf("query %s %s over %s: %v", name, dns.TypeToString[qtype], network, err)
	}
	return r
}

func tryQuery(addr, network, name string, qtype uint16, edns uint16) (*dns.Msg, error) {
	m := new(dns.Msg)
	m.SetQuestion(name, qtype)
	if edns > 0 {
		m.SetEdns0(edns, false)
	}
	c := &dns.Client{Net: network, Timeout: 10 * time.Second}
	r, _, err := c.Exchange(m, addr)
	if err != nil {
		return nil, err
	}
	if r.Id != m.Id {
		return nil, fmt.Errorf("reply id %d, query id %d", r.Id, m.Id)
	}
	return r, nil
}

// answerIPs lists the A and AAAA addresses of r's answer, in order.
func answerIPs(r *dns.Msg) []string {
	var out []string
	for _, rr := range r.Answer {
		switch rr := rr.(type) {
		case *dns.A:
			out = append(out, rr.A.String())
		case *dns.AAAA:
			out = append(out, rr.AAAA.String())
		}
	}
	return out
}

// listenPair binds UDP and TCP on one free port of 127.0.0.1.
func listenPair(tb testing.TB) (net.PacketConn, net.Listener) {
	tb.Helper()
	for range 16 {
		pc, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			tb.Fatal(err)
		}
		ln, err := net.Listen("tcp", pc.LocalAddr().String())
		if err == nil {
			return pc, ln
		}
		pc.Close()
	}
	tb.Fatal("no port free on both UDP and TCP")
	return nil, nil
}

// eventually polls cond for up to 5 s, for effects that another goroutine
// reports after the reply the test waited for.
func eventually(cond func() bool) bool {
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(5 * time.Millisecond)
	}
	return true
}

// reserveAddr returns a 127.0.0.1 address whose port was free on UDP and
// TCP a moment ago, for tests that need a server's address before New.
func reserveAddr(tb testing.TB) string {
	tb.Helper()
	pc, ln := listenPair(tb)
	ln.Close()
	pc.Close()
	return pc.LocalAddr().String()
}

// exchangeMsg sends m over UDP with a generous timeout.
func exchangeMsg(m *dns.Msg, addr string) (*dns.Msg, error) {
	c := &dns.Client{Timeout: 10 * time.Second}
	r, _, err := c.Exchange(m, addr)
	return r, err
}
