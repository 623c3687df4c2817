package e2e

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/weavelab/weave/router/api"
	"github.com/weavelab/weave/test/harness"
)

// TestDiscovery: h2 connects to h1 and h3 to h2; gossip teaches h1 and h3
// of each other and they connect, so all three end up connected.
func TestDiscovery(t *testing.T) {
	t.Parallel()
	l := harness.New(t)
	h1, h2, h3 := l.AddHost("h1"), l.AddHost("h2"), l.AddHost("h3")
	h1.Launch()
	h2.Launch(h1.IP)
	h3.Launch()
	h3.MustWeave("connect", h2.IP)
	waitMesh(t, h1, h2, h3)
	for _, h := range []*harness.Host{h1, h2, h3} {
		waitKnows(t, h, h1, h2, h3)
	}
	// The summary and the text sections work on a live mesh.
	if r := h1.Weave("status"); !r.OK() || !strings.Contains(r.Stdout, "h1") {
		t.Errorf("%s: want exit 0 and our nickname", r)
	}
	for _, args := range [][]string{{"status", "peers"}, {"status", "connections"}} {
		if r := h1.Weave(args...); !r.OK() || !strings.Contains(r.Stdout, "h3") {
			t.Errorf("%s: want exit 0 and h3 mentioned", r)
		}
	}
	if r := h2.Weave("status", "targets"); !r.OK() || !strings.Contains(r.Stdout, h1.IP) {
		t.Errorf("%s on h2: want exit 0 and h1's address", r)
	}
	var st api.Status
	if err := h3.StatusJSON("", &st); err != nil {
		t.Fatal(err)
	}
	if st.Encryption || st.Peer.NickName != "h3" || st.Peer.Name.String() != h3.PeerName {
		t.Errorf("h3 status: encryption %v, peer %v; want no encryption and %s(h3)", st.Encryption, st.Peer, h3.PeerName)
	}
}

// TestNoDiscovery: the same chain with --no-discovery stays a chain; h1
// and h3 still learn of each other by gossip.
func TestNoDiscovery(t *testing.T) {
	t.Parallel()
	l := harness.New(t)
	h1, h2, h3 := l.AddHost("h1"), l.AddHost("h2"), l.AddHost("h3")
	h1.Launch("--no-discovery")
	h2.Launch("--no-discovery", h1.IP)
	h3.Launch("--no-discovery", h2.IP)
	chain := map[*harness.Host][]*harness.Host{h1: {h2}, h2: {h1, h3}, h3: {h2}}
	waitConnections(t, chain)
	waitKnows(t, h1, h1, h2, h3)
	waitKnows(t, h3, h1, h2, h3)
	// h1 has learnt h3's address by now; give discovery, were it on, a
	// few connection attempts' time, then check the chain held.
	if ok, msg := harness.Eventually(5*time.Second, func() (bool, string) {
		got, err := established(h1)
		return err == nil && slices.Contains(got, "h3"), fmt.Sprint(got, err)
	}); ok {
		t.Fatalf("h1 connected to h3 despite --no-discovery: %s", msg)
	}
	waitConnections(t, chain)
	var targets []api.Target
	if err := h1.StatusJSON("targets", &targets); err != nil {
		t.Fatal(err)
	}
	for _, tg := range targets {
		if strings.HasPrefix(tg.Addr, h3.IP+":") {
			t.Errorf("h1 targets h3 (%+v) despite --no-discovery", tg)
		}
	}

	t.Run("routes via h2", func(t *testing.T) {
		c1, c3 := l.AddContainer(h1, "c1"), l.AddContainer(h3, "c3")
		c1.Attach("10.2.1.1/24")
		c3.Attach("10.2.1.3/24")
		harness.WaitFor(t, reachTimeout, func() (bool, string) { return c1.Reaches("10.2.1.3") })
		p, err := c1.Ping("10.2.1.3", 20, "-i", "0.05")
		if err != nil || p.Loss() != 0 {
			t.Errorf("c1 -> c3 through h2: %v %v", p, err)
		}
	})
}

// TestForget: after `weave forget`, a router no longer reconnects to that
// peer when it comes back.
func TestForget(t *testing.T) {
	t.Parallel()
	l := harness.New(t)
	h1, h2 := l.AddHost("h1"), l.AddHost("h2")
	h1.Launch()
	h2.Launch()
	h2.MustWeave("connect", h1.IP)
	waitMesh(t, h1, h2)
	var targets []api.Target
	if err := h2.StatusJSON("targets", &targets); err != nil || len(targets) != 1 {
		t.Fatalf("h2 targets %+v, %v; want just h1", targets, err)
	}

	h2.MustWeave("forget", h1.IP)
	targets = nil
	if err := h2.StatusJSON("targets", &targets); err != nil || len(targets) != 0 {
		t.Fatalf("h2 targets after forget %+v, %v; want none", targets, err)
	}
	// h1 goes away and comes back (h1 never targeted h2: h2 dialled).
	h1.Kill()
	harness.WaitFor(t, convergeTimeout, func() (bool, string) {
		got, err := established(h2)
		return err == nil && len(got) == 0, fmt.Sprintf("h2 still connected to %v (%v)", got, err)
	})
	h1.Launch()
	if ok, msg := harness.Eventually(8*time.Second, func() (bool, string) {
		got, err := established(h2)
		return err == nil && len(got) > 0, fmt.Sprint(got, err)
	}); ok {
		t.Fatalf("h2 reconnected to h1 after forget: %s", msg)
	}
	// Connecting again works: forget did not break anything.
	h2.MustWeave("connect", h1.IP)
	waitMesh(t, h1, h2)
}

// TestKilledPeer: a SIGKILLed router is dropped by its peers (dead-peer
// detection by heartbeats) and re-added when it is launched again, with
// a new UID; its stale pid file and socket do not block the launch.
func TestKilledPeer(t *testing.T) {
	t.Parallel()
	l := harness.New(t)
	h1, h2, h3 := l.AddHost("h1"), l.AddHost("h2"), l.AddHost("h3")
	h1.Launch()
	h2.Launch(h1.IP)
	h3.Launch(h2.IP)
	waitMesh(t, h1, h2, h3)
	uid := func(h, of *harness.Host) uint64 {
		var peers []api.Peer
		if err := h.StatusJSON("peers", &peers); err != nil {
			t.Fatal(err)
		}
		for _, p := range peers {
			if p.NickName == of.HostName {
				return uint64(p.UID)
			}
		}
		return 0
	}
	oldUID := uid(h1, h3)

	h3.Kill()
	start := time.Now()
	waitConnections(t, map[*harness.Host][]*harness.Host{h1: {h2}, h2: {h1}})
	waitKnows(t, h1, h1, h2)
	waitKnows(t, h2, h1, h2)
	t.Logf("killed h3 dropped by h1 and h2 after %v", time.Since(start).Round(time.Millisecond))

	h3.Launch(h2.IP)
	waitMesh(t, h1, h2, h3)
	if newUID := uid(h1, h3); newUID == 0 || newUID == oldUID {
		t.Errorf("h3's UID as h1 sees it: %d before the kill, %d after; want a new one", oldUID, newUID)
	}
}

// TestPartitionedPeer: a peer that goes silent (its traffic dropped, no
// TCP reset) is dropped by heartbeat timeouts, and reconnected when the
// network heals.
func TestPartitionedPeer(t *testing.T) {
	t.Parallel()
	l := harness.New(t)
	h1, h2, h3 := l.AddHost("h1"), l.AddHost("h2"), l.AddHost("h3")
	h1.Launch()
	h2.Launch(h1.IP)
	h3.Launch(h2.IP)
	waitMesh(t, h1, h2, h3)
	l.Cut(h1, h3)
	l.Cut(h2, h3)
	start := time.Now()
	waitConnections(t, map[*harness.Host][]*harness.Host{h1: {h2}, h2: {h1}, h3: {}})
	t.Logf("silent h3 dropped by h1 and h2 after %v", time.Since(start).Round(time.Millisecond))
	l.Restore(h1, h3)
	l.Restore(h2, h3)
	waitMesh(t, h1, h2, h3)
}

// TestWrongPassword: routers with different passwords, or one with a
// password and one without, refuse each other with a log line on both
// sides saying why.
func TestWrongPassword(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ name, pw1, pw2 string }{
		{"different", "h8-correct-horse", "h8-battery-staple"},
		{"one without", "h8-correct-horse", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			l := harness.New(t)
			h1, h2 := l.AddHost("h1"), l.AddHost("h2")
			h1.Password, h2.Password = tc.pw1, tc.pw2
			h1.Launch()
			h2.Launch(h1.IP)
			harness.WaitFor(t, convergeTimeout, func() (bool, string) {
				l1, l2 := strings.ToLower(h1.Log()), strings.ToLower(h2.Log())
				return strings.Contains(l1, "password") && strings.Contains(l2, "password"),
					"no log line mentioning the password on both sides yet"
			})
			for _, h := range []*harness.Host{h1, h2} {
				for _, line := range strings.Split(h.Log(), "\n") {
					if strings.Contains(strings.ToLower(line), "password") {
						t.Logf("%s log: %s", h.HostName, line)
						break
					}
				}
				if got, err := established(h); err != nil || len(got) != 0 {
					t.Errorf("%s connected to %v (%v) despite the password mismatch", h.HostName, got, err)
				}
			}
			var conns []api.Connection
			if err := h2.StatusJSON("connections", &conns); err != nil {
				t.Fatal(err)
			}
			t.Logf("h2 connections: %+v", conns)
		})
	}
}

// TestBadInput: malformed peers, no daemon, unknown status section: one
// line on stderr, exit 1, nothing changed.
func TestBadInput(t *testing.T) {
	t.Parallel()
	l := harness.New(t)
	h1 := l.AddHost("h1")
	checkOneLineError(t, h1.Weave("connect", "192.168.7.7"), "not running")
	checkOneLineError(t, h1.Weave("status"), "not running")
	h1.Launch()
	checkOneLineError(t, h1.Weave("connect", "bad::addr"), "")
	checkOneLineError(t, h1.Weave("connect", "192.168.7.7", "host:99999"), "")
	checkOneLineError(t, h1.Weave("status", "bogus"), "")
	checkOneLineError(t, h1.Weave("launch"), "running")
	var targets []api.Target
	if err := h1.StatusJSON("targets", &targets); err != nil || len(targets) != 0 {
		t.Errorf("targets after bad connects: %+v, %v; want none (validate all, change nothing)", targets, err)
	}
	h1.Stop()
	if r := h1.Run(context.Background(), "test", "-e", h1.RunDir+"/weave.sock"); r.OK() {
		t.Errorf("socket left behind after weave stop")
	}
	checkOneLineError(t, h1.Weave("status"), "not running")
}

// TestMeshSamePeerList: both hosts are launched with the same peer list,
// their own address included. Each finds its own address to be itself
// after one try and shows it once (state self); the connections each
// dialled to the other settle to one without a failure line.
func TestMeshSamePeerList(t *testing.T) {
	t.Parallel()
	l := harness.New(t)
	h1, h2 := l.AddHost("h1"), l.AddHost("h2")
	h1.Launch(h1.IP, h2.IP)
	h2.Launch(h1.IP, h2.IP)
	waitMesh(t, h1, h2)
	for _, h := range []*harness.Host{h1, h2} {
		harness.WaitFor(t, 10*time.Second, func() (bool, string) {
			var conns []api.Connection
			if err := h.StatusJSON("connections", &conns); err != nil {
				return false, err.Error()
			}
			self, failed, est := 0, 0, 0
			for _, c := range conns {
				switch c.State {
				case "self":
					self++
				case "failed":
					failed++
				case "established":
					est++
				}
			}
			return self == 1 && failed == 0 && est == 1, fmt.Sprintf("%s: %+v", h.Name, conns)
		})
	}
	// A while later (several backoff periods) nothing has failed since.
	time.Sleep(3 * time.Second)
	for _, h := range []*harness.Host{h1, h2} {
		out := h.MustWeave("status", "connections")
		if strings.Contains(out, "failed") || strings.Count(out, " self ") != 1 {
			t.Errorf("%s: status connections:\n%s", h.Name, out)
		}
	}
}
