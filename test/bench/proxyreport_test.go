package main

import (
	"bytes"
	"strings"
	"testing"
	"time"
)

func TestProxySummaryAndPrint(t *testing.T) {
	msd := func(v ...int) []time.Duration {
		var out []time.Duration
		for _, x := range v {
			out = append(out, time.Duration(x)*time.Millisecond)
		}
		return out
	}
	p := &proxyResult{Runs: 10, Rows: []proxyRow{
		summarizeProxy(proxyPathProxy, msd(600, 500, 700, 550, 650, 580, 620, 640, 560, 900), ""),
		summarizeProxy(proxyPathDocker, msd(300, 250, 350, 275, 325, 290, 310, 320, 280, 450), ""),
		summarizeProxy(proxyPathWeaveRun, msd(1500), "run 1: no connection: weave run: exit status 1"),
	}}
	p.setRatio()
	px := p.row(proxyPathProxy)
	if px.Reached != 10 || px.MedianMs != 600 || px.P90Ms != 700 || px.MaxMs != 900 {
		t.Errorf("proxy row %+v: want 10 reached, median 600, p90 700, max 900 (nearest rank)", *px)
	}
	if p.VsDocker == nil || !near(p.VsDocker.Median, 2) || !near(p.VsDocker.P90, 2) {
		t.Errorf("ratios %+v, want 2x median and p90", p.VsDocker)
	}
	if bad := p.missing(); len(bad) != 0 {
		t.Errorf("missing() = %q: weave run's misses are expected", bad)
	}

	var b bytes.Buffer
	printProxy(&b, result{Scenario: scenarioProxy, Proxy: p})
	out := b.String()
	for _, want := range []string{"via weave's proxy", "10/10", "1/10", "600.0", "median 2.00x, p90 2.00x", "baseline", "first miss: run 1"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "FAILED") {
		t.Errorf("a complete result printed FAILED:\n%s", out)
	}

	p.Rows[1] = summarizeProxy(proxyPathDocker, msd(300), "run 2: no connection")
	p.setRatio()
	if bad := p.missing(); len(bad) != 1 || !strings.Contains(bad[0], "docker: 9 of 10") {
		t.Errorf("missing() = %q, want the docker row's 9 misses", bad)
	}
	p.Rows[1] = summarizeProxy(proxyPathDocker, nil, "run 1: no connection")
	if p.setRatio(); p.VsDocker != nil {
		t.Errorf("ratio %+v without a baseline", p.VsDocker)
	}
}
