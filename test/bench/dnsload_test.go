package main

import (
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
	"go.uber.org/goleak"
)

func TestParseNameList(t *testing.T) {
	for _, c := range []struct {
		name    string
		in      string
		want    []queryName
		wantErr string
	}{
		{"names and addresses", "# weave names\nn0.weave.local 10.2.0.1\n\n  n1.ext.test.  \n",
			[]queryName{{"n0.weave.local.", netip.MustParseAddr("10.2.0.1")}, {"n1.ext.test.", netip.Addr{}}}, ""},
		{"empty", "\n# nothing\n", nil, "no names"},
		{"three fields", "n0.weave.local 10.2.0.1 extra\n", nil, "line 1"},
		{"not an address", "n0.weave.local ten\n", nil, "not an IPv4 address"},
		{"IPv6", "n0.weave.local ::1\n", nil, "not an IPv4 address"},
		{"bad name", "a..b\n", nil, "not a domain name"},
	} {
		t.Run(c.name, func(t *testing.T) {
			got, err := parseNameList(c.in)
			if c.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), c.wantErr) {
					t.Fatalf("err = %v, want one containing %q", err, c.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(c.want) {
				t.Fatalf("got %v, want %v", got, c.want)
			}
			for i := range got {
				if got[i] != c.want[i] {
					t.Errorf("name %d = %v, want %v", i, got[i], c.want[i])
				}
			}
			again, err := parseNameList(formatNameList(got))
			if err != nil || len(again) != len(got) || again[0] != got[0] {
				t.Errorf("formatNameList does not round-trip: %v, %v", again, err)
			}
		})
	}
}

// packed returns m packed, for classifyReply.
func packed(t *testing.T, m *dns.Msg) []byte {
	t.Helper()
	b, err := m.Pack()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestClassifyReply(t *testing.T) {
	q := new(dns.Msg)
	q.SetQuestion("n1.weave.local.", dns.TypeA)
	q.Id = 4242
	answer := new(dns.Msg).SetReply(q)
	answer.Answer = []dns.RR{&dns.A{Hdr: dns.RR_Header{Name: "n1.weave.local.", Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 1}, A: []byte{10, 2, 0, 2}}}
	empty := new(dns.Msg).SetReply(q)
	servfail := new(dns.Msg).SetRcode(q, dns.RcodeServerFailure)
	stale := answer.Copy()
	stale.Id = 4241
	for _, c := range []struct {
		name  string
		b     []byte
		kind  replyKind
		rcode int
	}{
		{"answer", packed(t, answer), replyAnswer, dns.RcodeSuccess},
		{"stale", packed(t, stale), replyStale, 0},
		{"empty", packed(t, empty), replyEmpty, dns.RcodeSuccess},
		{"servfail", packed(t, servfail), replyRcode, dns.RcodeServerFailure},
		{"query, not a reply", packed(t, q), replyMalformed, 0},
		{"short", []byte{0x10, 0x92, 0x81}, replyMalformed, 0},
	} {
		t.Run(c.name, func(t *testing.T) {
			kind, rcode := classifyReply(c.b, 4242)
			if kind != c.kind || rcode != c.rcode {
				t.Errorf("classifyReply = %d, %d; want %d, %d", kind, rcode, c.kind, c.rcode)
			}
		})
	}
}

func TestSummarizeLoad(t *testing.T) {
	var a, b []time.Duration
	for i := 1; i <= 100; i++ { // 1..100 ms over two clients
		if i%2 == 0 {
			a = append(a, time.Duration(i)*time.Millisecond)
		} else {
			b = append(b, time.Duration(i)*time.Millisecond)
		}
	}
	clients := []*loadClient{
		{samples: a, answered: len(a), lost: 1, firstErr: "n3.ext.test.: no reply within 1s"},
		{samples: b, answered: len(b), failed: 2},
	}
	got := summarizeLoad(clients, 2*time.Second)
	want := loadSummary{Clients: 2, Seconds: 2, Answered: 100, Failed: 2, Lost: 1, QPS: 50,
		P50Ms: 50, P99Ms: 99, MaxMs: 100, FirstError: "n3.ext.test.: no reply within 1s"}
	if got != want {
		t.Errorf("summarizeLoad = %+v, want %+v", got, want)
	}
	if got := summarizeLoad([]*loadClient{{}}, time.Second); got.P50Ms != 0 || got.QPS != 0 {
		t.Errorf("summarizeLoad of nothing = %+v", got)
	}
}

func TestParseLoadSummary(t *testing.T) {
	for _, c := range []struct {
		name    string
		out     string
		want    loadSummary
		wantErr string
	}{
		{"ok", "{\"clients\":8,\"seconds\":5,\"answered\":1000,\"failed\":1,\"lost\":0,\"qps\":200,\"p50_ms\":0.1,\"p99_ms\":0.9,\"max_ms\":3,\"cpu_ticks\":250}\n",
			loadSummary{Clients: 8, Seconds: 5, Answered: 1000, Failed: 1, QPS: 200, P50Ms: 0.1, P99Ms: 0.9, MaxMs: 3, CPUTicks: 250}, ""},
		{"empty", "", loadSummary{}, "printed nothing"},
		{"garbage", "panic: boom\n", loadSummary{}, "dns-load output"},
		{"no window", `{"clients":1,"seconds":0}`, loadSummary{}, "no window"},
	} {
		t.Run(c.name, func(t *testing.T) {
			got, err := parseLoadSummary(c.out)
			if c.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), c.wantErr) {
					t.Fatalf("err = %v, want one containing %q", err, c.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got != c.want {
				t.Errorf("got %+v, want %+v", got, c.want)
			}
		})
	}
}

// startTestUpstream runs the upstream on a free port of 127.0.0.1 until
// the test ends.
func startTestUpstream(t *testing.T) netip.AddrPort {
	t.Helper()
	u, err := startUpstream("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := u.close(); err != nil {
			t.Error(err)
		}
	})
	return u.addr
}

func TestUpstream(t *testing.T) {
	t.Cleanup(func() { goleak.VerifyNone(t) }) // after the upstream's cleanup
	addr := startTestUpstream(t)
	for _, c := range []struct {
		name   string
		net    string
		q      string
		qtype  uint16
		rcode  int
		answer bool
	}{
		{"A over UDP", "udp", "N7.Ext.Test.", dns.TypeA, dns.RcodeSuccess, true},
		{"A over TCP", "tcp", "n7.ext.test.", dns.TypeA, dns.RcodeSuccess, true},
		{"AAAA: no data", "udp", "n7.ext.test.", dns.TypeAAAA, dns.RcodeSuccess, false},
		{"outside the zone", "udp", "example.org.", dns.TypeA, dns.RcodeRefused, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			q := new(dns.Msg)
			q.SetQuestion(c.q, c.qtype)
			r, _, err := (&dns.Client{Net: c.net, Timeout: 2 * time.Second}).Exchange(q, addr.String())
			if err != nil {
				t.Fatal(err)
			}
			if r.Rcode != c.rcode || (len(r.Answer) > 0) != c.answer {
				t.Fatalf("reply:\n%v", r)
			}
			if !c.answer {
				return
			}
			a, ok := r.Answer[0].(*dns.A)
			if !ok || !r.Authoritative || a.Hdr.Ttl != upstreamTTL || a.Hdr.Name != c.q {
				t.Fatalf("reply:\n%v", r)
			}
			if got, _ := netip.AddrFromSlice(a.A.To4()); got != upstreamAddr("n7.ext.test.") {
				t.Errorf("address %v, want %v (the same for any case)", got, upstreamAddr("n7.ext.test."))
			}
		})
	}
	if a, b := upstreamAddr("n1.ext.test."), upstreamAddr("n2.ext.test."); a == b || !netip.MustParsePrefix("198.18.0.0/15").Contains(a) {
		t.Errorf("upstreamAddr: %v, %v", a, b)
	}
}

// TestGenerateLoad runs the load generator, as the helper does, against
// the upstream in this process.
func TestGenerateLoad(t *testing.T) {
	t.Cleanup(func() { goleak.VerifyNone(t) }) // after the upstream's cleanup
	addr := startTestUpstream(t)
	names := []queryName{{name: "n0.ext.test."}, {name: "n1.ext.test.", want: upstreamAddr("n1.ext.test.")}}
	if err := checkNames(addr.String(), names, time.Second); err != nil {
		t.Fatal(err)
	}
	wrong := []queryName{{name: "n0.ext.test.", want: netip.MustParseAddr("192.0.2.1")}}
	if err := checkNames(addr.String(), wrong, time.Second); err == nil || !strings.Contains(err.Error(), "want 192.0.2.1") {
		t.Errorf("checkNames with a wrong address: err = %v", err)
	}
	refused := []queryName{{name: "n0.example.org."}}
	if err := checkNames(addr.String(), refused, time.Second); err == nil || !strings.Contains(err.Error(), "REFUSED") {
		t.Errorf("checkNames of a refused name: err = %v", err)
	}

	sum, err := generateLoad(loadConfig{server: addr.String(), names: names, clients: 2,
		duration: 200 * time.Millisecond, warmup: 50 * time.Millisecond, timeout: time.Second, cpuPID: os.Getpid()})
	if err != nil {
		t.Fatal(err)
	}
	if sum.Clients != 2 || sum.Answered == 0 || sum.Failed != 0 || sum.Lost != 0 || sum.P50Ms <= 0 || sum.P99Ms < sum.P50Ms || sum.MaxMs < sum.P99Ms {
		t.Errorf("summary %+v", sum)
	}

	// The whole helper, flags to JSON.
	file := filepath.Join(t.TempDir(), "names")
	if err := os.WriteFile(file, []byte(formatNameList(names)), 0o644); err != nil {
		t.Fatal(err)
	}
	var out, errb strings.Builder
	if code := runHelper([]string{helperDNSLoad, "-server", addr.String(), "-names", file, "-duration", "100ms", "-warmup", "0s"}, &out, &errb); code != 0 {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	if sum, err := parseLoadSummary(out.String()); err != nil || sum.Answered == 0 {
		t.Errorf("helper printed %q: %+v, %v", out.String(), sum, err)
	}
	if code := runHelper([]string{helperDNSLoad, "-server", "nowhere"}, &out, &errb); code != 2 {
		t.Errorf("bad -server: exit %d, want 2", code)
	}
}
