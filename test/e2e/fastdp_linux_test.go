package e2e

import (
	"context"
	"crypto/rand"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/weavelab/weave/router/api"
	"github.com/weavelab/weave/test/harness"
)

// connPaths returns each established connection's path and reason on h.
func connPaths(h *harness.Host) (map[string]api.Connection, error) {
	st, err := h.Status()
	if err != nil {
		return nil, err
	}
	out := map[string]api.Connection{}
	for _, c := range st.Connections {
		if c.Peer != nil && c.State == "established" {
			out[c.Peer.NickName] = c
		}
	}
	return out, nil
}

// waitPath waits until h's connection to the peer nicknamed peer takes
// path with a reason containing reason.
func waitPath(t *testing.T, h *harness.Host, peer, path, reason string, within time.Duration) {
	t.Helper()
	harness.WaitFor(t, within, func() (bool, string) {
		cs, err := connPaths(h)
		if err != nil {
			return false, err.Error()
		}
		c := cs[peer]
		return c.Path == path && strings.Contains(c.PathReason, reason), "path " + c.Path + " (" + c.PathReason + ")"
	})
}

// vxlanPackets is the number of bytes the host's VXLAN device sent (its
// packets are GSO super-packets, so bytes are the measure).
func vxlanPackets(t *testing.T, h *harness.Host) int {
	t.Helper()
	r := h.Run(context.Background(), "cat", "/sys/class/net/weave-vxlan/statistics/tx_bytes")
	n, err := strconv.Atoi(strings.TrimSpace(r.Stdout))
	if err != nil {
		t.Fatalf("weave-vxlan counters on %s: %q %v", h.HostName, r.Stdout, r.Err)
	}
	return n
}

// TestFastDP: unencrypted traffic between two directly connected hosts
// takes the kernel VXLAN fast path; blocking its port mid-transfer falls
// back to the sleeve without breaking the transfer, and unblocking brings
// the fast path back.
func TestFastDP(t *testing.T) {
	t.Parallel()
	_, h1, h2, c1, c2 := twoHosts(t, "")
	waitPath(t, h1, "h2", "fastdp", "", 15*time.Second)
	waitPath(t, h2, "h1", "fastdp", "", 15*time.Second)
	if out := h1.MustWeave("status", "connections"); !strings.Contains(out, "fastdp") {
		t.Errorf("status connections: %q, want fastdp", out)
	}
	// ARP (broadcast) still works: flush and ping again.
	c1.Run(context.Background(), "ip", "neigh", "flush", "dev", "ethwe")
	c2.Run(context.Background(), "ip", "neigh", "flush", "dev", "ethwe")
	before := vxlanPackets(t, h1)
	trafficBothWays(t, c1, c2, "10.2.1.1", "10.2.1.2")
	if after := vxlanPackets(t, h1); after-before < 8<<20 {
		t.Errorf("weave-vxlan on h1 sent %d bytes during 8 MiB each way, want the traffic on the fast path", after-before)
	}

	// Block the fast path's port on h2 mid-transfer.
	data := make([]byte, 64<<20)
	rand.Read(data)
	done := make(chan error, 1)
	go func() {
		_, err := harness.TCPTransfer(c1.Netns, c2.Netns, "10.2.1.2", data, 120*time.Second)
		done <- err
	}()
	time.Sleep(300 * time.Millisecond)
	rule := []string{"INPUT", "-p", "udp", "--dport", "6784", "-j", "DROP"}
	if r := h2.Run(context.Background(), append([]string{"iptables", "-I"}, rule...)...); r.Err != nil {
		t.Fatalf("iptables: %v %s", r.Err, r.Stderr)
	}
	blocked := time.Now()
	waitPath(t, h1, "h2", "sleeve", "heartbeats failing", 8*time.Second)
	waitPath(t, h2, "h1", "sleeve", "heartbeats failing", 8*time.Second)
	t.Logf("fell back after %v", time.Since(blocked).Round(100*time.Millisecond))
	if err := <-done; err != nil {
		t.Fatalf("transfer across the fallback: %v", err)
	}
	if r := h2.Run(context.Background(), append([]string{"iptables", "-D"}, rule...)...); r.Err != nil {
		t.Fatalf("iptables: %v %s", r.Err, r.Stderr)
	}
	waitPath(t, h1, "h2", "fastdp", "", 10*time.Second)
	waitPath(t, h2, "h1", "fastdp", "", 10*time.Second)
	before = vxlanPackets(t, h1)
	trafficBothWays(t, c1, c2, "10.2.1.1", "10.2.1.2")
	if after := vxlanPackets(t, h1); after-before < 8<<20 {
		t.Errorf("after unblocking, weave-vxlan on h1 sent only %d bytes", after-before)
	}
}

// TestFastDPOff: --no-fastdp on one side, or a password, keeps the sleeve.
func TestFastDPOff(t *testing.T) {
	t.Parallel()
	t.Run("no-fastdp", func(t *testing.T) {
		t.Parallel()
		l := harness.New(t)
		h1, h2 := l.AddHost("h1"), l.AddHost("h2")
		h1.Launch("--no-fastdp")
		h2.Launch(h1.IP)
		waitMesh(t, h1, h2)
		c1, c2 := l.AddContainer(h1, "c1"), l.AddContainer(h2, "c2")
		c1.Attach("10.2.1.1/24")
		c2.Attach("10.2.1.2/24")
		harness.WaitFor(t, reachTimeout, func() (bool, string) { return c1.Reaches("10.2.1.2") })
		waitPath(t, h1, "h2", "sleeve", "--no-fastdp", 10*time.Second)
		waitPath(t, h2, "h1", "sleeve", "the peer has no fast path", 10*time.Second)
		if r := h1.Run(context.Background(), "ip", "link", "show", "weave-vxlan"); r.Err == nil {
			t.Errorf("--no-fastdp host has a weave-vxlan device")
		}
		trafficBothWays(t, c1, c2, "10.2.1.1", "10.2.1.2")
	})
	t.Run("password", func(t *testing.T) {
		t.Parallel()
		_, h1, h2, c1, c2 := twoHosts(t, "s3cret-fastdp")
		waitPath(t, h1, "h2", "sleeve", "encrypted", 10*time.Second)
		waitPath(t, h2, "h1", "sleeve", "encrypted", 10*time.Second)
		trafficBothWays(t, c1, c2, "10.2.1.1", "10.2.1.2")
	})
}
