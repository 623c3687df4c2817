package main

import (
	"fmt"
	"io"
	"math"
	"slices"
	"text/tabwriter"
	"time"
)

// maxAttaches bounds -attaches: each attach makes a namespace and a veth.
const maxAttaches = 1000

// attachResult is what the ipam scenario measured: the wall time of
// `weave attach` (the CLI from start to exit, as a user sees it) for
// static addresses and for allocated ones on one host, taken in turn and
// interleaved, and for allocated ones on three hosts all at once (from
// the common start to each CLI's exit).
type attachResult struct {
	Attaches int `json:"attaches"`
	// Static: `weave attach 10.2.x.y/16 netns:X` (outside the
	// allocation range, so the allocator is not involved), one host.
	Static latency `json:"static_one_host"`
	// IPAM: `weave attach netns:X`, one host; the first one seeds the
	// ring.
	IPAM latency `json:"ipam_one_host"`
	// Concurrent: `weave attach netns:X` started at once, spread over
	// three hosts whose ring is not seeded yet, each timed from the
	// common start until its CLI exited (the max is when all were done).
	Concurrent latency `json:"ipam_three_hosts_at_once"`
	// IPAMvsStatic: IPAM/static on one host (median, p99).
	IPAMvsStatic *latencyRatio `json:"ipam_vs_static,omitempty"`
}

type latencyRatio struct {
	Median float64 `json:"median"`
	P99    float64 `json:"p99"`
}

// latency summarises durations: nearest-rank median and 99th percentile
// (the smallest duration that at least that share did not exceed), the
// maximum, and the first one (which may pay for a one-off like seeding).
type latency struct {
	N        int     `json:"n"`
	FirstMs  float64 `json:"first_ms"`
	MedianMs float64 `json:"median_ms"`
	P99Ms    float64 `json:"p99_ms"`
	MaxMs    float64 `json:"max_ms"`
}

func summarize(ds []time.Duration) latency {
	if len(ds) == 0 {
		return latency{}
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	return latency{
		N:        len(ds),
		FirstMs:  ms(ds[0]),
		MedianMs: ms(percentile(s, 0.5)),
		P99Ms:    ms(percentile(s, 0.99)),
		MaxMs:    ms(s[len(s)-1]),
	}
}

// percentile returns the nearest-rank q-th (0 < q <= 1) element of
// sorted, which must not be empty.
func percentile(sorted []time.Duration, q float64) time.Duration {
	rank := int(math.Ceil(q * float64(len(sorted))))
	return sorted[min(max(rank, 1), len(sorted))-1]
}

// setRatios fills IPAMvsStatic once both one-host figures are in.
func (a *attachResult) setRatios() {
	if a.Static.N == 0 || a.IPAM.N == 0 {
		return
	}
	a.IPAMvsStatic = &latencyRatio{Median: ratio(a.IPAM.MedianMs, a.Static.MedianMs), P99: ratio(a.IPAM.P99Ms, a.Static.P99Ms)}
}

// printAttach writes the ipam scenario's table.
func printAttach(w io.Writer, res result) {
	a := res.Attach
	if a == nil {
		a = &attachResult{}
	}
	fmt.Fprintf(w, "\nweave attach latency: wall time of the CLI (start to exit), %d attaches per row\n\n", a.Attaches)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "attach\thosts\tmedian ms\tp99 ms\tmax ms\tfirst ms\tmedian/static\tp99/static\tstatus\t")
	status := "ok"
	if res.Error != "" {
		status = "FAILED"
	}
	num := func(v float64) string {
		if v == 0 {
			return "-"
		}
		return fmt.Sprintf("%.1f", v)
	}
	row := func(name, hosts string, l latency, r *latencyRatio) {
		rm, rp := "-", "-"
		if r != nil && r.Median > 0 && r.P99 > 0 {
			rm, rp = fmt.Sprintf("%.2fx", r.Median), fmt.Sprintf("%.2fx", r.P99)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t\n", name, hosts,
			num(l.MedianMs), num(l.P99Ms), num(l.MaxMs), num(l.FirstMs), rm, rp, status)
	}
	row("static 10.2.x.y/16, in turn", "1", a.Static, nil)
	row("allocated (no ADDR), in turn", "1", a.IPAM, a.IPAMvsStatic)
	row("allocated (no ADDR), all at once", "3", a.Concurrent, nil)
	tw.Flush()
	fmt.Fprintln(w, "in turn: static and allocated attaches alternate on one router, each timed from its CLI's start to exit;")
	fmt.Fprintln(w, "all at once: timed from the common start to each CLI's exit (max: all done); first: the first attach (an allocated one seeds the ring)")
}
