package firewall_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/weavelab/weave/router/daemon/firewall"
)

// netnsRunner runs the tools inside a namespace of the test's own, never
// in the machine's root namespace, and can pretend a tool is missing.
type netnsRunner struct {
	ns     string
	hidden map[string]bool
}

func (r netnsRunner) LookPath(file string) (string, error) {
	if r.hidden[file] {
		return "", exec.ErrNotFound
	}
	return exec.LookPath(file)
}

func (r netnsRunner) Run(ctx context.Context, name string, args ...string) ([]byte, error) {
	return firewall.Exec{}.Run(ctx, "ip", append([]string{"netns", "exec", r.ns, name}, args...)...)
}

// bridgedHost is a host namespace with a bridge "weave" and two container
// namespaces on it (10.99.0.1 and 10.99.0.2), with br_netfilter on so that
// bridged frames pass through the host's FORWARD hook.
type bridgedHost struct {
	t                testing.TB
	host, ctr1, ctr2 string
}

func newBridgedHost(t *testing.T) *bridgedHost {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatal("this test needs root (it builds network namespaces); run it as root")
	}
	if _, err := os.Stat("/proc/sys/net/bridge/bridge-nf-call-iptables"); err != nil {
		t.Fatal("br_netfilter is not loaded (modprobe br_netfilter): the test cannot show bridged traffic being filtered")
	}
	b := make([]byte, 3)
	rand.Read(b)
	id := hex.EncodeToString(b)
	h := &bridgedHost{t: t, host: "h11-fw-" + id, ctr1: "h11-fc1-" + id, ctr2: "h11-fc2-" + id}
	for _, ns := range []string{h.host, h.ctr1, h.ctr2} {
		run(t, "ip", "netns", "add", ns)
		t.Cleanup(func() { exec.Command("ip", "netns", "delete", ns).Run() })
	}
	h.in(h.host, "sysctl", "-qw", "net.bridge.bridge-nf-call-iptables=1")
	h.in(h.host, "ip", "link", "add", "weave", "type", "bridge")
	h.in(h.host, "ip", "link", "set", "weave", "up")
	for i, ctr := range []string{h.ctr1, h.ctr2} {
		veth := []string{"h11v1", "h11v2"}[i]
		h.in(h.host, "ip", "link", "add", veth, "type", "veth", "peer", "name", "ethwe", "netns", ctr)
		h.in(h.host, "ip", "link", "set", veth, "master", "weave", "up")
		h.in(ctr, "ip", "addr", "add", []string{"10.99.0.1/24", "10.99.0.2/24"}[i], "dev", "ethwe")
		h.in(ctr, "ip", "link", "set", "ethwe", "up")
		h.in(ctr, "ip", "link", "set", "lo", "up")
	}
	return h
}

func (h *bridgedHost) in(ns string, args ...string) string {
	h.t.Helper()
	return run(h.t, "ip", append([]string{"netns", "exec", ns}, args...)...)
}

// reachable pings ctr2 from ctr1 once.
func (h *bridgedHost) reachable() bool {
	return exec.Command("ip", "netns", "exec", h.ctr1, "ping", "-c", "1", "-W", "1", "10.99.0.2").Run() == nil
}

func run(t testing.TB, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v: %s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// TestKernel shows, with the real tools and a real bridge in namespaces of
// its own, that a FORWARD drop policy blocks bridged traffic, that Ensure
// lets it through, and that Remove takes exactly our rules away again.
func TestKernel(t *testing.T) {
	for _, tc := range []struct {
		name   string
		hidden map[string]bool
		policy func(h *bridgedHost)
		list   func(h *bridgedHost) string
	}{
		{
			name: "iptables",
			policy: func(h *bridgedHost) {
				h.in(h.host, "iptables", "-w", "-P", "FORWARD", "DROP")
				h.in(h.host, "iptables", "-w", "-A", "FORWARD", "-i", "docker0", "-j", "ACCEPT")
			},
			list: func(h *bridgedHost) string { return h.in(h.host, "iptables", "-w", "-S", "FORWARD") },
		},
		{
			name:   "nft",
			hidden: map[string]bool{"iptables": true, "ip6tables": true},
			policy: func(h *bridgedHost) {
				h.in(h.host, "nft", "add table inet h11t; add chain inet h11t forward { type filter hook forward priority 0; policy drop; }; add rule inet h11t forward iifname docker0 accept")
			},
			list: func(h *bridgedHost) string { return h.in(h.host, "nft", "list", "ruleset") },
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			h := newBridgedHost(t)
			if !h.reachable() {
				t.Fatal("containers cannot ping each other even before the drop policy")
			}
			tc.policy(h)
			if h.reachable() {
				t.Fatal("the drop policy does not stop bridged traffic; the test would prove nothing")
			}
			fw, err := firewall.New(netnsRunner{ns: h.host, hidden: tc.hidden}, "weave")
			if err != nil {
				t.Fatal(err)
			}
			for range 2 {
				if err := fw.Ensure(ctx); err != nil {
					t.Fatalf("%s: %v", fw, err)
				}
			}
			if got := strings.Count(tc.list(h), firewall.Comment("weave", "bridged")); got != 1 {
				t.Fatalf("%d copies of the bridged rule after two Ensures:\n%s", got, tc.list(h))
			}
			if !h.reachable() {
				t.Fatalf("containers cannot ping each other with our rules:\n%s", tc.list(h))
			}
			if err := fw.Remove(ctx); err != nil {
				t.Fatal(err)
			}
			rules := tc.list(h)
			if strings.Contains(rules, "weave:") || !strings.Contains(rules, "docker0") {
				t.Fatalf("after Remove, want no rule of ours and the foreign one kept:\n%s", rules)
			}
			if h.reachable() {
				t.Fatal("containers still reach each other after Remove")
			}
		})
	}
}
