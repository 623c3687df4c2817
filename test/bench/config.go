package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Scenario names, in the order they run and print. VXLAN runs first so
// that the weave rows can be compared with it. The ipam scenario measures
// `weave attach` latency on hosts of its own (see ipam_linux.go), and the
// dns scenario weaveDNS next to dnsmasq (see dns_linux.go), not the data
// path. The wireguard-go scenario is not weave: it is a reference row, the
// userspace WireGuard between the same hosts (see wireguard_linux.go).
const (
	scenarioVXLAN     = "vxlan"
	scenarioFastDP    = "weave-fastdp"    // default flags: the kernel fast path, where weave has one
	scenarioWeave     = "weave"           // the userspace path, plain (--no-fastdp where weave has a fast path)
	scenarioEncrypted = "weave-encrypted" // with a password, the routers' default cipher
	scenarioAESGCM    = "weave-aes-gcm"   // with a password, both routers --cipher aes-gcm
	scenarioNaCl      = "weave-nacl"      // with a password, both routers --cipher nacl
	// scenarioWireGuardGo is the reference: userspace WireGuard, not weave.
	scenarioWireGuardGo = "wireguard-go"
	scenarioIPAM        = "ipam"
	scenarioDNS         = "dns"
	scenarioProxy       = "proxy"
)

// encryption is how an encrypted weave scenario launches its routers.
type encryption struct {
	cipher string // --cipher value, "" for the default (auto)
	suite  string // the suite the connection must then report, "" for any
}

// encrypted lists the weave scenarios with a password.
var encrypted = map[string]encryption{
	scenarioEncrypted: {},
	scenarioAESGCM:    {cipher: "aes-gcm", suite: "aes-256-gcm"},
	scenarioNaCl:      {cipher: "nacl", suite: "chacha20-poly1305"},
}

// noFastDPFlag keeps a router off the kernel fast path. A weave whose
// `weave launch --help` does not list it has no fast path: the userspace
// path is all there is, and scenario weave-fastdp is skipped.
const noFastDPFlag = "--no-fastdp"

// weaveLaunchFlags returns the `weave launch` flags, beyond the nickname
// and the peer, of weave data-path scenario name, given whether the weave
// binary has the kernel fast path. A non-empty skip says why the scenario
// cannot run with this binary.
func weaveLaunchFlags(name string, fastDP bool) (flags []string, skip string) {
	switch {
	case name == scenarioFastDP && !fastDP:
		return nil, "this weave has no kernel fast path (weave launch --help lists no " + noFastDPFlag + ")"
	case name == scenarioWeave && fastDP:
		flags = append(flags, noFastDPFlag)
	}
	if enc, ok := encrypted[name]; ok && enc.cipher != "" {
		flags = append(flags, "--cipher", enc.cipher)
	}
	return flags, ""
}

// vxlanMaxMTU is the largest container MTU VXLAN carries on the 1500-byte
// underlay without fragmenting: 1500 less its 50 bytes of headers.
const vxlanMaxMTU = 1450

var allScenarios = []string{scenarioVXLAN, scenarioFastDP, scenarioWeave, scenarioEncrypted, scenarioAESGCM, scenarioNaCl,
	scenarioWireGuardGo, scenarioIPAM, scenarioProxy, scenarioDNS}

// config is what the flags ask for.
type config struct {
	duration   time.Duration // of each iperf3 run and each dns load run
	rounds     int           // runs of each data-path scenario, in rotation; rows have the medians
	pings      int           // echo requests per latency measurement
	interval   time.Duration // between echo requests
	scenarios  []string      // subset of allScenarios, in their order
	vxlanMTU   int           // container MTU in the VXLAN scenario
	attaches   int           // weave attach calls per measurement of the ipam scenario
	dnsNames   int           // names of each kind in the dns scenario
	dnsClients []int         // concurrent clients of the dns scenario's rows
	proxyRuns  int           // container starts per row of the proxy scenario
	jsonOut    string        // file for the JSON report, "" for none
	weaveBin   string        // prebuilt weave binary, "" to build ./cmd/weave
	// wireGuardGoBin is a prebuilt wireguard-go, "" to go install the
	// pinned version (wireGuardGoModule).
	wireGuardGoBin string
	verbose        bool // log every command
}

func parseFlags(args []string, stderr io.Writer) (config, error) {
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: go run ./test/bench [flags] (as root)\n\n"+
			"Measures iperf3 TCP throughput (1 and 4 streams), ping latency (median, p99) and the\n"+
			"weave routers' (wireguard-go's) CPU time per Gbit between two container namespaces on two host\n"+
			"namespaces, for: %[1]s\n"+
			"(weave-fastdp: default flags, skipped when weave has no fast path; weave: the\n"+
			"userspace path, with --no-fastdp where weave has a fast path; %[5]s: not weave but the\n"+
			"reference, the userspace WireGuard between the same hosts, skipped when it cannot be built);\n"+
			"and (scenario %[2]s) the latency of `weave attach` with an allocated address, in turn\n"+
			"on one host (next to static-address attaches) and all at once over three hosts;\n"+
			"and (scenario %[3]s) weaveDNS's queries/s and latency for a weave name and a forwarded\n"+
			"name, next to dnsmasq serving the same names on the same host;\n"+
			"and (scenario %[4]s) the time from docker run to the container's first packet, through\n"+
			"weave's Docker API proxy and with plain docker run on Docker's bridge.\n"+
			"The data-path scenarios run -rounds times in rotation (each in turn, then each\n"+
			"again, ...) so that all see the same machine conditions, and each row gives every\n"+
			"figure's median over its rounds; %[2]s, %[3]s and %[4]s run once, after them.\n\n",
			strings.Join(dataPathScenarios(), ", "), scenarioIPAM, scenarioDNS, scenarioProxy, scenarioWireGuardGo)
		fs.PrintDefaults()
	}
	var cfg config
	var only, dnsClients string
	fs.DurationVar(&cfg.duration, "duration", 5*time.Second, "length of each iperf3 run and of each dns load run (whole seconds)")
	fs.IntVar(&cfg.rounds, "rounds", 3, "times each data-path scenario runs, in rotation; each row reports the medians (1: one run each)")
	fs.IntVar(&cfg.pings, "pings", 1000, "echo requests per latency measurement")
	fs.DurationVar(&cfg.interval, "ping-interval", 10*time.Millisecond, "interval between echo requests")
	fs.IntVar(&cfg.vxlanMTU, "vxlan-mtu", vxlanMaxMTU, "container MTU in the vxlan scenario (1376 matches weave's default)")
	fs.IntVar(&cfg.attaches, "attaches", 100, "weave attach calls per measurement in the ipam scenario")
	fs.IntVar(&cfg.dnsNames, "dns-names", 100, "weave names registered, and forwarded names asked, in the dns scenario")
	fs.StringVar(&dnsClients, "dns-clients", "1,8", "comma-separated numbers of concurrent clients in the dns scenario, one row each")
	fs.IntVar(&cfg.proxyRuns, "proxy-runs", 10, "container starts per row in the proxy scenario")
	fs.StringVar(&only, "only", strings.Join(allScenarios, ","), "comma-separated scenarios to run")
	fs.StringVar(&cfg.jsonOut, "json", "", "also write the results as JSON to this file")
	fs.StringVar(&cfg.weaveBin, "weave", "", "weave binary to use (default: go build ./cmd/weave into a temporary directory)")
	fs.StringVar(&cfg.wireGuardGoBin, "wireguard-go", "", "wireguard-go binary for the wireguard-go scenario (default: go install "+wireGuardGoModule+" into a temporary directory)")
	fs.BoolVar(&cfg.verbose, "v", false, "log every command run")
	if err := fs.Parse(args); err != nil {
		return cfg, err
	}
	fail := func(format string, a ...any) (config, error) {
		err := fmt.Errorf(format, a...)
		fmt.Fprintf(stderr, "bench: %v\n", err)
		fs.Usage()
		return cfg, err
	}
	if fs.NArg() > 0 {
		return fail("unexpected arguments %q", fs.Args())
	}
	if cfg.duration < time.Second {
		return fail("-duration %v: want at least 1s", cfg.duration)
	}
	if cfg.rounds < 1 {
		return fail("-rounds %d: want at least 1", cfg.rounds)
	}
	if cfg.pings < 1 {
		return fail("-pings %d: want at least 1", cfg.pings)
	}
	if cfg.interval < 2*time.Millisecond {
		return fail("-ping-interval %v: want at least 2ms", cfg.interval)
	}
	if cfg.attaches < 1 || cfg.attaches > maxAttaches {
		return fail("-attaches %d: want 1 to %d", cfg.attaches, maxAttaches)
	}
	if cfg.dnsNames < 1 || cfg.dnsNames > maxDNSNames {
		return fail("-dns-names %d: want 1 to %d", cfg.dnsNames, maxDNSNames)
	}
	if cfg.proxyRuns < 1 || cfg.proxyRuns > maxProxyRuns {
		return fail("-proxy-runs %d: want 1 to %d", cfg.proxyRuns, maxProxyRuns)
	}
	clients, err := parseClientCounts(dnsClients, maxDNSClients)
	if err != nil {
		return fail("-dns-clients: %w", err)
	}
	cfg.dnsClients = clients
	if cfg.vxlanMTU < 1280 || cfg.vxlanMTU > vxlanMaxMTU {
		return fail("-vxlan-mtu %d: want 1280 to %d (the 1500 underlay less VXLAN's 50 bytes)", cfg.vxlanMTU, vxlanMaxMTU)
	}
	want := map[string]bool{}
	for _, s := range strings.Split(only, ",") {
		s = strings.TrimSpace(s)
		if s == "" {
			continue
		}
		if !slices.Contains(allScenarios, s) {
			return fail("-only: unknown scenario %q (have %s)", s, strings.Join(allScenarios, ", "))
		}
		want[s] = true
	}
	for _, s := range allScenarios {
		if want[s] {
			cfg.scenarios = append(cfg.scenarios, s)
		}
	}
	if len(cfg.scenarios) == 0 {
		return fail("-only: no scenario given")
	}
	return cfg, nil
}

// needsWeave reports whether any selected scenario runs weave.
func (c config) needsWeave() bool { return slices.ContainsFunc(c.scenarios, runsWeave) }

// runsWeave reports whether scenario s runs weave: all do but the
// references, VXLAN and wireguard-go.
func runsWeave(s string) bool { return s != scenarioVXLAN && s != scenarioWireGuardGo }

// needsLab reports whether any selected scenario measures the data path
// (and so needs the two-host lab, iperf3 and ping).
func (c config) needsLab() bool {
	return slices.ContainsFunc(c.scenarios, isDataPath)
}

// isDataPath reports whether scenario s is measured with iperf3 and ping
// on the two-host lab.
func isDataPath(s string) bool { return s != scenarioIPAM && s != scenarioDNS && s != scenarioProxy }

// dataPathScenarios are the scenarios measured with iperf3 and ping.
func dataPathScenarios() []string {
	return slices.DeleteFunc(slices.Clone(allScenarios), func(s string) bool { return !isDataPath(s) })
}

// parseClientCounts parses a comma-separated list of client counts, each 1
// to maxClients, and returns them without duplicates, in the order given.
func parseClientCounts(s string, maxClients int) ([]int, error) {
	var counts []int
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		n, err := strconv.Atoi(f)
		if err != nil || n < 1 || n > maxClients {
			return nil, fmt.Errorf("%q: want numbers from 1 to %d", f, maxClients)
		}
		if !slices.Contains(counts, n) {
			counts = append(counts, n)
		}
	}
	if len(counts) == 0 {
		return nil, fmt.Errorf("%q: no client count", s)
	}
	return counts, nil
}

// checkPrerequisites fails with a message that says how to fix it when
// not run as root or when a tool is missing.
func checkPrerequisites(cfg config) error {
	if os.Geteuid() != 0 {
		return errors.New("this benchmark builds network namespaces: run it as root (sudo go run ./test/bench, or sudo make bench)")
	}
	tools := []struct{ cmd, pkg string }{{"ip", "iproute2"}}
	if cfg.needsLab() {
		tools = append(tools, []struct{ cmd, pkg string }{{"ss", "iproute2"}, {"iperf3", "iperf3"}, {"ping", "iputils-ping"}}...)
	}
	if slices.Contains(cfg.scenarios, scenarioWireGuardGo) {
		tools = append(tools, struct{ cmd, pkg string }{"sysctl", "procps"})
	}
	if slices.Contains(cfg.scenarios, scenarioDNS) {
		tools = append(tools, struct{ cmd, pkg string }{"dnsmasq", "dnsmasq-base"})
	}
	if slices.Contains(cfg.scenarios, scenarioProxy) {
		tools = append(tools, struct{ cmd, pkg string }{"docker", "docker.io (and a running Docker Engine)"})
	}
	if cfg.needsWeave() && cfg.weaveBin == "" {
		tools = append(tools, struct{ cmd, pkg string }{"go", "golang (or pass -weave BINARY)"})
	}
	var missing, pkgs []string
	for _, t := range tools {
		if _, err := exec.LookPath(t.cmd); err != nil {
			missing = append(missing, t.cmd)
			if !slices.Contains(pkgs, t.pkg) {
				pkgs = append(pkgs, t.pkg)
			}
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("missing %s: install with apt-get install -y %s", strings.Join(missing, ", "), strings.Join(pkgs, " "))
	}
	for _, b := range []struct{ flag, path string }{{"-weave", cfg.weaveBin}, {"-wireguard-go", cfg.wireGuardGoBin}} {
		if b.path == "" {
			continue
		}
		if st, err := os.Stat(b.path); err != nil || st.IsDir() || st.Mode()&0o111 == 0 {
			return fmt.Errorf("%s %s: not an executable file", b.flag, b.path)
		}
	}
	return nil
}
