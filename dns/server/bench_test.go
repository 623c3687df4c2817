package server

import (
	"context"
	"net/netip"
	"sync/atomic"
	"testing"

	"github.com/miekg/dns"
)

// benchQueries runs b.N UDP round trips of name/A on loopback, over
// parallel clients each with their own socket, and reports queries/s.
func benchQueries(b *testing.B, addr, name string, parallel bool) {
	b.Helper()
	var n atomic.Int64
	run := func(next func() bool) {
		co, err := dns.Dial("udp", addr)
		if err != nil {
			b.Error(err)
			return
		}
		defer co.Close()
		m := new(dns.Msg).SetQuestion(name, dns.TypeA)
		for next() {
			m.Id = dns.Id()
			if err := co.WriteMsg(m); err != nil {
				b.Error(err)
				return
			}
			r, err := co.ReadMsg()
			if err != nil || r.Id != m.Id || len(r.Answer) == 0 {
				b.Errorf("reply %v, %v", r, err)
				return
			}
			n.Add(1)
		}
	}
	b.ReportAllocs()
	if parallel {
		b.RunParallel(func(pb *testing.PB) { run(pb.Next) })
	} else {
		run(b.Loop)
	}
	b.ReportMetric(float64(n.Load())/b.Elapsed().Seconds(), "queries/s")
}

func BenchmarkLocalQuery(b *testing.B) {
	s := startServer(b, testNames(), nil)
	benchQueries(b, addrOf(s), "db.weave.local.", false)
}

func BenchmarkLocalQueryParallel(b *testing.B) {
	s := startServer(b, testNames(), nil)
	benchQueries(b, addrOf(s), "db.weave.local.", true)
}

// BenchmarkForwardedQuery: through the server to a fake upstream on
// loopback (two round trips per query).
func BenchmarkForwardedQuery(b *testing.B) {
	up := startUpstream(b, answerA("", "192.0.2.1"))
	s := startServer(b, testNames(), func(c *Config) { c.Upstreams = []string{up.addr} })
	benchQueries(b, addrOf(s), "www.example.com.", false)
}

func FuzzReverseName(f *testing.F) {
	for _, s := range []string{
		"5.0.32.10.in-addr.arpa.", "255.255.255.255.in-addr.arpa.", "32.10.in-addr.arpa.",
		"05.0.32.10.in-addr.arpa.", "256.0.0.1.in-addr.arpa.",
		"1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.d.f.ip6.arpa.",
		"g.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.d.f.ip6.arpa.",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		ip, ok := parseReverse(name)
		if !ok {
			return
		}
		want, err := dns.ReverseAddr(ip.String())
		if err != nil || want != name {
			t.Errorf("parseReverse(%q) = %v, whose reverse name is %q", name, ip, want)
		}
	})
}

// FuzzRespond feeds arbitrary queries to the handler (local answers only:
// no upstreams, so no I/O): it must not panic, and its reply must pack
// and fit the client's UDP buffer.
func FuzzRespond(f *testing.F) {
	for _, q := range []struct {
		name  string
		qtype uint16
		edns  uint16
	}{
		{"db.weave.local.", dns.TypeA, 0},
		{"MANY.weave.local.", dns.TypeA, 0},
		{"many.weave.local.", dns.TypeA, 1232},
		{"web.weave.local.", dns.TypeAAAA, 4096},
		{"5.0.32.10.in-addr.arpa.", dns.TypePTR, 0},
		{"weave.local.", dns.TypeAXFR, 0},
		{"nope.weave.local.", dns.TypeMX, 512},
	} {
		m := new(dns.Msg).SetQuestion(q.name, q.qtype)
		if q.edns > 0 {
			m.SetEdns0(q.edns, true)
		}
		wire, err := m.Pack()
		if err != nil {
			f.Fatal(err)
		}
		f.Add(wire)
	}
	names := testNames()
	for i := range 100 {
		names.names["many.weave.local."] = append(names.names["many.weave.local."], netip.AddrFrom4([4]byte{10, 32, 1, byte(i)}))
	}
	cfg := DefaultConfig()
	cfg.ListenAddr = "127.0.0.1:0"
	cfg.Names = names
	s, err := New(cfg)
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { s.Close() })
	f.Fuzz(func(t *testing.T, wire []byte) {
		req := new(dns.Msg)
		if req.Unpack(wire) != nil || req.Response {
			return
		}
		resp, _ := s.respond(context.Background(), req, false)
		fit(resp, req, false)
		out, err := resp.Pack()
		if err != nil {
			t.Fatalf("reply does not pack: %v\n%v", err, resp)
		}
		size := dns.MinMsgSize
		if opt := req.IsEdns0(); opt != nil {
			size = max(size, int(opt.UDPSize()))
		}
		if len(out) > size {
			t.Errorf("reply of %d bytes for a %d-byte buffer", len(out), size)
		}
		if resp.Id != req.Id {
			t.Errorf("reply id %d, query id %d", resp.Id, req.Id)
		}
	})
}
