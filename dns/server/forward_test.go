package server

import (
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"
)

func silent(*dns.Msg) *dns.Msg { return nil }

func rcodeReply(rcode int) func(*dns.Msg) *dns.Msg {
	return func(req *dns.Msg) *dns.Msg {
		m := new(dns.Msg)
		m.SetRcode(req, rcode)
		return m
	}
}

func TestForward(t *testing.T) {
	up := startUpstream(t, answerA("missing.example.com.", "192.0.2.1", "192.0.2.2"))
	s := startServer(t, testNames(), func(c *Config) { c.Upstreams = []string{up.addr} })
	for _, tc := range []struct {
		name, qname, network string
		rcode                int
		ips                  []string
	}{
		{"A", "www.example.com.", "udp", dns.RcodeSuccess, []string{"192.0.2.1", "192.0.2.2"}},
		{"A over TCP", "www.example.com.", "tcp", dns.RcodeSuccess, []string{"192.0.2.1", "192.0.2.2"}},
		{"case kept", "WwW.Example.COM.", "udp", dns.RcodeSuccess, []string{"192.0.2.1", "192.0.2.2"}},
		{"single label", "db.", "udp", dns.RcodeSuccess, []string{"192.0.2.1", "192.0.2.2"}},
		{"NXDOMAIN relayed", "missing.example.com.", "udp", dns.RcodeNameError, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := query(t, addrOf(s), tc.network, tc.qname, dns.TypeA, 0) // checks the ID
			if r.Rcode != tc.rcode || !slices.Equal(answerIPs(r), tc.ips) {
				t.Fatalf("reply %v, want %s %v", r, dns.RcodeToString[tc.rcode], tc.ips)
			}
			if r.Question[0].Name != tc.qname || r.Authoritative {
				t.Errorf("question %q aa=%v, want %q, not authoritative", r.Question[0].Name, r.Authoritative, tc.qname)
			}
			if tc.rcode == dns.RcodeNameError {
				if len(r.Ns) != 1 || r.Ns[0].(*dns.SOA).Hdr.Name != "example.com." {
					t.Errorf("authority %v, want the upstream's SOA", r.Ns)
				}
			}
			if r.IsEdns0() != nil {
				t.Error("OPT in the reply to a query without one")
			}
			if got := up.lastQuery().Question[0].Name; got != tc.qname {
				t.Errorf("upstream asked %q, want %q", got, tc.qname)
			}
		})
	}
	if st := s.Stats(); st.Forwarded != 5 || st.Local+st.NXDomain+st.UpstreamFailed != 0 {
		t.Errorf("stats %+v, want 5 forwarded", st)
	}
}

// TestForwardEDNS: the client's options go upstream with our loop marker,
// cookies stay on their hop, and the reply carries our OPT.
func TestForwardEDNS(t *testing.T) {
	up := startUpstream(t, func(req *dns.Msg) *dns.Msg {
		m := answerA("", "192.0.2.1")(req)
		m.SetEdns0(4096, true)
		m.IsEdns0().Option = append(m.IsEdns0().Option, &dns.EDNS0_COOKIE{Code: dns.EDNS0COOKIE, Cookie: "0102030405060708aabbccddeeff0011"})
		return m
	})
	s := startServer(t, testNames(), func(c *Config) { c.Upstreams = []string{up.addr} })
	m := new(dns.Msg)
	m.SetQuestion("www.example.com.", dns.TypeA)
	m.SetEdns0(4096, true)
	opt := m.IsEdns0()
	opt.Option = append(opt.Option,
		&dns.EDNS0_COOKIE{Code: dns.EDNS0COOKIE, Cookie: "0102030405060708"},
		&dns.EDNS0_SUBNET{Code: dns.EDNS0SUBNET, Family: 1, SourceNetmask: 24, Address: []byte{198, 51, 100, 0}})
	r, err := exchangeMsg(m, addrOf(s))
	if err != nil {
		t.Fatal(err)
	}
	sent := up.lastQuery().IsEdns0()
	if sent == nil || !sent.Do() || sent.UDPSize() != readSize {
		t.Fatalf("upstream query OPT %v, want DO and size %d", sent, readSize)
	}
	var codes []uint16
	for _, o := range sent.Option {
		codes = append(codes, o.Option())
	}
	if !slices.Equal(codes, []uint16{dns.EDNS0SUBNET, loopOption}) {
		t.Errorf("upstream query options %v, want subnet and the loop marker", codes)
	}
	ropt := r.IsEdns0()
	if ropt == nil || ropt.UDPSize() != ednsSize || len(ropt.Option) != 0 || len(r.Answer) != 1 {
		t.Errorf("reply %v, want one answer and our OPT without the upstream's cookie", r)
	}

	// A client without EDNS still gets the marker upstream, and no OPT.
	r = query(t, addrOf(s), "udp", "www.example.com.", dns.TypeA, 0)
	if sent := up.lastQuery().IsEdns0(); sent == nil || sent.UDPSize() != ednsSize || !marked(sent, s.token) {
		t.Errorf("upstream query OPT %v, want size %d and the marker", sent, ednsSize)
	}
	if r.IsEdns0() != nil {
		t.Error("OPT in the reply to a query without one")
	}
}

func TestForwardOrder(t *testing.T) {
	good := startUpstream(t, answerA("", "192.0.2.9"))
	closed := reserveAddr(t) // nothing listens: refused at once
	for _, tc := range []struct {
		name string
		up   func(t *testing.T) string // the first upstream
		max  time.Duration             // bound on the answer's time
	}{
		{"first refuses the port", func(*testing.T) string { return closed }, 500 * time.Millisecond},
		{"first answers SERVFAIL", func(t *testing.T) string { return startUpstream(t, rcodeReply(dns.RcodeServerFailure)).addr }, 500 * time.Millisecond},
		{"first answers REFUSED", func(t *testing.T) string { return startUpstream(t, rcodeReply(dns.RcodeRefused)).addr }, 500 * time.Millisecond},
		// A silent first upstream has half of the 2 s bound.
		{"first is silent", func(t *testing.T) string { return startUpstream(t, silent).addr }, 1500 * time.Millisecond},
	} {
		for _, network := range []string{"udp", "tcp"} {
			t.Run(tc.name+"/"+network, func(t *testing.T) {
				s := startServer(t, testNames(), func(c *Config) {
					c.Upstreams = []string{tc.up(t), good.addr}
					c.UpstreamTimeout = DefaultUpstreamTimeout
				})
				start := time.Now()
				r := query(t, addrOf(s), network, "www.example.com.", dns.TypeA, 0)
				if el := time.Since(start); el > tc.max {
					t.Errorf("answered in %v, want under %v", el, tc.max)
				}
				if r.Rcode != dns.RcodeSuccess || !slices.Equal(answerIPs(r), []string{"192.0.2.9"}) {
					t.Errorf("reply %v, want the second upstream's", r)
				}
			})
		}
	}
	t.Run("first answers NXDOMAIN: final", func(t *testing.T) {
		nx := startUpstream(t, rcodeReply(dns.RcodeNameError))
		s := startServer(t, testNames(), func(c *Config) { c.Upstreams = []string{nx.addr, good.addr} })
		if r := query(t, addrOf(s), "udp", "www.example.com.", dns.TypeA, 0); r.Rcode != dns.RcodeNameError {
			t.Errorf("reply %v, want NXDOMAIN", r)
		}
	})
	t.Run("all answer SERVFAIL: relayed", func(t *testing.T) {
		sf := startUpstream(t, rcodeReply(dns.RcodeServerFailure))
		s := startServer(t, testNames(), func(c *Config) { c.Upstreams = []string{sf.addr, sf.addr} })
		if r := query(t, addrOf(s), "udp", "www.example.com.", dns.TypeA, 0); r.Rcode != dns.RcodeServerFailure {
			t.Errorf("reply %v, want SERVFAIL", r)
		}
		if n := sf.queries.Load(); n != 2 {
			t.Errorf("%d queries upstream, want 2", n)
		}
	})
}

// TestUpstreamTimeout: with silent upstreams the client gets SERVFAIL
// within the bound, never silence.
func TestUpstreamTimeout(t *testing.T) {
	const slack = 400 * time.Millisecond
	for _, tc := range []struct {
		name    string
		timeout time.Duration
		n       int // silent upstreams
		network string
	}{
		{"default bound, one upstream", DefaultUpstreamTimeout, 1, "udp"},
		{"three upstreams share the bound", 600 * time.Millisecond, 3, "udp"},
		{"tcp", 600 * time.Millisecond, 2, "tcp"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var ups []*upstream
			var addrs []string
			for range tc.n {
				u := startUpstream(t, silent)
				ups = append(ups, u)
				addrs = append(addrs, u.addr)
			}
			s := startServer(t, testNames(), func(c *Config) {
				c.Upstreams = addrs
				c.UpstreamTimeout = tc.timeout
			})
			bound := s.cfg.UpstreamTimeout
			start := time.Now()
			r := query(t, addrOf(s), tc.network, "www.example.com.", dns.TypeA, 0)
			el := time.Since(start)
			if r.Rcode != dns.RcodeServerFailure {
				t.Errorf("reply %v, want SERVFAIL", r)
			}
			if el < bound-50*time.Millisecond || el > bound+slack {
				t.Errorf("SERVFAIL after %v, want %v (+%v)", el, bound, slack)
			}
			for i, u := range ups {
				// The last may be counted just after our reply.
				if !eventually(func() bool { return u.queries.Load() == 1 }) {
					t.Errorf("upstream %d asked %d times, want 1", i, u.queries.Load())
				}
			}
			if st := s.Stats(); st.UpstreamFailed != 1 {
				t.Errorf("stats %+v, want 1 upstream failure", st)
			}
		})
	}
}

func TestNoUpstreams(t *testing.T) {
	s := startServer(t, testNames(), nil)
	start := time.Now()
	r := query(t, addrOf(s), "udp", "www.example.com.", dns.TypeA, 0)
	if r.Rcode != dns.RcodeServerFailure || time.Since(start) > DefaultUpstreamTimeout/2 {
		t.Errorf("reply %v after %v, want SERVFAIL at once", r, time.Since(start))
	}
}

// TestCoalesce: clients asking one question at once share one exchange,
// and each gets its own ID and case back.
func TestCoalesce(t *testing.T) {
	release := make(chan struct{})
	up := startUpstream(t, func(req *dns.Msg) *dns.Msg {
		<-release
		return answerA("", "192.0.2.3")(req)
	})
	s := startServer(t, testNames(), func(c *Config) { c.Upstreams = []string{up.addr} })
	names := []string{"same.example.com.", "SAME.example.com.", "Same.Example.Com.", "same.example.com.", "same.EXAMPLE.com."}
	var wg sync.WaitGroup
	errs := make(chan string, len(names))
	for _, name := range names {
		wg.Go(func() {
			r, err := tryQuery(addrOf(s), "udp", name, dns.TypeA, 0)
			switch {
			case err != nil:
				errs <- err.Error()
			case r.Question[0].Name != name || !slices.Equal(answerIPs(r), []string{"192.0.2.3"}):
				errs <- r.String()
			}
		})
	}
	// Let every query arrive before the upstream answers.
	eventually(func() bool { return up.queries.Load() >= 1 })
	time.Sleep(200 * time.Millisecond) // for the other queries to join (none is answered yet)
	close(release)
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
	if n := up.queries.Load(); n != 1 {
		t.Errorf("upstream asked %d times, want 1", n)
	}
	if st := s.Stats(); st.Forwarded != uint64(len(names)) {
		t.Errorf("stats %+v, want %d forwarded", st, len(names))
	}
}
