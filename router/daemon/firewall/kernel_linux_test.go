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

// kernelBackends are the two backends with how to set up, in the host
// namespace, a FORWARD drop policy with Docker's DOCKER-USER chain jumped
// to first, and how to put a DROP for ctr1's traffic into DOCKER-USER.
var kernelBackends = []struct {
	name       string
	hidden     map[string]bool
	dockerLike func(h *bridgedHost)
	userDrop   func(h *bridgedHost)
	list       func(h *bridgedHost) string
}{
	{
		name: "iptables",
		dockerLike: func(h *bridgedHost) {
			h.in(h.host, "iptables", "-w", "-P", "FORWARD", "DROP")
			h.in(h.host, "iptables", "-w", "-N", "DOCKER-USER")
			h.in(h.host, "iptables", "-w", "-A", "DOCKER-USER", "-j", "RETURN")
			h.in(h.host, "iptables", "-w", "-I", "FORWARD", "1", "-j", "DOCKER-USER")
		},
		userDrop: func(h *bridgedHost) {
			h.in(h.host, "iptables", "-w", "-I", "DOCKER-USER", "1", "-s", "10.99.0.1", "-j", "DROP")
		},
		list: func(h *bridgedHost) string { return h.in(h.host, "iptables", "-w", "-S", "FORWARD") },
	},
	{
		name:   "nft",
		hidden: map[string]bool{"iptables": true, "ip6tables": true},
		dockerLike: func(h *bridgedHost) {
			h.in(h.host, "nft", "add table inet h14t; add chain inet h14t DOCKER-USER; add chain inet h14t forward { type filter hook forward priority 0; policy drop; }; add rule inet h14t forward jump DOCKER-USER")
		},
		userDrop: func(h *bridgedHost) {
			h.in(h.host, "nft", "insert rule inet h14t DOCKER-USER ip saddr 10.99.0.1 counter drop")
		},
		list: func(h *bridgedHost) string { return h.in(h.host, "nft", "list", "ruleset") },
	},
}

// TestDockerUserStaysInControl shows on the real kernel that our rules sit
// below Docker's jump to DOCKER-USER, also when an older version had put
// its rules above it, so that a DROP an administrator puts in DOCKER-USER
// wins over our accepts. (Older versions inserted theirs at the top of
// FORWARD, where they accepted before DOCKER-USER was consulted.)
func TestDockerUserStaysInControl(t *testing.T) {
	for _, tc := range kernelBackends {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			h := newBridgedHost(t)
			tc.dockerLike(h)
			if h.reachable() {
				t.Fatal("the drop policy does not stop bridged traffic; the test would prove nothing")
			}
			// What an older version left, above Docker's jump.
			if tc.name == "iptables" {
				h.in(h.host, "iptables", "-w", "-I", "FORWARD", "1", "-i", "weave", "-o", "weave", "-m", "comment", "--comment", "weave:weave:bridged", "-j", "ACCEPT")
			} else {
				h.in(h.host, "nft", `insert rule inet h14t forward iifname "weave" oifname "weave" counter accept comment "weave:weave:bridged"`)
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
			rules := tc.list(h)
			jump := strings.Index(rules, "DOCKER-USER\n")
			if tc.name == "nft" {
				jump = strings.Index(rules, "jump DOCKER-USER")
			}
			if first := strings.Index(rules, "weave:weave:"); jump < 0 || first < jump || strings.Count(rules, "weave:weave:bridged") != 1 {
				t.Fatalf("want our rules once each, below the jump to DOCKER-USER:\n%s", rules)
			}
			if !h.reachable() {
				t.Fatalf("containers cannot ping each other with our rules:\n%s", rules)
			}
			tc.userDrop(h)
			if h.reachable() {
				t.Fatalf("a DROP in DOCKER-USER did not stop bridged traffic: our rules decide first:\n%s", tc.list(h))
			}
		})
	}
}

// TestNothingAcceptsAllLeavingBridge shows on the real kernel that with
// our rules a container whose gateway is the host (an exposed address on
// the bridge) cannot send through the host to another network: nothing of
// ours accepts traffic leaving the bridge for another interface (older
// versions accepted all of it). Bridged traffic still passes, and an
// explicit accept of the administrator's opens the routed path, which
// shows the setup would carry it.
func TestNothingAcceptsAllLeavingBridge(t *testing.T) {
	for _, tc := range kernelBackends {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			h := newBridgedHost(t)
			outside := "h14-out-" + h.host[len("h11-fw-"):]
			run(t, "ip", "netns", "add", outside)
			t.Cleanup(func() { exec.Command("ip", "netns", "delete", outside).Run() })
			h.in(h.host, "ip", "link", "add", "h14o", "type", "veth", "peer", "name", "eth0", "netns", outside)
			h.in(h.host, "ip", "addr", "add", "10.98.0.1/24", "dev", "h14o")
			h.in(h.host, "ip", "link", "set", "h14o", "up")
			h.in(h.host, "ip", "addr", "add", "10.99.0.254/24", "dev", "weave") // weave expose
			h.in(h.host, "sysctl", "-qw", "net.ipv4.ip_forward=1")
			h.in(outside, "ip", "addr", "add", "10.98.0.2/24", "dev", "eth0")
			h.in(outside, "ip", "link", "set", "eth0", "up")
			h.in(outside, "ip", "route", "add", "10.99.0.0/24", "via", "10.98.0.1")
			h.in(h.ctr1, "ip", "route", "add", "default", "via", "10.99.0.254")
			routed := func() bool {
				return exec.Command("ip", "netns", "exec", h.ctr1, "ping", "-c", "1", "-W", "1", "10.98.0.2").Run() == nil
			}
			if !routed() {
				t.Fatal("the container cannot reach the outside namespace even before any policy; the test would prove nothing")
			}
			tc.dockerLike(h)
			fw, err := firewall.New(netnsRunner{ns: h.host, hidden: tc.hidden}, "weave")
			if err != nil {
				t.Fatal(err)
			}
			if err := fw.Ensure(ctx); err != nil {
				t.Fatal(err)
			}
			if !h.reachable() {
				t.Fatalf("bridged traffic blocked:\n%s", tc.list(h))
			}
			if routed() {
				t.Fatalf("traffic from the bridge to another interface is accepted:\n%s", tc.list(h))
			}
			// The administrator's choice opens it (replies come back
			// through our to-bridge-replies rule).
			if tc.name == "iptables" {
				h.in(h.host, "iptables", "-w", "-I", "DOCKER-USER", "1", "-i", "weave", "-o", "h14o", "-j", "ACCEPT")
			} else {
				h.in(h.host, "nft", `insert rule inet h14t DOCKER-USER iifname "weave" oifname "h14o" accept`)
			}
			if !routed() {
				t.Fatalf("an explicit accept in DOCKER-USER does not open the routed path:\n%s", tc.list(h))
			}
		})
	}
}
