package main

import (
	"cmp"
	"fmt"
	"slices"
)

// roundFigures are one round's raw data-path figures of a scenario, kept
// in the JSON report next to the medians its row shows. Zero figures were
// not measured.
type roundFigures struct {
	Round int `json:"round"` // 1, 2, ...
	figures
	Error   string `json:"error,omitempty"`
	Skipped string `json:"skipped,omitempty"`
}

func roundOf(round int, r *result) roundFigures {
	return roundFigures{Round: round, figures: r.figures, Error: r.Error, Skipped: r.Skipped}
}

// medianFigures are the row's figures that mergeRounds takes the median
// of, each with the test of whether a round measured it (zero is "not
// measured" but for retransmits and loss, which may be zero when measured).
var medianFigures = []struct {
	field    func(*result) *float64
	measured func(*result) bool
}{
	{func(r *result) *float64 { return &r.Gbps1 }, func(r *result) bool { return r.Gbps1 > 0 }},
	{func(r *result) *float64 { return &r.Retransmits1 }, func(r *result) bool { return r.Gbps1 > 0 }},
	{func(r *result) *float64 { return &r.Gbps4 }, func(r *result) bool { return r.Gbps4 > 0 }},
	{func(r *result) *float64 { return &r.Retransmits4 }, func(r *result) bool { return r.Gbps4 > 0 }},
	{func(r *result) *float64 { return &r.PingP50Ms }, func(r *result) bool { return r.PingP50Ms > 0 }},
	{func(r *result) *float64 { return &r.PingAvgMs }, func(r *result) bool { return r.PingAvgMs > 0 }},
	{func(r *result) *float64 { return &r.PingP99Ms }, func(r *result) bool { return r.PingP99Ms > 0 }},
	{func(r *result) *float64 { return &r.PingMaxMs }, func(r *result) bool { return r.PingMaxMs > 0 }},
	{func(r *result) *float64 { return &r.PingLossPct }, func(r *result) bool { return r.PingP50Ms > 0 || r.PingLossPct > 0 }},
}

// medianOptional are the row's figures that are nil when not measured.
var medianOptional = []func(*result) **float64{
	func(r *result) **float64 { return &r.RouterCPUPct },
	func(r *result) **float64 { return &r.RouterCPUPerGbit },
}

// mergeRounds folds the rows that rounds 1, 2, ... (rounds[0], rounds[1],
// ...) measured of one data-path scenario into the row it reports. Each
// figure is the median over the rounds that succeeded, neither failed nor
// skipped; when none did, over the failed rounds that measured it (one
// failed run reports what it could measure). The first error and the first
// skip are kept, after "round N: " when there were several rounds (but for
// a skip every round gave alike). MTU, cipher, path and software are the first
// round's that has them; Runs holds every round as measured. One round
// gives that round's row, plus Rounds and Runs.
func mergeRounds(rounds []result) result {
	if len(rounds) == 0 {
		return result{}
	}
	out := result{Scenario: rounds[0].Scenario}
	inRound := func(i int, msg string) string {
		if len(rounds) == 1 {
			return msg
		}
		return fmt.Sprintf("round %d: %s", i+1, msg)
	}
	var ok, failed []*result
	for i := range rounds {
		r := &rounds[i]
		out.Runs = append(out.Runs, roundOf(i+1, r))
		if r.Error != "" {
			failed = append(failed, r)
			if out.Error == "" {
				out.Error = inRound(i, r.Error)
			}
		}
		if r.Skipped != "" && out.Skipped == "" {
			out.Skipped = r.Skipped
			if slices.ContainsFunc(rounds, func(o result) bool { return o.Skipped != r.Skipped }) {
				out.Skipped = inRound(i, r.Skipped)
			}
		}
		if r.Error == "" && r.Skipped == "" {
			ok = append(ok, r)
		}
	}
	out.Rounds = len(ok)
	pool := ok
	if len(pool) == 0 {
		pool = failed
	}
	for _, r := range pool {
		out.MTU = cmp.Or(out.MTU, r.MTU)
		out.Cipher = cmp.Or(out.Cipher, r.Cipher)
		out.Path = cmp.Or(out.Path, r.Path)
		out.Software = cmp.Or(out.Software, r.Software)
	}
	var vs []float64
	for _, f := range medianFigures {
		vs = vs[:0]
		for _, r := range pool {
			if f.measured(r) {
				vs = append(vs, *f.field(r))
			}
		}
		if len(vs) > 0 {
			*f.field(&out) = median(vs)
		}
	}
	for _, f := range medianOptional {
		vs = vs[:0]
		for _, r := range pool {
			if p := *f(r); p != nil {
				vs = append(vs, *p)
			}
		}
		if len(vs) > 0 {
			m := median(vs)
			*f(&out) = &m
		}
	}
	return out
}

// median returns the middle value of vs, the mean of the middle two for
// an even count; 0 for none. It sorts vs.
func median(vs []float64) float64 {
	if len(vs) == 0 {
		return 0
	}
	slices.Sort(vs)
	n := len(vs)
	if n%2 == 1 {
		return vs[n/2]
	}
	return (vs[n/2-1] + vs[n/2]) / 2
}
