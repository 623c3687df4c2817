package mesh

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/weavelab/weave/mesh/handshake"
)

// Unit tests of the admission gate, with a stepped clock.

type fakeClock struct{ t time.Time }

func (c *fakeClock) now() time.Time          { return c.t }
func (c *fakeClock) advance(d time.Duration) { c.t = c.t.Add(d) }

// newTestGate returns a gate configured by DefaultConfig adjusted by mod,
// its clock and its log.
func newTestGate(tb testing.TB, mod func(*Config)) (*admission, *fakeClock, *logCounter) {
	tb.Helper()
	cfg := DefaultConfig()
	if mod != nil {
		mod(&cfg)
	}
	clock := &fakeClock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	logs := &logCounter{}
	return newAdmission(cfg, clock.now, slog.New(countingHandler{c: logs})), clock, logs
}

func src(i int) netip.Addr { return netip.AddrFrom4([4]byte{192, 0, 2, byte(i)}) }

func remote(i int) net.Addr { return &net.TCPAddr{IP: src(i).AsSlice(), Port: 40000 + i} }

var errTestHandshake = fmt.Errorf("handshake: %w: bad magic", handshake.ErrProtocol)

// try admits a connection from source i and, if admitted, fails its
// handshake. It returns the admission error.
func try(a *admission, i int) error {
	slot, err := a.admit(src(i), remote(i))
	if err != nil {
		return err
	}
	slot.release()
	a.failed(src(i), remote(i), errTestHandshake)
	return nil
}

func TestGateCapsPendingHandshakes(t *testing.T) {
	a, _, _ := newTestGate(t, func(c *Config) { c.MaxPendingHandshakes, c.MaxPendingPerSource = 4, 2 })
	admit := func(i int, want error) *pendingSlot {
		t.Helper()
		slot, err := a.admit(src(i), remote(i))
		if !errors.Is(err, want) || (err == nil) != (slot != nil) {
			t.Fatalf("admit from %d = %v, %v; want %v", i, slot, err, want)
		}
		return slot
	}
	a1, _ := admit(1, nil), admit(1, nil)
	admit(1, errSourcePending)
	b1 := admit(2, nil)
	b1.release()
	b1.release() // idempotent
	admit(2, nil)
	admit(3, nil)
	// Full: source 2 holds 1, fewer than source 1's 2, so it evicts
	// source 1's oldest.
	admit(2, nil)
	if a1.held() || !a1.evicted.Load() {
		t.Error("the oldest slot of the source holding the most was not evicted")
	}
	if a.pending != 4 || a.perSource[src(1)] != 1 || a.perSource[src(2)] != 2 || a.perSource[src(3)] != 1 {
		t.Errorf("pending %d, by source %v; want 1, 2 and 1", a.pending, a.perSource)
	}

	// A source holding as many as the most waits.
	g, _, _ := newTestGate(t, func(c *Config) { c.MaxPendingHandshakes, c.MaxPendingPerSource = 2, 2 })
	for _, i := range []int{1, 2} {
		if _, err := g.admit(src(i), remote(i)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := g.admit(src(2), remote(2)); !errors.Is(err, errPendingLimit) {
		t.Errorf("admit from a source holding as many as any = %v, want %v", err, errPendingLimit)
	}
}

// TestGateEvictsForSourcesHoldingFewer: with every pending slot taken by
// sources holding several (an attacker's idle connections), a connection
// from a source holding none gets in, and the evicted connection is
// closed, whether its closer was set before or after the eviction.
func TestGateEvictsForSourcesHoldingFewer(t *testing.T) {
	a, _, _ := newTestGate(t, func(c *Config) { c.MaxPendingHandshakes, c.MaxPendingPerSource = 6, 3 })
	var slots []*pendingSlot
	closed := map[int]bool{}
	for i := range 6 {
		s, err := a.admit(src(1+i/3), remote(1+i/3))
		if err != nil {
			t.Fatal(err)
		}
		if i != 0 { // the first one's closer comes late
			s.onEvict(func() { closed[i] = true })
		}
		slots = append(slots, s)
	}
	for peer := 10; peer < 14; peer++ {
		s, err := a.admit(src(peer), remote(peer))
		if err != nil {
			t.Fatalf("peer %d refused with every slot held by sources holding 3: %v", peer, err)
		}
		defer s.release()
	}
	// Sources 1 and 2 held 3 each: evicted in turn, oldest first.
	slots[0].onEvict(func() { closed[0] = true })
	if !closed[0] || !closed[3] || !closed[1] || !closed[4] || closed[2] || closed[5] {
		t.Errorf("closed %v; want the two oldest of each attacker source", closed)
	}
	if a.pending != 6 || a.perSource[src(1)] != 1 || a.perSource[src(2)] != 1 {
		t.Errorf("pending %d, by source %v", a.pending, a.perSource)
	}
	// Every source holds one now: a fifth peer evicts the oldest of all.
	if _, err := a.admit(src(14), remote(14)); err != nil || !closed[2] || closed[5] {
		t.Errorf("a fifth peer: %v, closed %v; want it in and source 1's last slot closed", err, closed)
	}
	for _, s := range slots {
		s.release() // evicted ones: no-ops
	}
	if a.pending != 5 {
		t.Errorf("pending %d after the attackers released, want the 5 peers", a.pending)
	}
}

func TestGateChargesFailedHandshakes(t *testing.T) {
	a, clock, _ := newTestGate(t, func(c *Config) {
		c.FailedHandshakeBurst, c.FailedHandshakeInterval = 3, 5*time.Second
	})
	for i := 0; i < 3; i++ {
		if err := try(a, 1); err != nil {
			t.Fatalf("attempt %d refused: %v", i, err)
		}
	}
	if err := try(a, 1); !errors.Is(err, errSourceFailures) {
		t.Fatalf("attempt after the burst = %v, want %v", err, errSourceFailures)
	}
	if err := try(a, 2); err != nil {
		t.Errorf("another source refused: %v", err)
	}
	clock.advance(5*time.Second - 1)
	if err := try(a, 1); !errors.Is(err, errSourceFailures) {
		t.Fatalf("attempt before the refill = %v, want %v", err, errSourceFailures)
	}
	clock.advance(1)
	if err := try(a, 1); err != nil {
		t.Fatalf("attempt after one interval refused: %v", err)
	}
	if err := try(a, 1); !errors.Is(err, errSourceFailures) {
		t.Fatalf("second attempt after one interval = %v, want %v", err, errSourceFailures)
	}
	// Debt is 3 intervals now; after them the whole burst is back.
	clock.advance(15 * time.Second)
	for i := 0; i < 3; i++ {
		if err := try(a, 1); err != nil {
			t.Fatalf("attempt %d after the refill refused: %v", i, err)
		}
	}
	if err := try(a, 1); !errors.Is(err, errSourceFailures) {
		t.Fatalf("attempt after the second burst = %v, want %v", err, errSourceFailures)
	}
	// Successful handshakes (the slot released without a failure) are
	// not charged.
	for i := 0; i < 100; i++ {
		slot, err := a.admit(src(3), remote(3))
		if err != nil {
			t.Fatalf("successful handshake %d: %v", i, err)
		}
		slot.release()
	}
}

func TestGateForgetsLeastRecentSource(t *testing.T) {
	a, _, _ := newTestGate(t, func(c *Config) { c.FailedHandshakeBurst, c.MaxTrackedSources = 1, 4 })
	for i := 1; i <= 5; i++ {
		try(a, i)
	}
	if len(a.sources) != 4 || a.lru.Len() != 4 {
		t.Fatalf("%d sources tracked, want 4", len(a.sources))
	}
	// 1 was forgotten; 2 is refused and so seen again, which makes 3 the
	// least recent.
	if err := try(a, 2); !errors.Is(err, errSourceFailures) {
		t.Errorf("source 2 = %v, want refused", err)
	}
	if err := try(a, 1); err != nil {
		t.Errorf("forgotten source 1 refused: %v", err)
	}
	if err := try(a, 2); !errors.Is(err, errSourceFailures) {
		t.Errorf("source 2 = %v, want still refused", err)
	}
	if err := try(a, 3); err != nil {
		t.Errorf("source 3 = %v, want forgotten and admitted", err)
	}
	// Many sources never grow the table.
	for i := 0; i < 10000; i++ {
		ip := netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
		a.failed(ip, remote(0), errTestHandshake)
	}
	if len(a.sources) != 4 || a.lru.Len() != 4 {
		t.Errorf("%d sources tracked after 10,000, want 4", len(a.sources))
	}
}

func TestGateSummarisesRepeatedFailures(t *testing.T) {
	a, clock, logs := newTestGate(t, func(c *Config) { c.FailedHandshakeBurst = 10 })
	for i := 0; i < 50; i++ {
		try(a, 1)
	}
	if got := logs.all(); len(got) != 1 || !strings.HasPrefix(got[0], "inbound handshake failed addr=192.0.2.1:40001") {
		t.Fatalf("log after 50 attempts = %q, want the first failure only", got)
	}
	a.summarise()
	want := []string{"more failed handshakes addr=192.0.2.1 failed=9 refused=40"}
	if got := logs.all()[1:]; len(got) != 1 || !strings.HasPrefix(got[0], want[0]) {
		t.Fatalf("summary = %q, want %q", got, want)
	}
	// A quiet interval: no summary. One more: the source is quiet again,
	// and its next event is logged in full.
	a.summarise()
	clock.advance(time.Minute)
	a.summarise()
	if n := len(logs.all()); n != 2 {
		t.Fatalf("%d log lines after quiet intervals, want 2", n)
	}
	try(a, 1)
	if got := logs.all(); len(got) != 3 || !strings.HasPrefix(got[2], "inbound handshake failed addr=192.0.2.1") {
		t.Fatalf("log after a quiet source failed again = %q", got)
	}

	// Many sources: at most logLinesPerInterval full lines, then as many
	// summary lines plus one for the rest.
	a, clock, logs = newTestGate(t, nil)
	const n = 100
	for i := 0; i < n; i++ {
		try(a, i)
	}
	if got := len(logs.all()); got != logLinesPerInterval {
		t.Errorf("%d log lines for %d sources, want %d", got, n, logLinesPerInterval)
	}
	a.summarise()
	got := logs.all()[logLinesPerInterval:]
	if len(got) != logLinesPerInterval+1 {
		t.Fatalf("%d summary lines, want %d", len(got), logLinesPerInterval+1)
	}
	rest := n - 2*logLinesPerInterval
	if want := fmt.Sprintf("more failed handshakes from other addresses sources=%d failed=%d refused=0", rest, rest); !strings.HasPrefix(got[len(got)-1], want) {
		t.Errorf("last summary line %q, want %q", got[len(got)-1], want)
	}
	// Nothing left to say and no debt: the table empties.
	a.summarise()
	clock.advance(time.Hour)
	a.summarise()
	if len(a.sources) != 0 {
		t.Errorf("%d sources still tracked after an idle hour", len(a.sources))
	}
}
