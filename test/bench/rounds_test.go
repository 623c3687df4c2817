package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func TestMedian(t *testing.T) {
	for _, c := range []struct {
		in   []float64
		want float64
	}{
		{nil, 0},
		{[]float64{3}, 3},
		{[]float64{3, 1, 2}, 2},
		{[]float64{4, 1, 3, 2}, 2.5}, // even: mean of the middle two
		{[]float64{5, 5}, 5},
		{[]float64{10.2, 13.8}, 12},
	} {
		if got := median(c.in); !near(got, c.want) {
			t.Errorf("median(%v) = %v, want %v", c.in, got, c.want)
		}
	}
}

// round is one round's data-path row of scenario weave: a run that
// measured everything when err and skip are empty.
func round(gbps1, gbps4, retr1, p50, cpu float64, err, skip string) result {
	r := result{Scenario: scenarioWeave, figures: figures{MTU: 1376, Path: "sleeve", Gbps1: gbps1, Gbps4: gbps4, Retransmits1: retr1,
		PingP50Ms: p50, PingAvgMs: p50, PingP99Ms: 2 * p50, PingMaxMs: 3 * p50}, Error: err, Skipped: skip}
	if cpu >= 0 {
		r.RouterCPUPct = &cpu
	}
	return r
}

func TestMergeRounds(t *testing.T) {
	for _, c := range []struct {
		name   string
		rounds []result
		// want is the merged row without Runs, which must hold the
		// rounds as given.
		want result
	}{{
		name:   "one round is that round",
		rounds: []result{round(5, 6, 7, 0.4, 120, "", "")},
		want:   withRounds(round(5, 6, 7, 0.4, 120, "", ""), 1),
	}, {
		name:   "one failed round is that round, partial figures and error as given",
		rounds: []result{round(5, 0, 7, 0, -1, "4 stream(s): boom", "")},
		want:   withRounds(round(5, 0, 7, 0, -1, "4 stream(s): boom", ""), 0),
	}, {
		name:   "one skipped round",
		rounds: []result{{Scenario: scenarioFastDP, Skipped: "no fast path"}},
		want:   result{Scenario: scenarioFastDP, Skipped: "no fast path"},
	}, {
		name:   "odd count: the middle value of each figure, independently",
		rounds: []result{round(10, 4, 0, 0.5, 100, "", ""), round(14, 2, 9, 0.3, 140, "", ""), round(12, 3, 3, 0.4, 90, "", "")},
		want:   withRounds(round(12, 3, 3, 0.4, 100, "", ""), 3),
	}, {
		name: "even count: the mean of the middle two",
		rounds: []result{round(10, 4, 0, 0.5, 100, "", ""), round(14, 2, 9, 0.3, 140, "", ""),
			round(12, 3, 3, 0.4, 90, "", ""), round(11, 1, 2, 0.2, 110, "", "")},
		want: withRounds(round(11.5, 2.5, 2.5, 0.35, 105, "", ""), 4),
	}, {
		name: "failed rounds left out of the medians, the first error kept with its round",
		rounds: []result{round(10, 4, 1, 0.5, 100, "", ""), round(1, 1, 50, 9, 5, "ping: 3 of 50 lost", ""),
			round(14, 2, 3, 0.3, 140, "", ""), round(0, 0, 0, 0, -1, "weave launch: exit status 1", "")},
		want: withError(withRounds(round(12, 3, 2, 0.4, 120, "", ""), 2), "round 2: ping: 3 of 50 lost"),
	}, {
		name: "no round succeeded: the medians of what the failed rounds measured",
		rounds: []result{round(0, 0, 0, 0, -1, "weave launch: exit status 1", ""), round(2, 0, 4, 0.5, 30, "4 stream(s): boom", ""),
			round(4, 6, 8, 0.7, -1, "ping: 1 of 50 lost", "")},
		want: withError(withRounds(round(3, 6, 6, 0.6, 30, "", ""), 0), "round 1: weave launch: exit status 1"),
	}, {
		name: "skipped in every round alike: the reason as given",
		rounds: []result{{Scenario: scenarioFastDP, Skipped: "no fast path"}, {Scenario: scenarioFastDP, Skipped: "no fast path"},
			{Scenario: scenarioFastDP, Skipped: "no fast path"}},
		want: result{Scenario: scenarioFastDP, Skipped: "no fast path"},
	}, {
		name:   "skipped in one round: kept with its round, the others' medians",
		rounds: []result{round(10, 4, 1, 0.5, 100, "", ""), {Scenario: scenarioWeave, Skipped: "gone"}, round(14, 2, 3, 0.3, 140, "", "")},
		want:   withSkip(withRounds(round(12, 3, 2, 0.4, 120, "", ""), 2), "round 2: gone"),
	}} {
		t.Run(c.name, func(t *testing.T) {
			got := mergeRounds(c.rounds)
			if len(got.Runs) != len(c.rounds) {
				t.Fatalf("%d runs, want %d", len(got.Runs), len(c.rounds))
			}
			for i, run := range got.Runs {
				if want := roundOf(i+1, &c.rounds[i]); !reflect.DeepEqual(run, want) {
					t.Errorf("run %d = %+v, want %+v as measured", i+1, run, want)
				}
			}
			got.Runs = nil
			if !sameRow(got, c.want) {
				t.Errorf("merged\n%s\nwant\n%s", rowJSON(t, got), rowJSON(t, c.want))
			}
		})
	}
}

func withRounds(r result, n int) result     { r.Rounds = n; return r }
func withError(r result, err string) result { r.Error = err; return r }
func withSkip(r result, skip string) result { r.Skipped = skip; return r }

func rowJSON(t testing.TB, r result) string {
	t.Helper()
	b, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// sameRow compares rows but for Runs, figures to within rounding.
func sameRow(a, b result) bool {
	ptrNear := func(x, y *float64) bool { return (x == nil) == (y == nil) && (x == nil || near(*x, *y)) }
	return a.Scenario == b.Scenario && a.MTU == b.MTU && a.Cipher == b.Cipher && a.Path == b.Path &&
		a.Error == b.Error && a.Skipped == b.Skipped && a.Rounds == b.Rounds &&
		near(a.Gbps1, b.Gbps1) && near(a.Gbps4, b.Gbps4) &&
		near(a.Retransmits1, b.Retransmits1) && near(a.Retransmits4, b.Retransmits4) &&
		near(a.PingP50Ms, b.PingP50Ms) && near(a.PingAvgMs, b.PingAvgMs) && near(a.PingP99Ms, b.PingP99Ms) &&
		near(a.PingMaxMs, b.PingMaxMs) && near(a.PingLossPct, b.PingLossPct) &&
		ptrNear(a.RouterCPUPct, b.RouterCPUPct) && ptrNear(a.RouterCPUPerGbit, b.RouterCPUPerGbit)
}

// TestReportRounds: ratios come from the medians, the table says how
// many rounds each row's medians are over, and the JSON keeps every
// round's figures; with -rounds 1 the table is as it was.
func TestReportRounds(t *testing.T) {
	if _, err := parseFlags([]string{"-rounds", "0"}, &strings.Builder{}); err == nil {
		t.Error("parseFlags accepted -rounds 0")
	}
	cfg, err := parseFlags(nil, &strings.Builder{})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.rounds != 3 {
		t.Errorf("default -rounds %d, want 3", cfg.rounds)
	}
	vxlan := func(gbps1 float64) result {
		return result{Scenario: scenarioVXLAN, figures: figures{Gbps1: gbps1, Gbps4: gbps1}}
	}
	rows := []result{
		mergeRounds([]result{vxlan(10.2), vxlan(13.8), vxlan(12)}),
		mergeRounds([]result{round(5.5, 5, 1, 0.4, 100, "", ""), round(0, 0, 0, 0, -1, "boom", ""), round(6.5, 7, 1, 0.4, 100, "", "")}),
	}
	rep := newReport(cfg, rows)
	if got := rep.Results[1].VsVXLAN; got == nil || !near(got.Gbps1, 0.5) || !near(got.Gbps4, 0.5) {
		t.Errorf("ratios %+v, want 6/12 and 6/12 from the medians", got)
	}
	var out strings.Builder
	rep.print(&out)
	for _, s := range []string{"median of 3 rounds", "rounds ok", "3/3", "2/3", "0.50x", "FAILED", "weave failed: round 2: boom"} {
		if !strings.Contains(out.String(), s) {
			t.Errorf("table lacks %q:\n%s", s, out.String())
		}
	}

	file := filepath.Join(t.TempDir(), "bench.json")
	if err := rep.writeJSON(file); err != nil {
		t.Fatal(err)
	}
	var back report
	if b, err := os.ReadFile(file); err != nil {
		t.Fatal(err)
	} else if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if w := back.Results[1]; back.Settings.Rounds != 3 || w.Rounds != 2 || len(w.Runs) != 3 ||
		w.Runs[0].Gbps1 != 5.5 || w.Runs[1].Error != "boom" || w.Runs[2].Round != 3 {
		t.Errorf("JSON: settings rounds %d, weave row rounds %d, runs %+v", back.Settings.Rounds, w.Rounds, w.Runs)
	}

	one, err := parseFlags([]string{"-rounds", "1"}, &strings.Builder{})
	if err != nil {
		t.Fatal(err)
	}
	out.Reset()
	newReport(one, []result{mergeRounds([]result{vxlan(10)}), mergeRounds([]result{round(5, 5, 1, 0.4, 100, "", "")})}).print(&out)
	if strings.Contains(out.String(), "rounds") || !strings.Contains(out.String(), "0.50x") {
		t.Errorf("-rounds 1 table mentions rounds or lacks its ratio:\n%s", out.String())
	}
}
