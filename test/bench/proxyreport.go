package main

import (
	"fmt"
	"io"
	"slices"
	"text/tabwriter"
	"time"
)

// maxProxyRuns bounds -proxy-runs: each run starts a container.
const maxProxyRuns = 200

// The ways the proxy scenario starts its probe container, one row each.
const (
	proxyPathProxy    = "proxy"     // docker run through weave's proxy
	proxyPathDocker   = "docker"    // docker run on the Engine's socket, Docker's bridge
	proxyPathWeaveRun = "weave-run" // weave run: docker run -d, then attach
)

// proxyResult is what the proxy scenario measured: for each way of
// starting the same probe container, the time from the start of the CLI
// to the moment the listener accepted the probe's connection.
type proxyResult struct {
	Runs  int        `json:"runs"`
	Image string     `json:"image,omitempty"`
	Rows  []proxyRow `json:"rows"`
	// VsDocker: proxy/docker, median and p90.
	VsDocker *proxyRatio `json:"proxy_vs_docker,omitempty"`
}

type proxyRow struct {
	Path string `json:"path"`
	// Reached counts the runs whose connection the listener saw; the
	// latencies are theirs.
	Reached  int     `json:"reached"`
	MedianMs float64 `json:"median_ms"`
	P90Ms    float64 `json:"p90_ms"`
	MaxMs    float64 `json:"max_ms"`
	// FirstMiss says what happened to the first run whose connection
	// never arrived.
	FirstMiss string `json:"first_miss,omitempty"`
}

type proxyRatio struct {
	Median float64 `json:"median"`
	P90    float64 `json:"p90"`
}

// summarizeProxy makes a row from the latencies of the runs that reached
// the listener.
func summarizeProxy(path string, reached []time.Duration, firstMiss string) proxyRow {
	r := proxyRow{Path: path, Reached: len(reached), FirstMiss: firstMiss}
	if len(reached) == 0 {
		return r
	}
	s := slices.Clone(reached)
	slices.Sort(s)
	r.MedianMs, r.P90Ms, r.MaxMs = ms(percentile(s, 0.5)), ms(percentile(s, 0.9)), ms(s[len(s)-1])
	return r
}

// row returns the row of path, or nil.
func (p *proxyResult) row(path string) *proxyRow {
	for i := range p.Rows {
		if p.Rows[i].Path == path {
			return &p.Rows[i]
		}
	}
	return nil
}

// setRatio fills VsDocker once both rows have figures.
func (p *proxyResult) setRatio() {
	px, dk := p.row(proxyPathProxy), p.row(proxyPathDocker)
	if px == nil || dk == nil || px.Reached == 0 || dk.Reached == 0 {
		p.VsDocker = nil
		return
	}
	p.VsDocker = &proxyRatio{Median: ratio(px.MedianMs, dk.MedianMs), P90: ratio(px.P90Ms, dk.P90Ms)}
}

// missing lists the proxy and docker rows whose runs did not all reach the
// listener (weave run's misses are what its row is there to show).
func (p *proxyResult) missing() []string {
	var bad []string
	for _, r := range p.Rows {
		if r.Path != proxyPathWeaveRun && r.Reached < p.Runs {
			bad = append(bad, fmt.Sprintf("%s: %d of %d runs never reached the listener (first: %s)", r.Path, p.Runs-r.Reached, p.Runs, r.FirstMiss))
		}
	}
	return bad
}

func proxyPathLabel(path string) string {
	switch path {
	case proxyPathProxy:
		return "docker run via weave's proxy"
	case proxyPathDocker:
		return "docker run, Docker's bridge (baseline)"
	case proxyPathWeaveRun:
		return "weave run (attach after start)"
	}
	return path
}

// printProxy writes the proxy scenario's table.
func printProxy(w io.Writer, res result) {
	p := res.Proxy
	if p == nil {
		p = &proxyResult{}
	}
	fmt.Fprintf(w, "\ndocker run to the container's first packet: `CLI --rm IMAGE probe LISTENER:PORT`, %d runs per row, interleaved;\n"+
		"from the CLI's start to the listener's accept of the probe's one TCP connection\n\n", p.Runs)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "started with\treached\tmedian ms\tp90 ms\tmax ms\tstatus\t")
	num := func(v float64) string {
		if v == 0 {
			return "-"
		}
		return fmt.Sprintf("%.1f", v)
	}
	for _, r := range p.Rows {
		status := "ok"
		if r.Path != proxyPathWeaveRun && r.Reached < p.Runs || res.Error != "" {
			status = "FAILED"
		}
		fmt.Fprintf(tw, "%s\t%d/%d\t%s\t%s\t%s\t%s\t\n", proxyPathLabel(r.Path), r.Reached, p.Runs, num(r.MedianMs), num(r.P90Ms), num(r.MaxMs), status)
	}
	if len(p.Rows) == 0 {
		fmt.Fprintln(tw, "-\t-\t-\t-\t-\tFAILED\t")
	}
	tw.Flush()
	if p.VsDocker != nil {
		fmt.Fprintf(w, "proxy/baseline: median %.2fx, p90 %.2fx\n", p.VsDocker.Median, p.VsDocker.P90)
	}
	if r := p.row(proxyPathWeaveRun); r != nil && r.FirstMiss != "" {
		fmt.Fprintf(w, "weave run, first miss: %s\n", r.FirstMiss)
	}
	for _, line := range []string{
		"proxy: the weave router's Docker API proxy; the container waits for ethwe, then probes a listener in a",
		"namespace attached to the same router. baseline: the same image and command on the Engine's own socket with",
		"Docker's default bridge, probing a listener on the bridge's address: Docker's own start-to-first-packet, without",
		"the proxy, the wait for ethwe and the attach (the proxy's cost is the difference). weave run: docker run -d,",
		"then attach; the probe dials once, as soon as it starts, so it reaches the weave listener only when it happens",
		"to start, or to retry its SYN, after the attach (reached counts those): the race the proxy removes.",
	} {
		fmt.Fprintln(w, line)
	}
}
