package harness

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
)

// Bridge is the name of the LAN's bridge inside the LAN namespace.
const Bridge = "br0"

var lanCounter atomic.Int32

// LAN is an isolated Ethernet segment: a bridge inside a namespace of its
// own, to which every host has a veth. Its methods are safe for concurrent
// use.
type LAN struct {
	Netns
	t      testing.TB
	id     string // prefix of every namespace name
	subnet int    // third octet of 192.168.X.0/24

	mu         sync.Mutex
	hosts      []*Host
	containers []*Container
	cuts       map[[2]string]bool
}

// New makes a LAN for t and registers its removal (and of everything on
// it) with t.Cleanup. It fails the test when not run as root or when the
// tools it needs are missing.
func New(t testing.TB) *LAN {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatal("e2e tests need root: run as root (CI does)")
	}
	for _, tool := range []string{"ip", "nft", "ping", "tcpdump"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("e2e tests need %s: run `make deps` (%v)", tool, err)
		}
	}
	n := int(lanCounter.Add(1))
	l := &LAN{
		t:      t,
		id:     fmt.Sprintf("h8-%d-%d", os.Getpid(), n),
		subnet: 1 + (n-1)%250,
		cuts:   map[[2]string]bool{},
	}
	l.Netns = Netns{Name: l.id + "-lan"}
	t.Cleanup(l.cleanup)
	l.mustAddNetns(l.Name)
	l.must(l.Name, "ip", "link", "add", Bridge, "type", "bridge")
	l.must(l.Name, "ip", "link", "set", Bridge, "up")
	return l
}

// ID is the prefix of every namespace name of this LAN.
func (l *LAN) ID() string { return l.id }

// Hosts returns the hosts added so far.
func (l *LAN) Hosts() []*Host {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]*Host(nil), l.hosts...)
}

func (l *LAN) mustAddNetns(name string) {
	l.t.Helper()
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		l.t.Fatalf("ip netns add %s: %v: %s", name, err, out)
	}
	l.must(name, "ip", "link", "set", "lo", "up")
}

// must runs args in namespace ns and fails the test if it fails.
func (l *LAN) must(ns string, args ...string) string {
	l.t.Helper()
	r := Netns{Name: ns}.Run(context.Background(), args...)
	if !r.OK() {
		l.t.Fatalf("in %s: %s: %v", ns, r, r.Err)
	}
	return r.Stdout
}

// AddHost makes a host namespace named after name (at most 12 characters)
// with eth0 on the LAN at 192.168.X.i/24, i counting hosts from 1.
func (l *LAN) AddHost(name string) *Host {
	l.t.Helper()
	if len(name) == 0 || len(name) > 12 || strings.ContainsAny(name, " /-") {
		l.t.Fatalf("host name %q: want 1-12 characters without space, / or -", name)
	}
	l.mu.Lock()
	idx := len(l.hosts) + 1
	l.mu.Unlock()
	runDir, err := os.MkdirTemp("", "h8-"+name+"-run-")
	if err != nil {
		l.t.Fatal(err)
	}
	stateDir, err := os.MkdirTemp("", "h8-"+name+"-state-")
	if err != nil {
		l.t.Fatal(err)
	}
	h := &Host{
		Netns:    Netns{Name: l.id + "-" + name},
		HostName: name,
		IP:       fmt.Sprintf("192.168.%d.%d", l.subnet, idx),
		RunDir:   runDir,
		StateDir: stateDir,
		lan:      l,
	}
	l.mu.Lock()
	l.hosts = append(l.hosts, h)
	l.mu.Unlock()
	l.mustAddNetns(h.Name)
	port := "v-" + name
	l.must(l.Name, "ip", "link", "add", port, "type", "veth", "peer", "name", "eth0", "netns", h.Name)
	l.must(l.Name, "ip", "link", "set", port, "master", Bridge, "up")
	l.must(h.Name, "ip", "addr", "add", h.IP+"/24", "dev", "eth0")
	l.must(h.Name, "ip", "link", "set", "eth0", "up")
	return h
}

// AddContainer makes a container namespace on host h (not yet attached:
// use Attach) with lo up.
func (l *LAN) AddContainer(h *Host, name string) *Container {
	l.t.Helper()
	c := &Container{Netns: Netns{Name: h.Name + "-" + name}, Host: h, CName: name}
	l.mu.Lock()
	l.containers = append(l.containers, c)
	l.mu.Unlock()
	l.mustAddNetns(c.Name)
	return c
}

func cutTable(peer *Host) string { return "h8cut_" + peer.HostName }

// Cut drops all traffic between hosts a and b (nft rules in both host
// namespaces), as if the LAN could not carry it. Restore undoes it.
func (l *LAN) Cut(a, b *Host) {
	l.t.Helper()
	for _, p := range [][2]*Host{{a, b}, {b, a}} {
		ruleset := fmt.Sprintf(`table inet %s {
	chain in { type filter hook input priority -10; policy accept; ip saddr %s drop; }
	chain out { type filter hook output priority -10; policy accept; ip daddr %s drop; }
}
`, cutTable(p[1]), p[1].IP, p[1].IP)
		cmd := exec.Command("ip", "netns", "exec", p[0].Name, "nft", "-f", "-")
		cmd.Stdin = strings.NewReader(ruleset)
		if out, err := cmd.CombinedOutput(); err != nil {
			l.t.Fatalf("cut %s-%s: nft: %v: %s", a.HostName, b.HostName, err, out)
		}
	}
	l.mu.Lock()
	l.cuts[[2]string{a.HostName, b.HostName}] = true
	l.mu.Unlock()
	l.t.Logf("cut %s <-> %s", a.HostName, b.HostName)
}

// Restore lets traffic between a and b through again.
func (l *LAN) Restore(a, b *Host) {
	l.t.Helper()
	l.must(a.Name, "nft", "delete", "table", "inet", cutTable(b))
	l.must(b.Name, "nft", "delete", "table", "inet", cutTable(a))
	l.mu.Lock()
	delete(l.cuts, [2]string{a.HostName, b.HostName})
	l.mu.Unlock()
	l.t.Logf("restored %s <-> %s", a.HostName, b.HostName)
}

// cleanup stops every router, kills whatever the test left running in its
// namespaces, and deletes them; on failure it first dumps the routers'
// logs and status.
func (l *LAN) cleanup() {
	l.mu.Lock()
	hosts := append([]*Host(nil), l.hosts...)
	containers := append([]*Container(nil), l.containers...)
	l.mu.Unlock()
	if l.t.Failed() {
		for _, h := range hosts {
			h.dump()
		}
	}
	var wg sync.WaitGroup
	for _, h := range hosts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			h.stopQuietly()
		}()
	}
	wg.Wait()
	var names []string
	for _, c := range containers {
		names = append(names, c.Name)
	}
	for _, h := range hosts {
		names = append(names, h.Name)
	}
	names = append(names, l.Name)
	for _, n := range names {
		killNetns(n)
		if out, err := exec.Command("ip", "netns", "delete", n).CombinedOutput(); err != nil &&
			!strings.Contains(string(out), "No such file") {
			l.t.Logf("cleanup: ip netns delete %s: %v: %s", n, err, out)
		}
		os.RemoveAll("/etc/netns/" + n)
	}
	for _, h := range hosts {
		os.RemoveAll(h.RunDir)
		os.RemoveAll(h.StateDir)
		os.Remove(h.PluginSocket()) // left by a killed router
	}
}
