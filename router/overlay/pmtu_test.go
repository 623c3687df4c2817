package overlay

import (
	"testing"

	"github.com/weavelab/weave/mesh/handshake"
)

// TestPMTUSearch runs the search against simulated paths: probes up to
// the path's MTU are acknowledged, larger ones vanish (or, beyond the
// local interface's MTU, are refused at once).
func TestPMTUSearch(t *testing.T) {
	for _, tc := range []struct {
		name           string
		max, path, dev int
		lose           map[int]bool // sizes whose probes are lost although they fit
		want           int
		maxRounds      int
	}{
		{name: "whole underlay", max: 1500, path: 1500, dev: 1500, want: 1500, maxRounds: 1},
		{name: "narrow hop", max: 1500, path: 1400, dev: 1500, want: 1400, maxRounds: 5},
		{name: "narrow local interface", max: 1500, path: 1400, dev: 1400, want: 1400, maxRounds: 5},
		{name: "odd size", max: 9000, path: 1453, dev: 9000, want: 1453, maxRounds: 6},
		{name: "no answer", max: 1500, path: 300, dev: 1500, want: MinPathMTU, maxRounds: 6},
		{name: "just above floor", max: 1500, path: 577, dev: 1500, want: 577, maxRounds: 6},
		{name: "remote announces less", max: 1280, path: 1500, dev: 1500, want: 1280, maxRounds: 1},
		{name: "lost probe errs low", max: 1500, path: 1500, dev: 1500, lose: map[int]bool{1500: true}, want: 1499, maxRounds: 6},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newPMTUSearch(MinPathMTU, tc.max)
			rounds := 0
			for s.next() {
				rounds++
				if rounds > 20 {
					t.Fatal("search does not end")
				}
				for k := range s.n {
					size := s.sizes[k]
					if size <= s.lo || size >= s.hi || (k > 0 && size <= s.sizes[k-1]) {
						t.Fatalf("round %d: bad candidate %d in (%d, %d): %v", rounds, size, s.lo, s.hi, s.sizes[:s.n])
					}
					switch {
					case size > tc.dev:
						s.failed[k] = true
					case size <= tc.path && !tc.lose[size]:
						s.ack(s.ids[k], size)
					}
				}
				s.ack(uint64(s.round)<<8, 0) // an unknown id changes nothing
			}
			if s.lo != tc.want {
				t.Fatalf("settled at %d, want %d", s.lo, tc.want)
			}
			if s.answer != (tc.path >= MinPathMTU+1) {
				t.Fatalf("answer %v for a path of %d", s.answer, tc.path)
			}
			if rounds > tc.maxRounds {
				t.Fatalf("%d rounds, want at most %d", rounds, tc.maxRounds)
			}
		})
	}
}

// TestPMTUDecided checks when a round may end before its timeout.
func TestPMTUDecided(t *testing.T) {
	s := newPMTUSearch(MinPathMTU, 1500)
	s.next()
	if s.decided() {
		t.Fatal("decided before any answer")
	}
	s.ack(s.ids[0], 0)
	if s.decided() {
		t.Fatal("decided while larger probes are outstanding")
	}
	for k := 1; k < s.n; k++ {
		s.failed[k] = true
	}
	if !s.decided() {
		t.Fatal("not decided: all larger probes refused locally")
	}
	s.failed[s.n-1] = false
	s.ack(s.ids[s.n-1], 0)
	if !s.decided() {
		t.Fatal("not decided although the largest probe was acknowledged")
	}
}

// TestPMTUOverLoopback: two overlays on loopback (MTU 65536) with a 1500
// underlay settle at 1500 and report it.
func TestPMTUOverLoopback(t *testing.T) {
	a, b := newHost(t, 30, realSocket), newHost(t, 31, realSocket)
	if a.ov.prober == nil {
		t.Fatal("no raw socket for probes: run the tests as root (CAP_NET_RAW)")
	}
	connect(t, a, b, handshake.SuiteAESGCM)
	waitEstablished(t, a, b)
	for _, h := range []*host{a, b} {
		waitFor(t, func() bool {
			ps := h.ov.Stats().Peers
			return len(ps) == 1 && ps[0].PMTUProbed
		})
		ps := h.ov.Stats().Peers[0]
		if ps.PMTU != 1500 || ps.MaxFrame != 1500-Overhead+ethHeader {
			t.Fatalf("host %s: pmtu %d max frame %d, want 1500 and %d", h.name, ps.PMTU, ps.MaxFrame, 1500-Overhead+ethHeader)
		}
	}
}
