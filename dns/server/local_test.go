package server

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/miekg/dns"
)

func testNames() *table {
	return newTable(map[string][]string{
		"db.weave.local.":  {"10.32.0.5", "10.32.0.6", "10.40.0.1"},
		"web.weave.local.": {"10.32.0.7", "fd00::7"},
		"v6.weave.local.":  {"fd00::1:2"},
	})
}

func TestLocalAnswers(t *testing.T) {
	up := startUpstream(t, answerA("", "192.0.2.1"))
	s := startServer(t, testNames(), func(c *Config) { c.Upstreams = []string{up.addr} })
	addr := addrOf(s)
	for _, tc := range []struct {
		name  string
		qname string
		qtype uint16
		rcode int
		ips   []string // in order
		soa   bool     // SOA in the authority section
	}{
		{"A, several, table order", "db.weave.local.", dns.TypeA, dns.RcodeSuccess, []string{"10.32.0.5", "10.32.0.6", "10.40.0.1"}, false},
		{"mixed case", "Db.WEAVE.Local.", dns.TypeA, dns.RcodeSuccess, []string{"10.32.0.5", "10.32.0.6", "10.40.0.1"}, false},
		{"A of a dual-stack name", "web.weave.local.", dns.TypeA, dns.RcodeSuccess, []string{"10.32.0.7"}, false},
		{"AAAA of a dual-stack name", "web.weave.local.", dns.TypeAAAA, dns.RcodeSuccess, []string{"fd00::7"}, false},
		{"AAAA only", "v6.weave.local.", dns.TypeAAAA, dns.RcodeSuccess, []string{"fd00::1:2"}, false},
		{"NODATA: AAAA of an IPv4-only name", "db.weave.local.", dns.TypeAAAA, dns.RcodeSuccess, nil, true},
		{"NODATA: A of an IPv6-only name", "v6.weave.local.", dns.TypeA, dns.RcodeSuccess, nil, true},
		{"NODATA: MX of a known name", "db.weave.local.", dns.TypeMX, dns.RcodeSuccess, nil, true},
		{"NXDOMAIN", "nope.weave.local.", dns.TypeA, dns.RcodeNameError, nil, true},
		{"NXDOMAIN, AAAA", "nope.weave.local.", dns.TypeAAAA, dns.RcodeNameError, nil, true},
		{"NXDOMAIN below a known name", "x.db.weave.local.", dns.TypeA, dns.RcodeNameError, nil, true},
		{"apex: NODATA", "weave.local.", dns.TypeA, dns.RcodeSuccess, nil, true},
	} {
		for _, network := range []string{"udp", "tcp"} {
			t.Run(tc.name+"/"+network, func(t *testing.T) {
				r := query(t, addr, network, tc.qname, tc.qtype, 0)
				if r.Rcode != tc.rcode {
					t.Fatalf("rcode %s, want %s", dns.RcodeToString[r.Rcode], dns.RcodeToString[tc.rcode])
				}
				if !r.Authoritative || !r.RecursionAvailable {
					t.Errorf("aa=%v ra=%v, want both", r.Authoritative, r.RecursionAvailable)
				}
				if got := answerIPs(r); !slices.Equal(got, tc.ips) {
					t.Errorf("answer %v, want %v", got, tc.ips)
				}
				for _, rr := range r.Answer {
					if rr.Header().Name != tc.qname {
						t.Errorf("owner %q, want the question's %q", rr.Header().Name, tc.qname)
					}
					if rr.Header().Ttl != 1 {
						t.Errorf("ttl %d, want 1", rr.Header().Ttl)
					}
				}
				if r.Question[0].Name != tc.qname {
					t.Errorf("question %q, want %q", r.Question[0].Name, tc.qname)
				}
				if tc.soa {
					if len(r.Ns) != 1 {
						t.Fatalf("authority %v, want the SOA", r.Ns)
					}
					soa, ok := r.Ns[0].(*dns.SOA)
					if !ok || soa.Hdr.Name != "weave.local." || soa.Minttl != 1 || soa.Hdr.Ttl != 1 {
						t.Errorf("authority %v, want weave.local. SOA with ttl and minimum 1", r.Ns[0])
					}
				} else if len(r.Ns) != 0 {
					t.Errorf("authority %v, want none", r.Ns)
				}
				if r.IsEdns0() != nil {
					t.Error("OPT in the reply to a query without one")
				}
			})
		}
	}
	if n := up.queries.Load(); n != 0 {
		t.Errorf("upstream got %d queries for names in the domain, want 0", n)
	}
}

func TestSOAAtApex(t *testing.T) {
	s := startServer(t, testNames(), nil)
	r := query(t, addrOf(s), "udp", "Weave.Local.", dns.TypeSOA, 0)
	if r.Rcode != dns.RcodeSuccess || len(r.Answer) != 1 {
		t.Fatalf("reply %v, want one SOA", r)
	}
	if soa := r.Answer[0].(*dns.SOA); soa.Hdr.Name != "Weave.Local." || soa.Minttl != 1 {
		t.Errorf("SOA %v", soa)
	}
}

func TestOtherDomain(t *testing.T) {
	names := newTable(map[string][]string{"db.corp.internal.": {"10.1.0.1"}})
	s := startServer(t, names, func(c *Config) { c.Domain = "Corp.Internal"; c.TTL = 30 * time.Second })
	r := query(t, addrOf(s), "udp", "DB.corp.internal.", dns.TypeA, 0)
	if got := answerIPs(r); !slices.Equal(got, []string{"10.1.0.1"}) || r.Answer[0].Header().Ttl != 30 {
		t.Fatalf("reply %v, want 10.1.0.1 ttl 30", r)
	}
	r = query(t, addrOf(s), "udp", "db.weave.local.", dns.TypeA, 0)
	if r.Rcode != dns.RcodeServerFailure || r.Authoritative {
		t.Errorf("weave.local outside the domain, no upstream: %v, want SERVFAIL", r)
	}
}

func TestPTR(t *testing.T) {
	up := startUpstream(t, func(req *dns.Msg) *dns.Msg {
		m := new(dns.Msg)
		m.SetReply(req)
		m.Answer = []dns.RR{mustRR(req.Question[0].Name + " 60 IN PTR upstream.example.")}
		return m
	})
	s := startServer(t, testNames(), func(c *Config) { c.Upstreams = []string{up.addr} })
	for _, tc := range []struct {
		name, qname, want string
		local             bool
	}{
		{"IPv4", "5.0.32.10.in-addr.arpa.", "db.weave.local.", true},
		{"IPv4 mixed case", "5.0.32.10.IN-ADDR.Arpa.", "db.weave.local.", true},
		{"IPv6", mustReverse(t, "fd00::7"), "web.weave.local.", true},
		{"not in the table: forwarded", "1.2.0.192.in-addr.arpa.", "upstream.example.", false},
		{"zone cut: forwarded", "32.10.in-addr.arpa.", "upstream.example.", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := up.queries.Load()
			r := query(t, addrOf(s), "udp", tc.qname, dns.TypePTR, 0)
			if r.Rcode != dns.RcodeSuccess || len(r.Answer) != 1 {
				t.Fatalf("reply %v, want one PTR", r)
			}
			ptr := r.Answer[0].(*dns.PTR)
			if ptr.Ptr != tc.want || ptr.Hdr.Name != tc.qname {
				t.Errorf("PTR %v, want %s for %s", ptr, tc.want, tc.qname)
			}
			forwarded := up.queries.Load() - before
			if tc.local == (forwarded != 0) || r.Authoritative != tc.local {
				t.Errorf("local=%v but forwarded %d, aa=%v", tc.local, forwarded, r.Authoritative)
			}
		})
	}
}

func mustReverse(tb testing.TB, ip string) string {
	tb.Helper()
	r, err := dns.ReverseAddr(ip)
	if err != nil {
		tb.Fatal(err)
	}
	return r
}

func TestRefused(t *testing.T) {
	up := startUpstream(t, answerA("", "192.0.2.1"))
	s := startServer(t, testNames(), func(c *Config) { c.Upstreams = []string{up.addr} })
	for _, tc := range []struct {
		name, qname, network string
		qtype                uint16
		rcode                int
	}{
		{"AXFR of the domain", "weave.local.", "tcp", dns.TypeAXFR, dns.RcodeRefused},
		{"IXFR of the domain", "weave.local.", "udp", dns.TypeIXFR, dns.RcodeRefused},
		{"AXFR of another zone", "example.com.", "tcp", dns.TypeAXFR, dns.RcodeRefused},
		{"ANY in the domain", "db.weave.local.", "udp", dns.TypeANY, dns.RcodeNotImplemented},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := query(t, addrOf(s), tc.network, tc.qname, tc.qtype, 0)
			if r.Rcode != tc.rcode || len(r.Answer) != 0 {
				t.Errorf("reply %v, want %s and no answer", r, dns.RcodeToString[tc.rcode])
			}
		})
	}
	t.Run("UPDATE", func(t *testing.T) {
		m := new(dns.Msg)
		m.SetUpdate("weave.local.")
		r, err := exchangeMsg(m, addrOf(s))
		if err != nil || r.Rcode != dns.RcodeNotImplemented {
			t.Errorf("reply %v, %v, want NOTIMP", r, err)
		}
	})
	t.Run("CHAOS in the domain", func(t *testing.T) {
		m := new(dns.Msg)
		m.SetQuestion("db.weave.local.", dns.TypeTXT)
		m.Question[0].Qclass = dns.ClassCHAOS
		r, err := exchangeMsg(m, addrOf(s))
		if err != nil || r.Rcode != dns.RcodeRefused {
			t.Errorf("reply %v, %v, want REFUSED", r, err)
		}
	})
	t.Run("EDNS version 1", func(t *testing.T) {
		m := new(dns.Msg)
		m.SetQuestion("db.weave.local.", dns.TypeA)
		m.SetEdns0(1232, false)
		m.IsEdns0().SetVersion(1)
		r, err := exchangeMsg(m, addrOf(s))
		if err != nil || r.Rcode != dns.RcodeBadVers || r.IsEdns0() == nil || r.IsEdns0().Version() != 0 {
			t.Errorf("reply %v, %v, want BADVERS with an OPT of version 0", r, err)
		}
	})
	if n := up.queries.Load(); n != 0 {
		t.Errorf("upstream got %d queries, want 0", n)
	}
}

func TestEDNS(t *testing.T) {
	s := startServer(t, testNames(), nil)
	m := new(dns.Msg)
	m.SetQuestion("db.weave.local.", dns.TypeA)
	m.SetEdns0(4096, true)
	r, err := exchangeMsg(m, addrOf(s))
	if err != nil {
		t.Fatal(err)
	}
	opt := r.IsEdns0()
	if opt == nil || !opt.Do() || opt.UDPSize() != ednsSize || len(r.Answer) != 3 {
		t.Errorf("reply %v, want 3 answers and an OPT with DO and size %d", r, ednsSize)
	}
}

// TestTruncation: 100 addresses do not fit in 512 bytes, nor in 1232: the
// UDP answers are truncated with TC set, TCP has all of them.
func TestTruncation(t *testing.T) {
	var ips []string
	for i := range 100 {
		ips = append(ips, fmt.Sprintf("10.32.1.%d", i+1))
	}
	up := startUpstream(t, answerA("", ips...))
	names := newTable(map[string][]string{"many.weave.local.": ips})
	s := startServer(t, names, func(c *Config) { c.Upstreams = []string{up.addr} })
	for _, qname := range []string{"many.weave.local.", "many.example.com."} {
		for _, tc := range []struct {
			network string
			edns    uint16
			limit   int
		}{
			{"udp", 0, 512},
			{"udp", 1232, 1232},
			{"tcp", 0, 65535},
		} {
			t.Run(fmt.Sprintf("%s/%s/edns%d", qname, tc.network, tc.edns), func(t *testing.T) {
				m := new(dns.Msg)
				m.SetQuestion(qname, dns.TypeA)
				if tc.edns > 0 {
					m.SetEdns0(tc.edns, false)
				}
				c := &dns.Client{Net: tc.network, UDPSize: 65535, Timeout: 10 * time.Second}
				r, _, err := c.Exchange(m, addrOf(s))
				if err != nil {
					t.Fatal(err)
				}
				r.Compress = true
				wire, _ := r.Pack()
				if len(wire) > tc.limit {
					t.Errorf("%d bytes, over %d", len(wire), tc.limit)
				}
				if tc.network == "tcp" {
					if r.Truncated || len(r.Answer) != 100 {
						t.Errorf("tc=%v, %d answers, want all 100", r.Truncated, len(r.Answer))
					}
					return
				}
				if !r.Truncated || len(r.Answer) >= 100 {
					t.Errorf("tc=%v, %d answers, want TC", r.Truncated, len(r.Answer))
				}
			})
		}
	}
	if st := s.Stats(); st.Truncated != 4 {
		t.Errorf("stats %+v, want 4 truncated", st)
	}
}
