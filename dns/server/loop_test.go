package server

import (
	"net/netip"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// TestLoopSelf: our own address among the upstreams is dropped.
func TestLoopSelf(t *testing.T) {
	good := startUpstream(t, answerA("", "192.0.2.4"))
	addr := reserveAddr(t)
	s := startServer(t, testNames(), func(c *Config) {
		c.ListenAddr = addr
		c.Upstreams = []string{addr, good.addr}
	})
	if got := s.Upstreams(); len(got) != 1 || got[0].String() != good.addr {
		t.Fatalf("upstreams %v, want only %s", got, good.addr)
	}
	r := query(t, addrOf(s), "udp", "www.example.com.", dns.TypeA, 0)
	if r.Rcode != dns.RcodeSuccess || len(r.Answer) != 1 {
		t.Errorf("reply %v", r)
	}
}

func TestIsSelf(t *testing.T) {
	ap := netip.MustParseAddrPort
	local := []netip.Addr{netip.MustParseAddr("127.0.0.1"), netip.MustParseAddr("172.17.0.1"), netip.MustParseAddr("fd00::1")}
	for _, tc := range []struct {
		up, own string
		want    bool
	}{
		{"172.17.0.1:53", "172.17.0.1:53", true},
		{"172.17.0.1:5353", "172.17.0.1:53", false},
		{"172.17.0.2:53", "172.17.0.1:53", false},
		{"127.0.0.1:53", "172.17.0.1:53", false},
		{"0.0.0.0:53", "127.0.0.1:53", true},
		{"127.0.0.53:53", "0.0.0.0:53", true},
		{"172.17.0.1:53", "0.0.0.0:53", true},
		{"[fd00::1]:53", "[::]:53", true},
		{"[::ffff:172.17.0.1]:53", "[::]:53", true},
		{"8.8.8.8:53", "0.0.0.0:53", false},
	} {
		if got := isSelf(ap(tc.up), ap(tc.own), local); got != tc.want {
			t.Errorf("isSelf(%s, %s) = %v, want %v", tc.up, tc.own, got, tc.want)
		}
	}
}

// forwarder starts a fake forwarder that passes each query on to *target
// as it is, options included (like dnsmasq or CoreDNS), with a new ID.
func forwarder(t *testing.T, target *atomic.Value) *upstream {
	return startUpstream(t, func(req *dns.Msg) *dns.Msg {
		q := req.Copy()
		q.Id = dns.Id()
		c := &dns.Client{Timeout: 3 * time.Second}
		r, _, err := c.Exchange(q, target.Load().(string))
		if err != nil {
			m := new(dns.Msg)
			return m.SetRcode(req, dns.RcodeServerFailure)
		}
		r.Id = req.Id
		return r
	})
}

// TestLoopMarker: two routers that forward to each other (through a
// transparent forwarder) stop at once, not after the timeout.
func TestLoopMarker(t *testing.T) {
	var toB atomic.Value
	fwd := forwarder(t, &toB)
	a := startServer(t, testNames(), func(c *Config) { c.Upstreams = []string{fwd.addr} })
	b := startServer(t, testNames(), func(c *Config) { c.Upstreams = []string{addrOf(a)} })
	toB.Store(addrOf(b))

	start := time.Now()
	r := query(t, addrOf(a), "udp", "www.example.com.", dns.TypeA, 0)
	if el := time.Since(start); el > time.Second {
		t.Errorf("answered after %v: the loop was not cut short", el)
	}
	if r.Rcode != dns.RcodeRefused {
		t.Errorf("reply %v, want the REFUSED of the loop relayed", r)
	}
	if st := a.Stats(); st.Loops != 1 || st.Refused != 1 || st.Forwarded != 1 {
		t.Errorf("a's stats %+v, want one loop refused and one forward", st)
	}
	if st := b.Stats(); st.Loops != 0 || st.Forwarded != 1 {
		t.Errorf("b's stats %+v, want one forward", st)
	}
	if n := fwd.queries.Load(); n != 1 {
		t.Errorf("forwarder asked %d times, want 1", n)
	}
	// Names in the domain are still answered.
	if r := query(t, addrOf(a), "udp", "db.weave.local.", dns.TypeA, 0); len(r.Answer) != 3 {
		t.Errorf("local reply %v", r)
	}
}

// TestLoopThroughResolver: an upstream that rebuilds queries (no options,
// new ID, like systemd-resolved or unbound) and asks us again: its query
// joins ours and the loop ends with SERVFAIL at the bound, after one lap.
func TestLoopThroughResolver(t *testing.T) {
	var target atomic.Value
	res := startUpstream(t, func(req *dns.Msg) *dns.Msg {
		q := new(dns.Msg)
		q.SetQuestion(req.Question[0].Name, req.Question[0].Qtype)
		c := &dns.Client{Timeout: 5 * time.Second}
		r, _, err := c.Exchange(q, target.Load().(string))
		m := new(dns.Msg)
		if err != nil {
			return m.SetRcode(req, dns.RcodeServerFailure)
		}
		m.SetRcode(req, r.Rcode)
		m.Answer = r.Answer
		return m
	})
	const bound = 500 * time.Millisecond
	s := startServer(t, testNames(), func(c *Config) {
		c.Upstreams = []string{res.addr}
		c.UpstreamTimeout = bound
	})
	target.Store(addrOf(s))
	start := time.Now()
	r := query(t, addrOf(s), "udp", "www.example.com.", dns.TypeA, 0)
	if el := time.Since(start); r.Rcode != dns.RcodeServerFailure || el > bound+400*time.Millisecond {
		t.Errorf("reply %v after %v, want SERVFAIL within %v", r, el, bound)
	}
	// The resolver's own query, answered SERVFAIL from the shared
	// flight, ends its handler; give it the time to report.
	eventually(func() bool { return s.Stats().UpstreamFailed >= 2 })
	if n := res.queries.Load(); n != 1 {
		t.Errorf("resolver asked %d times, want 1 (no nesting)", n)
	}
	if st := s.Stats(); st.UpstreamFailed != 2 {
		t.Errorf("stats %+v, want 2 upstream failures (client and resolver)", st)
	}
}
