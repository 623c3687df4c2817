package daemon

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// fakeClock is a clock that tests step.
type fakeClock struct{ t time.Time }

func (c *fakeClock) now() time.Time            { return c.t }
func (c *fakeClock) step(d time.Duration)      { c.t = c.t.Add(d) }
func newFakeClock() *fakeClock                 { return &fakeClock{t: time.Unix(1_700_000_000, 0)} }
func lines(b *bytes.Buffer) []string           { return strings.Split(strings.TrimSpace(b.String()), "\n") }
func countLines(b *bytes.Buffer, s string) int { return strings.Count(b.String(), s) }

var suppressedRE = regexp.MustCompile(`\((\d+) similar messages suppressed\)`)

// suppressedTotal adds up the counts of every summary line.
func suppressedTotal(b *bytes.Buffer) int {
	n := 0
	for _, m := range suppressedRE.FindAllStringSubmatch(b.String(), -1) {
		k, _ := strconv.Atoi(m[1])
		n += k
	}
	return n
}

// TestLogFloodBounded: 100k "connection closed" failures from 20k sources
// within one interval give a bounded number of lines (they used to give
// 100k), the tracked kinds stay within MaxKeys, and once the interval ends
// the summaries account for every record that was held back.
func TestLogFloodBounded(t *testing.T) {
	var out bytes.Buffer
	clk := newFakeClock()
	cfg := DefaultRateLimit()
	cfg.Now = clk.now
	h := NewRateLimitHandler(slog.NewTextHandler(&out, nil), cfg)
	log := slog.New(h).With("component", "mesh")
	const total = 100_000
	for i := range total {
		remote := fmt.Sprintf("10.%d.%d.%d:%d", i/65536%256, i/256%256, i%256, 40000+i%20000)
		log.Info("connection closed", "conn", i, "addr", fmt.Sprintf("10.1.%d.%d:6783", i%20000/256, i%256),
			"remote", remote, "reason", "connection refused")
	}
	if got := len(h.st.keys); got > cfg.MaxKeys {
		t.Errorf("%d kinds tracked, want at most %d", got, cfg.MaxKeys)
	}
	if n := countLines(&out, "\n"); n > cfg.PerMessage+5 {
		t.Fatalf("%d lines for %d records in one interval; want at most about %d", n, total, cfg.PerMessage)
	}
	passed := countLines(&out, `msg="connection closed"`)
	clk.step(cfg.Interval)
	log.Info("something else")
	if err := h.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := passed + suppressedTotal(&out); got != total {
		t.Errorf("%d passed + %d suppressed = %d, want all %d accounted for:\n%s", passed, suppressedTotal(&out), got, total, out.String())
	}
	if n := len(lines(&out)); n > cfg.PerMessage+20 {
		t.Errorf("%d lines in all", n)
	}
}

// TestLogRepeatsSummarised: identical records pass Burst times per
// interval, then one summary line says how many were held back; other
// kinds, and records below MinLevel, are not affected.
func TestLogRepeatsSummarised(t *testing.T) {
	var out bytes.Buffer
	clk := newFakeClock()
	cfg := DefaultRateLimit()
	cfg.Now = clk.now
	log := slog.New(NewRateLimitHandler(slog.NewTextHandler(&out, &slog.HandlerOptions{Level: slog.LevelDebug}), cfg))
	for range 12 {
		log.Warn("accept failed", "err", "too many open files", "retry_in", "5ms")
		log.Info("connection closed", "remote", "10.0.0.9:1234", "reason", "wrong password")
		log.Debug("unknown message", "peer", "x")
	}
	// The mesh's gate logs a source as addr=ip:port, a new port each time.
	for i := range 12 {
		log.Warn("inbound handshake failed", "addr", fmt.Sprintf("10.0.0.7:%d", 40000+i), "reason", "garbage")
	}
	if n := countLines(&out, "inbound handshake failed"); n != cfg.Burst {
		t.Errorf("%d inbound handshake failed lines from one host on new ports, want %d", n, cfg.Burst)
	}
	if n := countLines(&out, "accept failed"); n != cfg.Burst {
		t.Errorf("%d accept failed lines, want %d", n, cfg.Burst)
	}
	if n := countLines(&out, "unknown message"); n != 12 {
		t.Errorf("%d debug lines, want all 12", n)
	}
	clk.step(cfg.Interval + time.Second)
	log.Warn("accept failed", "err", "too many open files")
	if !strings.Contains(out.String(), `msg="accept failed (7 similar messages suppressed)" err="too many open files"`) {
		t.Errorf("no summary for accept failed:\n%s", out.String())
	}
	if !strings.Contains(out.String(), `msg="connection closed (7 similar messages suppressed)"`) {
		t.Errorf("no summary for connection closed:\n%s", out.String())
	}
	if n := countLines(&out, `msg="accept failed" `); n != cfg.Burst+1 {
		t.Errorf("after the interval: %d accept failed lines, want %d", n, cfg.Burst+1)
	}
}

// TestLogRotates: writing past the size limit rotates weave.log into
// weave.log.1.. keeping only keep old files, none of them much over the
// limit, and a router's stderr follows the current file (it used to grow
// one file without bound).
func TestLogRotates(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "weave.log")
	const limit, keep = 4096, 3
	var opened []string
	rf, err := OpenRotating(path, limit, keep, func(f *os.File) error {
		opened = append(opened, f.Name())
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	defer rf.Close()
	log := slog.New(slog.NewTextHandler(rf, nil))
	for i := range 2000 {
		log.Info("line", "i", i, "pad", strings.Repeat("x", 40))
	}
	entries, _ := os.ReadDir(dir)
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
		st, _ := os.Stat(filepath.Join(dir, e.Name()))
		if st.Size() > limit {
			t.Errorf("%s is %d bytes, over the %d limit", e.Name(), st.Size(), limit)
		}
	}
	if want := []string{"weave.log", "weave.log.1", "weave.log.2", "weave.log.3"}; strings.Join(names, " ") != strings.Join(want, " ") {
		t.Errorf("files %q, want %q", names, want)
	}
	if len(opened) < 10 {
		t.Errorf("onOpen called %d times, want once per rotation", len(opened))
	}
	last, _ := os.ReadFile(path)
	if !strings.Contains(string(last), "i=1999") {
		t.Errorf("the newest line is not in weave.log")
	}
	old, _ := os.ReadFile(path + ".1")
	if !strings.HasSuffix(strings.TrimSpace(string(old)), "x") || strings.Contains(string(old), "i=1999") {
		t.Errorf("weave.log.1 does not end with a whole older line")
	}

	// A launch rotates a full file before handing it to the router.
	if err := os.WriteFile(path, bytes.Repeat([]byte("y"), DefaultLogMaxSize), 0o640); err != nil {
		t.Fatal(err)
	}
	f, err := OpenLog(dir)
	if err != nil {
		t.Fatal(err)
	}
	f.Close()
	if st, _ := os.Stat(path); st.Size() != 0 {
		t.Errorf("OpenLog kept a full log (%d bytes)", st.Size())
	}
	if st, _ := os.Stat(path + ".1"); st.Size() != DefaultLogMaxSize {
		t.Errorf("weave.log.1 is not the full log")
	}
}

// TestDaemonLoggerRateLimited: the daemon's logger is the rate-limited one.
func TestDaemonLoggerRateLimited(t *testing.T) {
	var out bytes.Buffer
	log := NewLogger(slog.LevelInfo, &out)
	for range 1000 {
		log.Warn("connection closed", "remote", "10.0.0.9:1234", "reason", "connection refused")
	}
	if n := len(lines(&out)); n > DefaultRateLimit().Burst {
		t.Fatalf("%d lines for 1000 identical records", n)
	}
}
