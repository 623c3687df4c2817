package e2e

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/weavelab/weave/mesh"
	"github.com/weavelab/weave/mesh/handshake"
	"github.com/weavelab/weave/mesh/meshtest"
	"github.com/weavelab/weave/test/harness"
)

// Bounds of TestHandshakeFlood.
const (
	// floodRSSGrowth bounds what the flood may add to the router's
	// resident memory. The admission gate holds at most
	// MaxPendingHandshakes (128) connections, about 2.5 KiB idle and
	// 11 KiB mid-handshake each (mesh/admission.go): under 2 MiB. The rest
	// is what 3,500 accepts leave for the collector, bounded by GOGC's
	// doubling of a live heap of a few MiB; about 2 MiB in all here, so
	// the bound leaves 8 times that. It catches a leak, or a router that
	// keeps every connection at the cost of before the gate (about 38 KiB
	// each, over 100 MiB for 3,000). A router whose caps are lifted but
	// which allocates lazily grows about 14 MiB: the checks of the caps
	// catch that one, not this bound.
	floodRSSGrowth = 16 << 20
	// floodLogGrowth bounds what the flood may add to weave.log, the
	// summaries written at stop included. One line per event would be
	// 3,500 lines of about 150 bytes, over 500 KiB.
	floodLogGrowth = 64 << 10
	// floodFullLines bounds the log lines about single refused or failed
	// inbound connections: the gate writes at most 20 per log interval
	// (a minute), and the test spans at most two.
	floodFullLines = 40
	// floodConnectWithin is how soon a peer with the password must get
	// in while the flood's connections are open.
	floodConnectWithin = 5 * time.Second
)

// TestHandshakeFlood floods a router that has a password, from an
// attacker host on its LAN, with 3,000 idle TCP connections from three
// source addresses and 500 garbage handshakes (random bytes, and hellos
// with the right magic but a malformed body) from two more. While the
// idle connections are open, a peer with the password must connect
// within floodConnectWithin; afterwards the router must answer `weave
// status`, have grown its resident memory by less than floodRSSGrowth
// and its log by less than floodLogGrowth, and have logged the refusals
// and failures summarised, not one line each.
//
// It checks the admission gate's caps on the real router: at most
// MaxPendingPerSource idle connections open per source, the rest reset,
// and a source's garbage answered about FailedHandshakeBurst times and
// then refused.
func TestHandshakeFlood(t *testing.T) {
	t.Parallel()
	const (
		idlePerSource    = 1000
		garbagePerSource = 250
	)
	meshtest.RaiseFileLimit(t, 3*idlePerSource+1024)
	cfg := mesh.DefaultConfig()
	h1, h2, attacker, srcs, target := newFloodLab(t, 5)
	idleSrcs, garbageSrcs := srcs[:3], srcs[3:]
	time.Sleep(time.Second) // past the start-up allocations
	rss0 := routerRSS(t, h1)
	log0 := len(h1.Log())

	// 3,000 idle connections. Each dial returns once the kernel has
	// completed the TCP handshake, before the router decides; the
	// refused ones are reset right after its accept.
	start := time.Now()
	idle := dialIdleFrom(t, attacker, idleSrcs, target, idlePerSource)
	dialed := 0
	for _, f := range idle {
		dialed += f.dialed()
	}
	t.Logf("flood: %d of %d idle connections through the TCP handshake in %v", dialed, len(idle)*idlePerSource, time.Since(start).Round(time.Millisecond))
	// Not vacuous: the router's kernel completed nearly all of them.
	if dialed < len(idle)*idlePerSource*9/10 {
		t.Fatalf("only %d of %d idle connections got through the TCP handshake", dialed, len(idle)*idlePerSource)
	}
	// The refusals arrive within moments of the accepts.
	harness.Eventually(3*time.Second, func() (bool, string) {
		for _, f := range idle {
			if f.open(10*time.Millisecond) > cfg.MaxPendingPerSource {
				return false, ""
			}
		}
		return true, ""
	})
	// Refused or failed connections, by source, that the log must
	// account for.
	events := map[string]int{}
	accepted := 0
	for _, f := range idle {
		open := f.open(50 * time.Millisecond)
		accepted += open
		events[f.src] = f.dialed() - open
		t.Logf("flood from %s: %d idle connections, %d open (admitted), %d reset", f.src, f.dialed(), open, f.dialed()-open)
		if open != cfg.MaxPendingPerSource {
			t.Errorf("from %s: %d idle connections open, want MaxPendingPerSource = %d", f.src, open, cfg.MaxPendingPerSource)
		}
	}

	t.Logf("flood: the router admitted %d of the %d idle connections and reset %d", accepted, dialed, dialed-accepted)

	// 500 garbage handshakes: each source's one after the other, the
	// sources in parallel.
	gstart := time.Now()
	garbage := make([]garbageCount, len(garbageSrcs))
	var wg sync.WaitGroup
	for i, src := range garbageSrcs {
		wg.Go(func() { garbage[i] = sendGarbage(t, attacker, src, target, garbagePerSource) })
	}
	wg.Wait()
	gtook := time.Since(gstart)
	// A source may fail FailedHandshakeBurst times, then once per
	// FailedHandshakeInterval; the charge of a failure follows the close
	// by a moment, so a few more may slip through.
	maxAnswered := cfg.FailedHandshakeBurst + int(gtook/cfg.FailedHandshakeInterval) + 4
	for i, g := range garbage {
		events[garbageSrcs[i]] = g.attempts
		t.Logf("garbage from %s: %d attempts in %v, %d answered, %d refused",
			garbageSrcs[i], g.attempts, gtook.Round(time.Millisecond), g.answered, g.refused)
		if g.answered < cfg.FailedHandshakeBurst || g.answered > maxAnswered {
			t.Errorf("from %s: router answered %d of %d garbage handshakes, want %d to %d (then refused)",
				garbageSrcs[i], g.answered, g.attempts, cfg.FailedHandshakeBurst, maxAnswered)
		}
	}

	// A peer with the password gets in while the idle connections are
	// still pending at the router.
	stillOpen := 0
	for _, f := range idle {
		stillOpen += f.open(time.Millisecond)
	}
	if stillOpen != accepted {
		t.Errorf("only %d of the %d admitted idle connections still open when h2 connects (the flood took too long?)", stillOpen, accepted)
	}
	took, ok, msg := connectDuringFlood(h1, h2)
	if !ok {
		t.Fatalf("h2 not connected to h1 within %v of `weave connect`, during the flood: %s", floodConnectWithin, msg)
	}
	t.Logf("h2 connected to h1 %v after `weave connect`, %v into the flood, with %d idle connections pending", took.Round(time.Millisecond), time.Since(start).Round(time.Millisecond), stillOpen)

	// The router still answers, and its memory and log stayed bounded.
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	sstart := time.Now()
	if r := h1.WeaveCtx(sctx, "status"); !r.OK() || !strings.Contains(r.Stdout, "h1") {
		t.Errorf("h1 after the flood: %s", r)
	}
	t.Logf("h1 answered weave status in %v", time.Since(sstart).Round(time.Millisecond))
	rss1 := routerRSS(t, h1)
	t.Logf("h1 VmRSS %s before the flood, %s after (%+.1f MB)", mb(rss0), mb(rss1), float64(rss1-rss0)/(1<<20))
	if rss1-rss0 > floodRSSGrowth {
		t.Errorf("h1's resident memory grew by %s during the flood, want less than %s", mb(rss1-rss0), mb(floodRSSGrowth))
	}
	logDuring := len(h1.Log()) - log0

	// Stopping makes the gate write its summaries, which otherwise come
	// once a minute (FailureLogInterval).
	h1.Stop()
	flog := h1.Log()[log0:]
	t.Logf("h1 weave.log grew by %d bytes during the flood, %d with the summaries written at stop", logDuring, len(flog))
	if len(flog) > floodLogGrowth {
		t.Errorf("h1's log grew by %d bytes, want less than %d", len(flog), floodLogGrowth)
	}
	checkFloodLog(t, flog, events)
}

// checkFloodLog checks what the router logged about the flood: a few
// lines about single connections, and per source a summary ("more failed
// handshakes") whose counts, with that source's single lines, account for
// every connection from it that the router refused or failed (events, by
// source address, as the test counted them).
func checkFloodLog(t *testing.T, flog string, events map[string]int) {
	t.Helper()
	var full, summaries []string
	logged := map[string]int{}
	for line := range strings.Lines(flog) {
		line = strings.TrimSpace(line)
		if m := singleLine.FindStringSubmatch(line); m != nil {
			full = append(full, line)
			logged[m[1]]++
		}
		if m := summaryLine.FindStringSubmatch(line); m != nil {
			summaries = append(summaries, line)
			logged[m[1]] += logInt(line, "failed") + logInt(line, "refused")
		}
	}
	t.Logf("h1 logged %d lines about single inbound connections and %d summaries:\n%s",
		len(full), len(summaries), strings.Join(append(append([]string(nil), full...), summaries...), "\n"))
	if len(full) > floodFullLines {
		t.Errorf("%d log lines about single inbound connections, want at most %d", len(full), floodFullLines)
	}
	for src, n := range events {
		// A failure is charged a moment after the close that the test
		// saw; one still under way at stop is not counted.
		if logged[src] > n || logged[src] < n-3 {
			t.Errorf("the log accounts for %d failed or refused connections from %s, the test saw %d", logged[src], src, n)
		}
	}
}

// singleLine and summaryLine find the source address of a log line about
// one inbound connection, and of a per-source summary.
var (
	singleLine  = regexp.MustCompile(`msg="inbound (?:connection refused|handshake failed)" .*addr=([0-9.]+):[0-9]+ `)
	summaryLine = regexp.MustCompile(`msg="more failed handshakes" .*addr=([0-9.]+) `)
)

// logInt returns the integer attribute key=N of a text log line, or 0.
func logInt(line, key string) int {
	m := regexp.MustCompile(`\b` + key + `=(\d+)`).FindStringSubmatch(line)
	if m == nil {
		return 0
	}
	n, _ := strconv.Atoi(m[1])
	return n
}

// routerRSS returns the resident size of h's router.
func routerRSS(t *testing.T, h *harness.Host) int64 {
	t.Helper()
	mem, err := memStatus(h.PID())
	if err != nil {
		t.Fatalf("%s: %v", h.HostName, err)
	}
	return mem["VmRSS"]
}

// addAddresses gives h n more addresses on its LAN interface (.101 and
// up of its /24) and returns them, as an attacker's extra sources.
func addAddresses(t *testing.T, h *harness.Host, n int) []string {
	t.Helper()
	base := netip.MustParseAddr(h.IP).As4()
	var out []string
	for i := range n {
		a := base
		a[3] = byte(101 + i)
		ip := netip.AddrFrom4(a).String()
		if r := h.Run(context.Background(), "ip", "addr", "add", ip+"/24", "dev", "eth0"); !r.OK() {
			t.Fatalf("%s: %s: %v", h.HostName, r, r.Err)
		}
		out = append(out, ip)
	}
	return out
}

// newFloodLab makes h1 and h2, routers with one password, not connected,
// and an attacker host without a router holding n more LAN addresses
// (srcs); target is h1's control port. It returns once h1 answers.
func newFloodLab(t *testing.T, n int) (h1, h2, attacker *harness.Host, srcs []string, target string) {
	const pw = "h8-correct-horse-battery-staple"
	l := harness.New(t)
	h1, h2, attacker = l.AddHost("h1"), l.AddHost("h2"), l.AddHost("attacker")
	h1.Password, h2.Password = pw, pw
	h1.Launch()
	h2.Launch() // connected to h1 only during the flood
	srcs = addAddresses(t, attacker, n)
	harness.WaitFor(t, 10*time.Second, func() (bool, string) {
		_, err := h1.Status()
		return err == nil, fmt.Sprint(err)
	})
	return h1, h2, attacker, srcs, net.JoinHostPort(h1.IP, "6783")
}

// dialIdleFrom opens n idle connections from each of srcs in parallel
// (dialIdle), stopping the test if one source failed.
func dialIdleFrom(t *testing.T, ns *harness.Host, srcs []string, target string, n int) []*floodConns {
	idle := make([]*floodConns, len(srcs))
	var wg sync.WaitGroup
	for i, src := range srcs {
		wg.Go(func() { idle[i] = dialIdle(t, ns, src, target, n) })
	}
	wg.Wait()
	for _, f := range idle {
		if f == nil {
			t.FailNow() // dialIdle said why
		}
	}
	return idle
}

// connectDuringFlood has h2 connect to h1 and waits up to
// floodConnectWithin for both to report the connection established.
func connectDuringFlood(h1, h2 *harness.Host) (took time.Duration, ok bool, msg string) {
	start := time.Now()
	h2.MustWeave("connect", h1.IP)
	ok, msg = harness.Eventually(floodConnectWithin, func() (bool, string) {
		a, errA := established(h1)
		b, errB := established(h2)
		return len(a) == 1 && len(b) == 1, fmt.Sprintf("h1 connected to %v (%v), h2 to %v (%v)", a, errA, b, errB)
	})
	return time.Since(start), ok, msg
}

// floodConns are connections opened from one source address, closed at
// cleanup. A nil connection was reset before its dial returned.
type floodConns struct {
	src string
	*meshtest.Conns
}

// dialIdle opens n connections from src to target inside namespace ns,
// one after the other, and sends nothing on them. It reports an error
// other than a reset with t.Errorf and returns nil.
func dialIdle(t *testing.T, ns *harness.Host, src, target string, n int) *floodConns {
	var conns []net.Conn
	err := ns.Do(func() error {
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: 5 * time.Second}
		for range n {
			c, err := d.Dial("tcp", target)
			if err != nil && !errors.Is(err, syscall.ECONNRESET) {
				return fmt.Errorf("dial %s from %s: %w", target, src, err)
			}
			conns = append(conns, c)
		}
		return nil
	})
	f := &floodConns{src: src, Conns: meshtest.NewConns(conns)}
	t.Cleanup(f.Close)
	if err != nil {
		t.Errorf("idle flood: %v", err)
		return nil
	}
	return f
}

func (f *floodConns) dialed() int { return f.Len() }

// open returns how many connections the other end has not closed, waiting
// up to wait (for all of them together) for news.
func (f *floodConns) open(wait time.Duration) int { return f.Len() - f.Closed(wait) }

// garbageCount is what came of one source's garbage handshakes.
type garbageCount struct {
	attempts, answered, refused int
}

// sendGarbage makes n garbage handshakes from src to target inside
// namespace ns, one after the other: each connects, sends one byte, and
// if the router answers (sends its hello) the rest of a bad hello, then
// waits for the router to close. Odd attempts send random bytes, even
// ones the hello's magic with a body too short to parse.
func sendGarbage(t *testing.T, ns *harness.Host, src, target string, n int) garbageCount {
	var g garbageCount
	err := ns.Do(func() error {
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: 5 * time.Second}
		for i := range n {
			g.attempts++
			c, err := d.Dial("tcp", target)
			if errors.Is(err, syscall.ECONNRESET) {
				// Refused so fast that the reset came before the
				// dial returned.
				g.refused++
				continue
			}
			if err != nil {
				return fmt.Errorf("dial %s from %s: %w", target, src, err)
			}
			answered, err := garbageHandshake(c, i%2 == 0)
			c.Close()
			if err != nil {
				return fmt.Errorf("garbage handshake from %s: %w", src, err)
			}
			if answered {
				g.answered++
			} else {
				g.refused++
			}
		}
		return nil
	})
	if err != nil {
		t.Error(err)
	}
	return g
}

// garbageHandshake runs one garbage handshake on c: it reports whether the
// router answered, and an error if the router neither answered nor closed
// within seconds, or did not close after the garbage.
func garbageHandshake(c net.Conn, badHello bool) (bool, error) {
	junk := make([]byte, 64)
	rand.Read(junk)
	junk[0] = 'x' // never the hello's magic
	if badHello {
		// Magic, our versions, a body of 16 bytes: far too short.
		junk = append([]byte{'w', 'e', 'a', 'v', 'e', 'n', 'e', 't', handshake.MinVersion, handshake.MaxVersion, 0, 16}, junk[:16]...)
	}
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Write(junk[:1]); err != nil {
		return false, nil // reset already
	}
	buf := make([]byte, 512)
	if _, err := c.Read(buf); err != nil {
		if meshtest.IsTimeout(err) {
			return false, errors.New("router neither answered nor closed the connection")
		}
		return false, nil
	}
	c.Write(junk[1:])
	for {
		if _, err := c.Read(buf); err != nil {
			if meshtest.IsTimeout(err) {
				return true, errors.New("router did not close the connection after garbage")
			}
			return true, nil
		}
	}
}

// TestHandshakeFloodManySources: an attacker with 20 addresses holds 8
// idle connections on each, more than the 128 pending handshakes the
// router admits in all. A peer with the password still connects at once:
// a connection from a source holding fewer pending slots evicts the
// oldest of the source holding the most (before, the full cap refused it
// until the idle ones timed out, and an attacker re-dialling kept it out).
func TestHandshakeFloodManySources(t *testing.T) {
	t.Parallel()
	const (
		sources       = 20
		idlePerSource = 20
	)
	meshtest.RaiseFileLimit(t, sources*idlePerSource+1024)
	cfg := mesh.DefaultConfig()
	h1, h2, attacker, srcs, target := newFloodLab(t, sources)
	idle := dialIdleFrom(t, attacker, srcs, target, idlePerSource)
	// The refusals and evictions settle within moments of the accepts.
	open := func() int {
		n := 0
		for _, f := range idle {
			n += f.open(5 * time.Millisecond)
		}
		return n
	}
	harness.Eventually(3*time.Second, func() (bool, string) { return open() <= cfg.MaxPendingHandshakes, "" })
	held := open()
	t.Logf("attacker: %d sources x %d idle connections, %d held open by the router (cap %d)", sources, idlePerSource, held, cfg.MaxPendingHandshakes)
	// Not vacuous: the attacker holds the whole cap.
	if held < cfg.MaxPendingHandshakes {
		t.Fatalf("the attacker holds %d pending slots, fewer than the cap %d: the test does not fill it", held, cfg.MaxPendingHandshakes)
	}

	took, ok, msg := connectDuringFlood(h1, h2)
	if !ok {
		t.Fatalf("h2 not connected within %v with the pending cap full of idle connections: %s", floodConnectWithin, msg)
	}
	t.Logf("h2 connected %v after `weave connect`; the attacker now holds %d", took.Round(time.Millisecond), open())
}
