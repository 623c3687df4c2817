package daemon

import "testing"

func TestRouterProcs(t *testing.T) {
	for _, c := range []struct {
		env   string
		procs int
		want  int
	}{
		{"", 1, 0},  // already one
		{"", 2, 1},  // small host: one event loop
		{"", 3, 1},  //
		{"", 4, 0},  // parallel openers from 4: keep them
		{"", 64, 0}, //
		{"2", 2, 0}, // the operator's choice wins
		{"8", 2, 0},
	} {
		got, why := routerProcs(c.env, c.procs)
		if got != c.want || why == "" {
			t.Errorf("routerProcs(%q, %d) = %d, %q; want %d", c.env, c.procs, got, why, c.want)
		}
	}
}
