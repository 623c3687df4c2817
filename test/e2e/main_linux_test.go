// Package e2e holds the end-to-end scenarios: real routers (the weave binary
// built from this module) on hosts made of network namespaces by package
// harness, with containers attached to them.
package e2e

import (
	"fmt"
	"maps"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/weavelab/weave/router/api"
	"github.com/weavelab/weave/test/harness"
)

func TestMain(m *testing.M) { os.Exit(harness.Main(m)) }

// Timeouts bound hangs; they are not performance assertions.
const (
	convergeTimeout = 60 * time.Second
	reachTimeout    = 30 * time.Second
)

// established returns the peer names (nickname as the harness sets it) of
// the host's established connections, from `weave status connections
// --json`.
func established(h *harness.Host) ([]string, error) {
	var conns []api.Connection
	if err := h.StatusJSON("connections", &conns); err != nil {
		return nil, err
	}
	var out []string
	for _, c := range conns {
		if c.State == api.StateEstablished && c.Peer != nil {
			out = append(out, c.Peer.NickName)
		}
	}
	slices.Sort(out)
	return slices.Compact(out), nil
}

// knownPeers returns the nicknames of the peers in `weave status peers
// --json` (ourselves included), each with the nicknames of its
// established connections as that peer reports them.
func knownPeers(h *harness.Host) (map[string][]string, error) {
	var peers []api.Peer
	if err := h.StatusJSON("peers", &peers); err != nil {
		return nil, err
	}
	out := map[string][]string{}
	for _, p := range peers {
		var conns []string
		for _, c := range p.Conns {
			if c.Established {
				conns = append(conns, c.Remote.NickName)
			}
		}
		slices.Sort(conns)
		out[p.NickName] = conns
	}
	return out, nil
}

func names(hs ...*harness.Host) []string {
	var out []string
	for _, h := range hs {
		out = append(out, h.HostName)
	}
	slices.Sort(out)
	return out
}

// waitConnections waits until each host's established connections are
// exactly the hosts want lists for it.
func waitConnections(t *testing.T, want map[*harness.Host][]*harness.Host) {
	t.Helper()
	start := time.Now()
	harness.WaitFor(t, convergeTimeout, func() (bool, string) {
		var bad []string
		for h, peers := range want {
			got, err := established(h)
			if err != nil {
				return false, err.Error()
			}
			if w := names(peers...); !slices.Equal(got, w) {
				bad = append(bad, fmt.Sprintf("%s connected to %v, want %v", h.HostName, got, w))
			}
		}
		return len(bad) == 0, strings.Join(bad, "; ")
	})
	t.Logf("connections as wanted after %v", time.Since(start).Round(time.Millisecond))
}

// meshedPair adds hosts h1 and h2 to l, launches h1 alone and h2 pointed
// at h1, and waits until they are connected.
func meshedPair(t *testing.T, l *harness.LAN) (h1, h2 *harness.Host) {
	t.Helper()
	h1, h2 = l.AddHost("h1"), l.AddHost("h2")
	h1.Launch()
	h2.Launch(h1.IP)
	waitMesh(t, h1, h2)
	return h1, h2
}

// waitMesh waits until every host is connected to every other one.
func waitMesh(t *testing.T, hs ...*harness.Host) {
	t.Helper()
	want := map[*harness.Host][]*harness.Host{}
	for _, h := range hs {
		for _, o := range hs {
			if o != h {
				want[h] = append(want[h], o)
			}
		}
	}
	waitConnections(t, want)
}

// waitKnows waits until h's topology holds exactly the peers named.
func waitKnows(t *testing.T, h *harness.Host, want ...*harness.Host) {
	t.Helper()
	harness.WaitFor(t, convergeTimeout, func() (bool, string) {
		peers, err := knownPeers(h)
		if err != nil {
			return false, err.Error()
		}
		got := slices.Sorted(maps.Keys(peers))
		return slices.Equal(got, names(want...)), fmt.Sprintf("%s knows peers %v, want %v", h.HostName, got, names(want...))
	})
}

// checkOneLineError checks the CLI contract for failures: exit 1, one
// line on stderr, nothing on stdout.
func checkOneLineError(t *testing.T, r harness.Result, mention string) {
	t.Helper()
	msg := strings.TrimRight(r.Stderr, "\n")
	switch {
	case r.ExitCode != 1:
		t.Errorf("%s: want exit 1", r)
	case msg == "" || strings.Contains(msg, "\n"):
		t.Errorf("%s: want exactly one line on stderr", r)
	case strings.TrimSpace(r.Stdout) != "":
		t.Errorf("%s: want nothing on stdout", r)
	case mention != "" && !strings.Contains(strings.ToLower(msg), mention):
		t.Errorf("%s: want the error to mention %q", r, mention)
	}
}
