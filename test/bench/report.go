package main

import (
	"cmp"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strings"
	"text/tabwriter"
	"time"
)

// figures are a data-path scenario's measurements (one round's, or the
// medians of a row). Zero figures were not measured.
type figures struct {
	MTU int `json:"container_mtu,omitempty"`
	// Cipher is the data-plane cipher suite weave's connection reported
	// (empty without a password).
	Cipher string `json:"cipher,omitempty"`
	// Path is the path weave's connection reported (fastdp, sleeve;
	// empty from a weave before the fast path).
	Path string `json:"path,omitempty"`
	// Software is what carried the traffic in a reference row that is
	// not weave (wireguard-go: its version); empty otherwise.
	Software     string  `json:"software,omitempty"`
	Gbps1        float64 `json:"tcp_1_stream_gbps"`
	Gbps4        float64 `json:"tcp_4_streams_gbps"`
	Retransmits1 float64 `json:"tcp_1_stream_retransmits"`
	Retransmits4 float64 `json:"tcp_4_streams_retransmits"`
	PingP50Ms    float64 `json:"ping_p50_ms"`
	PingAvgMs    float64 `json:"ping_avg_ms"`
	PingP99Ms    float64 `json:"ping_p99_ms"`
	PingMaxMs    float64 `json:"ping_max_ms"`
	PingLossPct  float64 `json:"ping_loss_percent"`
	// RouterCPUPct is the CPU time of both weave routers (both
	// wireguard-go processes) during the iperf3 runs, in percent of one
	// core; nil when not measured (no routers: VXLAN).
	RouterCPUPct *float64 `json:"router_cpu_percent,omitempty"`
	// RouterCPUPerGbit is that CPU time in seconds per Gbit the runs
	// moved: the routers' cores busy per Gbit/s carried. Work the kernel
	// does (VXLAN, weave's fast path) is not in it.
	RouterCPUPerGbit *float64 `json:"router_cpu_seconds_per_gbit,omitempty"`
}

// result is one scenario's row. Zero figures were not measured. A
// data-path row reports for each figure the median over the rounds that
// measured it (see mergeRounds).
type result struct {
	Scenario string `json:"scenario"`
	figures
	VsVXLAN *ratios `json:"vs_vxlan,omitempty"`
	// Rounds is how many rounds of a data-path scenario succeeded: its
	// figures are their medians. Runs holds every round it ran, as
	// measured, failed and skipped ones too.
	Rounds int            `json:"rounds,omitempty"`
	Runs   []roundFigures `json:"runs,omitempty"`
	// Attach holds the ipam scenario's figures (the fields above are
	// the data path's and stay zero in its row).
	Attach *attachResult `json:"attach,omitempty"`
	// DNS holds the dns scenario's figures.
	DNS *dnsResult `json:"dns,omitempty"`
	// Proxy holds the proxy scenario's figures.
	Proxy *proxyResult `json:"proxy,omitempty"`
	Error string       `json:"error,omitempty"`
	// Skipped says why the scenario could not run here (not a failure).
	Skipped string `json:"skipped,omitempty"`
}

// setRouterCPU records cpuSeconds of router time spent over elapsed while
// gbit were moved.
func (res *result) setRouterCPU(cpuSeconds float64, elapsed time.Duration, gbit float64) {
	if elapsed > 0 {
		pct := 100 * cpuSeconds / elapsed.Seconds()
		res.RouterCPUPct = &pct
	}
	if gbit > 0 {
		perGbit := cpuSeconds / gbit
		res.RouterCPUPerGbit = &perGbit
	}
}

// dataPath reports whether the row measures the data path (iperf3, ping).
func (res *result) dataPath() bool { return isDataPath(res.Scenario) }

// ratios compare a row with the VXLAN row: throughput row/VXLAN (higher
// is better) and latency row/VXLAN (lower is better). Zero: not known.
type ratios struct {
	Gbps1   float64 `json:"tcp_1_stream"`
	Gbps4   float64 `json:"tcp_4_streams"`
	PingP50 float64 `json:"ping_p50"`
	PingAvg float64 `json:"ping_avg"`
	PingP99 float64 `json:"ping_p99"`
}

// machine describes where the figures come from.
type machine struct {
	CPUs      int    `json:"nproc"`
	CPUModel  string `json:"cpu_model,omitempty"`
	Kernel    string `json:"kernel"`
	GoVersion string `json:"go_version"`
	Iperf3    string `json:"iperf3,omitempty"`
	// LoadAvg is /proc/loadavg at the end: other work on the machine
	// makes the figures noisy.
	LoadAvg string `json:"loadavg,omitempty"`
}

// report is the whole output.
type report struct {
	Time     time.Time `json:"time"`
	Machine  machine   `json:"machine"`
	Settings struct {
		IperfSeconds   int     `json:"iperf_seconds"`
		Pings          int     `json:"pings"`
		PingIntervalMs float64 `json:"ping_interval_ms"`
		UnderlayMTU    int     `json:"underlay_mtu"`
		// Rounds is how many times each data-path scenario ran, in
		// rotation; its row has the medians.
		Rounds int `json:"rounds"`
	} `json:"settings"`
	Results []result `json:"results"`
}

func newReport(cfg config, results []result) *report {
	r := &report{Time: time.Now().UTC(), Machine: describeMachine(), Results: results}
	r.Settings.IperfSeconds = int(cfg.duration.Round(time.Second).Seconds())
	r.Settings.Pings = cfg.pings
	r.Settings.PingIntervalMs = ms(cfg.interval)
	r.Settings.UnderlayMTU = lanMTU
	r.Settings.Rounds = cfg.rounds
	var base *result
	for i := range results {
		if results[i].Scenario == scenarioVXLAN {
			base = &results[i]
		}
	}
	for i := range results {
		// A row skipped in some rounds only has the other rounds' medians.
		if res := &results[i]; base != nil && res != base && res.dataPath() && (res.Skipped == "" || res.Rounds > 0) {
			res.VsVXLAN = &ratios{
				Gbps1:   ratio(res.Gbps1, base.Gbps1),
				Gbps4:   ratio(res.Gbps4, base.Gbps4),
				PingP50: ratio(res.PingP50Ms, base.PingP50Ms),
				PingAvg: ratio(res.PingAvgMs, base.PingAvgMs),
				PingP99: ratio(res.PingP99Ms, base.PingP99Ms),
			}
		}
	}
	return r
}

func ratio(v, ref float64) float64 {
	if v == 0 || ref == 0 {
		return 0
	}
	return v / ref
}

// failed lists the scenarios that did not produce all their figures.
func (r *report) failed() []string {
	var names []string
	for _, res := range r.Results {
		if res.Error != "" {
			names = append(names, res.Scenario)
		}
	}
	return names
}

// print writes the table, the errors of failed rows and the machine line.
func (r *report) print(w io.Writer) {
	num := func(v float64, prec int) string {
		if v == 0 {
			return "-"
		}
		return fmt.Sprintf("%.*f", prec, v)
	}
	x := func(v float64) string {
		if v == 0 {
			return "-"
		}
		return fmt.Sprintf("%.2fx", v)
	}
	m := r.Machine
	fmt.Fprintf(w, "%s; machine: %s, nproc %d, kernel %s, %s, %s, load average %s\n", r.Time.Format("2006-01-02 15:04 MST"),
		cmp.Or(m.CPUModel, "unknown CPU"), m.CPUs, m.Kernel, m.GoVersion, m.Iperf3, m.LoadAvg)
	if slices.ContainsFunc(r.Results, func(res result) bool { return res.dataPath() }) {
		r.printDataPath(w, num, x)
	}
	for _, res := range r.Results {
		switch res.Scenario {
		case scenarioIPAM:
			printAttach(w, res)
		case scenarioDNS:
			printDNS(w, res)
		case scenarioProxy:
			printProxy(w, res)
		}
	}
	for _, res := range r.Results {
		if res.Error != "" {
			fmt.Fprintf(w, "\n%s failed: %s\n", res.Scenario, indent(res.Error))
		}
	}
}

// printDataPath writes the table of the data-path rows; with several
// rounds, a column says how many succeeded (the figures are their medians).
func (r *report) printDataPath(w io.Writer, num func(float64, int) string, x func(float64) string) {
	rounds := ""
	if r.Settings.Rounds > 1 {
		rounds = fmt.Sprintf("; figures: median of %d rounds run in rotation", r.Settings.Rounds)
	}
	fmt.Fprintf(w, "\ncontainer to container across two host namespaces: iperf3 TCP %ds, %d pings every %gms, underlay MTU %d%s\n\n",
		r.Settings.IperfSeconds, r.Settings.Pings, r.Settings.PingIntervalMs, r.Settings.UnderlayMTU, rounds)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	header := "scenario\tpath\tcipher\tMTU\tGbit/s 1 stream\tGbit/s 4 streams\tping p50 ms\tp99 ms\t" +
		"1 stream/vxlan\t4 streams/vxlan\tp50/vxlan\tp99/vxlan\trouter CPU\tCPU s/Gbit\tstatus\t"
	if rounds != "" {
		header += "rounds ok\t"
	}
	fmt.Fprintln(tw, header)
	for _, res := range r.Results {
		if !res.dataPath() {
			continue
		}
		rt := ratios{}
		if res.VsVXLAN != nil {
			rt = *res.VsVXLAN
		}
		cpu, perGbit := "-", "-"
		if res.RouterCPUPct != nil {
			cpu = fmt.Sprintf("%.0f%%", *res.RouterCPUPct)
		}
		if res.RouterCPUPerGbit != nil {
			perGbit = fmt.Sprintf("%.3f", *res.RouterCPUPerGbit)
		}
		status := "ok"
		switch {
		case res.Error != "":
			status = "FAILED"
		case res.Skipped != "" && res.Rounds == 0:
			status = "skipped"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t", res.Scenario,
			cmp.Or(res.Path, "-"), cmp.Or(res.Cipher, "-"), num(float64(res.MTU), 0), num(res.Gbps1, 2), num(res.Gbps4, 2),
			num(res.PingP50Ms, 3), num(res.PingP99Ms, 3),
			x(rt.Gbps1), x(rt.Gbps4), x(rt.PingP50), x(rt.PingP99), cpu, perGbit, status)
		if rounds != "" {
			fmt.Fprintf(tw, "%d/%d\t", res.Rounds, len(res.Runs))
		}
		fmt.Fprintln(tw)
	}
	tw.Flush()
	for _, res := range r.Results {
		if res.dataPath() && res.Skipped != "" {
			fmt.Fprintf(w, "%s skipped: %s\n", res.Scenario, res.Skipped)
		}
	}
	for _, res := range r.Results {
		if res.Scenario == scenarioWireGuardGo && (res.Skipped == "" || res.Rounds > 0) {
			fmt.Fprintf(w, "%s: the reference, not weave: %s (userspace WireGuard, routed: no bridge)\n",
				res.Scenario, cmp.Or(res.Software, "wireguard-go"))
		}
	}
	fmt.Fprintln(w, "ratios: throughput row/vxlan (higher is better), latency row/vxlan (lower is better);\n"+
		"router CPU: both weave routers (both wireguard-go processes) during the iperf3 runs, in % of one core and\n"+
		"in CPU seconds per Gbit moved (cores busy per Gbit/s); the kernel's work (VXLAN's, the fast path's) is not counted")
}

// writeJSON writes the report to path.
func (r *report) writeJSON(path string) error {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return fmt.Errorf("encode report: %w", err)
	}
	if err := os.WriteFile(path, append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("write report: %w", err)
	}
	return nil
}

func describeMachine() machine {
	m := machine{CPUs: runtime.NumCPU(), GoVersion: runtime.Version()}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = strings.TrimSpace(string(b))
	}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				m.CPUModel = strings.TrimSpace(v)
				break
			}
		}
	}
	if b, err := os.ReadFile("/proc/loadavg"); err == nil {
		if f := strings.Fields(string(b)); len(f) >= 3 {
			m.LoadAvg = strings.Join(f[:3], " ")
		}
	}
	if out, err := exec.Command("iperf3", "--version").Output(); err == nil {
		m.Iperf3 = strings.TrimSpace(strings.SplitN(string(out), "\n", 2)[0])
	}
	return m
}

func indent(s string) string { return strings.ReplaceAll(s, "\n", "\n    ") }
