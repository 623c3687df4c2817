package main

import (
	"bytes"
	"strings"
	"testing"
	"time"
)

func TestSummarize(t *testing.T) {
	var ds []time.Duration
	for i := 100; i >= 1; i-- { // 100 ms down to 1 ms: first is the largest
		ds = append(ds, time.Duration(i)*time.Millisecond)
	}
	for _, c := range []struct {
		name string
		in   []time.Duration
		want latency
	}{
		{"empty", nil, latency{}},
		{"one", []time.Duration{3 * time.Millisecond}, latency{N: 1, FirstMs: 3, MedianMs: 3, P99Ms: 3, MaxMs: 3}},
		{"hundred", ds, latency{N: 100, FirstMs: 100, MedianMs: 50, P99Ms: 99, MaxMs: 100}},
		{"two", []time.Duration{2 * time.Millisecond, time.Millisecond}, latency{N: 2, FirstMs: 2, MedianMs: 1, P99Ms: 2, MaxMs: 2}},
	} {
		t.Run(c.name, func(t *testing.T) {
			if got := summarize(c.in); got != c.want {
				t.Errorf("summarize = %+v, want %+v", got, c.want)
			}
		})
	}
}

func TestPrintAttach(t *testing.T) {
	a := &attachResult{
		Attaches: 100,
		Static:   latency{N: 100, MedianMs: 10, P99Ms: 20, MaxMs: 30, FirstMs: 12},
		IPAM:     latency{N: 100, MedianMs: 15, P99Ms: 30, MaxMs: 40, FirstMs: 25},
	}
	a.setRatios()
	var b bytes.Buffer
	printAttach(&b, result{Scenario: scenarioIPAM, Attach: a})
	out := b.String()
	for _, want := range []string{"1.50x", "static 10.2.x.y/16", "all at once", "ok"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
}
