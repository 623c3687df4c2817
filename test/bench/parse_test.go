package main

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestParseIperf(t *testing.T) {
	for _, c := range []struct {
		name    string
		out     string
		bps     float64
		retr    int
		wantErr string
	}{
		{"ok", `{"start":{},"end":{"sum_sent":{"bytes":100,"retransmits":7},"sum_received":{"bytes":99,"bits_per_second":2.5e9}}}`, 2.5e9, 7, ""},
		{"error", `{"start":{},"intervals":[],"end":{},"error":"unable to connect to server: Connection refused"}`, 0, 0, "unable to connect"},
		{"nothing moved", `{"end":{"sum_received":{"bytes":0,"bits_per_second":0}}}`, 0, 0, "nothing received"},
		{"empty", ``, 0, 0, "printed nothing"},
		{"garbage", `iperf3: error - the server is busy`, 0, 0, "iperf3 output"},
	} {
		t.Run(c.name, func(t *testing.T) {
			r, err := parseIperf([]byte(c.out))
			if c.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), c.wantErr) {
					t.Fatalf("err = %v, want one containing %q", err, c.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if r.bitsPerSecond != c.bps || r.retransmits != c.retr {
				t.Errorf("got %+v, want %v bit/s %d retransmits", r, c.bps, c.retr)
			}
		})
	}
}

func TestParseProcStatCPU(t *testing.T) {
	// The command name may hold spaces and parentheses.
	stat := "1234 (weave (x) y) S 1 1234 1234 0 -1 4194560 100 0 0 0 250 75 0 0 20 0 8 0 12345 0 0"
	got, err := parseProcStatCPU(stat)
	if err != nil {
		t.Fatal(err)
	}
	if got != 325 {
		t.Errorf("utime+stime = %d, want 325", got)
	}
	if _, err := parseProcStatCPU("1234 (weave) S 1"); err == nil {
		t.Error("accepted a truncated stat line")
	}
}

func TestLinkNames(t *testing.T) {
	out := "1: lo: <LOOPBACK,UP,LOWER_UP> mtu 65536 qdisc noqueue state UNKNOWN mode DEFAULT group default qlen 1000\\    link/loopback 00:00:00:00:00:00 brd 00:00:00:00:00:00\n" +
		"7: ethwe@if8: <BROADCAST,MULTICAST,UP,LOWER_UP> mtu 1376 qdisc noqueue state UP mode DEFAULT group default qlen 1000\\    link/ether aa:bb:cc:dd:ee:ff brd ff:ff:ff:ff:ff:ff link-netns wb1-h1\n"
	got := strings.Join(linkNames(out), ",")
	if got != "lo,ethwe" {
		t.Errorf("linkNames = %q, want lo,ethwe", got)
	}
}

func TestParseFlags(t *testing.T) {
	var sb strings.Builder
	cfg, err := parseFlags([]string{"-only", "weave-encrypted, vxlan", "-duration", "2s"}, &sb)
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(cfg.scenarios, ","); got != "vxlan,weave-encrypted" {
		t.Errorf("scenarios = %q, want them in run order", got)
	}
	if !cfg.needsWeave() {
		t.Error("needsWeave = false with weave-encrypted selected")
	}
	for _, bad := range [][]string{{"-only", "wireguard"}, {"-duration", "100ms"}, {"-pings", "0"}, {"extra"}} {
		if _, err := parseFlags(bad, &sb); err == nil {
			t.Errorf("parseFlags(%q) accepted it", bad)
		}
	}
}

// TestCipherScenarios: the default run measures each cipher suite beside
// VXLAN, every encrypted scenario says how to launch it, and a row shows
// the suite it measured.
func TestCipherScenarios(t *testing.T) {
	cfg, err := parseFlags(nil, &strings.Builder{})
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{scenarioVXLAN, scenarioEncrypted, scenarioAESGCM, scenarioNaCl} {
		if !slices.Contains(cfg.scenarios, s) {
			t.Errorf("default scenarios %v lack %s", cfg.scenarios, s)
		}
	}
	for name, want := range map[string]string{scenarioAESGCM: "aes-gcm", scenarioNaCl: "nacl", scenarioEncrypted: ""} {
		if enc, ok := encrypted[name]; !ok || enc.cipher != want || !isDataPath(name) {
			t.Errorf("%s: encryption %+v (listed %v), want --cipher %q", name, enc, ok, want)
		}
	}
	if _, ok := encrypted[scenarioWeave]; ok {
		t.Error("the plain weave scenario has a password")
	}
	rep := newReport(cfg, []result{
		{Scenario: scenarioVXLAN, figures: figures{Gbps1: 10, Gbps4: 12}},
		{Scenario: scenarioNaCl, figures: figures{Cipher: "chacha20-poly1305", Gbps1: 2, Gbps4: 3}},
	})
	var out strings.Builder
	rep.print(&out)
	for _, s := range []string{"weave-nacl", "chacha20-poly1305", "0.20x", "0.25x"} {
		if !strings.Contains(out.String(), s) {
			t.Errorf("table lacks %q:\n%s", s, out.String())
		}
	}
}

func TestReportRatios(t *testing.T) {
	cfg, err := parseFlags(nil, &strings.Builder{})
	if err != nil {
		t.Fatal(err)
	}
	rep := newReport(cfg, []result{
		{Scenario: scenarioVXLAN, figures: figures{Gbps1: 10, Gbps4: 12, PingP50Ms: 0.1, PingAvgMs: 0.1, PingP99Ms: 0.2}},
		{Scenario: scenarioWeave, figures: figures{Gbps1: 5, Gbps4: 0, PingP50Ms: 0.3, PingAvgMs: 0.3, PingP99Ms: 0.8}, Error: "4 stream(s): boom"},
	})
	if rep.Results[0].VsVXLAN != nil {
		t.Error("the VXLAN row has ratios to itself")
	}
	got := *rep.Results[1].VsVXLAN
	want := ratios{Gbps1: 0.5, Gbps4: 0, PingP50: 3, PingAvg: 3, PingP99: 4}
	const eps = 1e-9
	if d := got.Gbps1 - want.Gbps1; d > eps || d < -eps || got.Gbps4 != 0 ||
		got.PingP50-want.PingP50 > eps || want.PingP50-got.PingP50 > eps ||
		got.PingAvg-want.PingAvg > eps || want.PingAvg-got.PingAvg > eps ||
		got.PingP99-want.PingP99 > eps || want.PingP99-got.PingP99 > eps {
		t.Errorf("ratios = %+v, want %+v", got, want)
	}
	if f := rep.failed(); len(f) != 1 || f[0] != scenarioWeave {
		t.Errorf("failed = %v, want [weave]", f)
	}
	var out strings.Builder
	rep.print(&out)
	for _, s := range []string{"0.50x", "3.00x", "FAILED", "weave failed: 4 stream(s): boom", "nproc"} {
		if !strings.Contains(out.String(), s) {
			t.Errorf("table lacks %q:\n%s", s, out.String())
		}
	}
}

// TestFastDPScenarios: the plain userspace scenario turns the fast path
// off only where weave has one, weave-fastdp runs with default flags and
// is skipped without a fast path, and the cipher scenarios keep --cipher.
func TestFastDPScenarios(t *testing.T) {
	for _, tc := range []struct {
		name   string
		fastDP bool
		flags  string
		skip   bool
	}{
		{scenarioFastDP, true, "", false},
		{scenarioFastDP, false, "", true},
		{scenarioWeave, true, "--no-fastdp", false},
		{scenarioWeave, false, "", false},
		{scenarioEncrypted, true, "", false},
		{scenarioAESGCM, true, "--cipher aes-gcm", false},
		{scenarioNaCl, false, "--cipher nacl", false},
	} {
		t.Run(fmt.Sprintf("%s/fastdp=%v", tc.name, tc.fastDP), func(t *testing.T) {
			flags, skip := weaveLaunchFlags(tc.name, tc.fastDP)
			if got := strings.Join(flags, " "); got != tc.flags || (skip != "") != tc.skip {
				t.Errorf("weaveLaunchFlags = %q, skip %q; want %q, skip %v", got, skip, tc.flags, tc.skip)
			}
		})
	}
	cfg, err := parseFlags(nil, &strings.Builder{})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(cfg.scenarios, scenarioFastDP) || !isDataPath(scenarioFastDP) {
		t.Errorf("default scenarios %v lack the data-path scenario %s", cfg.scenarios, scenarioFastDP)
	}
}

func TestHelpListsFlag(t *testing.T) {
	help := "Usage:\n  weave launch [flags] [PEER...]\n\nFlags:\n" +
		"      --no-fastdp-later string   not it\n" +
		"      --port int                 the --no-fastdp flag is mentioned here\n" +
		"  -h, --help                     help for launch\n"
	for flag, want := range map[string]bool{"--no-fastdp": false, "--port": true, "--help": true, "--no-fastdp-later": true} {
		if got := helpListsFlag(help, flag); got != want {
			t.Errorf("helpListsFlag(%s) = %v, want %v", flag, got, want)
		}
	}
	if !helpListsFlag(help+"      --no-fastdp                 stay on the userspace path\n", "--no-fastdp") {
		t.Error("helpListsFlag misses --no-fastdp")
	}
}

// TestReportCPUAndSkip: router CPU per Gbit is shown (zero too: a fast
// path leaves the routers idle), and a skipped row is neither a failure
// nor compared with VXLAN.
func TestReportCPUAndSkip(t *testing.T) {
	cfg, err := parseFlags(nil, &strings.Builder{})
	if err != nil {
		t.Fatal(err)
	}
	plain := result{Scenario: scenarioWeave, figures: figures{Gbps1: 2, Gbps4: 3}}
	plain.setRouterCPU(3, 10*time.Second, 25) // 30% of a core, 0.12 s/Gbit
	fast := result{Scenario: scenarioEncrypted, figures: figures{Gbps1: 9, Gbps4: 9}}
	fast.setRouterCPU(0, 10*time.Second, 90)
	rep := newReport(cfg, []result{
		{Scenario: scenarioVXLAN, figures: figures{Gbps1: 10, Gbps4: 12}},
		{Scenario: scenarioFastDP, Skipped: "no fast path"},
		plain, fast,
	})
	if f := rep.failed(); len(f) != 0 {
		t.Errorf("failed = %v, want none", f)
	}
	if rep.Results[1].VsVXLAN != nil {
		t.Error("a skipped row has ratios to VXLAN")
	}
	var out strings.Builder
	rep.print(&out)
	for _, s := range []string{"30%", "0.120", "0%", "0.000", "skipped", "weave-fastdp skipped: no fast path", "CPU s/Gbit", "p50/vxlan"} {
		if !strings.Contains(out.String(), s) {
			t.Errorf("table lacks %q:\n%s", s, out.String())
		}
	}
}
