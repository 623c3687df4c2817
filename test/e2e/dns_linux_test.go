package e2e

import (
	"context"
	"fmt"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/weavelab/weave/router/api"
	"github.com/weavelab/weave/test/harness"
)

// The weaveDNS scenarios query the router's DNS the way containers do:
// dig @169.254.53.53 and glibc's getent from namespaces attached to it
// (whose /etc/netns/NAME/resolv.conf weave wrote), and `weave dns-lookup`
// on the hosts. Names outside the domain go to an upstream resolver that
// the test runs itself (harness.DNSServer) in a namespace on the LAN with
// no router: /etc/resolv.conf's servers are not reachable from the test's
// namespaces.

// dnsServer is where every attached container reaches its own host's
// weaveDNS (dns.DefaultServiceAddr).
const dnsServer = "169.254.53.53"

// Bounds of timing claims. The contract says a name appears and goes
// everywhere "within a second or two" and that a silent upstream is
// answered with SERVFAIL after 2 s; the bounds add slack for a loaded
// two-core machine running several scenarios at once. The measured times
// are logged.
const (
	propagationBound = 5 * time.Second
	servfailBound    = 4 * time.Second
	// netnsGoneBound: a namespace that is deleted sends no event; the
	// router notices at its periodic reconcile (every 5 s,
	// router/daemon reconcileInterval) or at its next operation, then
	// the removal spreads like any other.
	netnsGoneBound = 5*time.Second + propagationBound
)

// digResult is a dig run from a container, with, when no reply came, what
// the container's way to weaveDNS looked like.
type digResult struct {
	harness.DigResult
	why string
}

func (d digResult) Summary() string {
	if d.why == "" {
		return d.DigResult.Summary()
	}
	return d.DigResult.Summary() + "; " + d.why
}

// dig runs dig @dnsServer ARGS... in container c.
func dig(c *harness.Container, args ...string) digResult {
	ctx := context.Background()
	d := digResult{DigResult: c.Dig(ctx, append([]string{"@" + dnsServer}, args...)...)}
	if d.Status == "" {
		neigh := c.Run(ctx, "ip", "neigh", "show", dnsServer)
		mac := c.Host.Run(ctx, "cat", "/sys/class/net/weave/address")
		d.why = fmt.Sprintf("no reply: %s's neighbour entry for %s: %q; %s's bridge MAC: %q",
			c.Ref(), dnsServer, strings.TrimSpace(neigh.Stdout), c.Host.HostName, strings.TrimSpace(mac.Stdout))
	}
	return d
}

// answers reports whether d answered exactly want (sorted addresses), or
// NXDOMAIN when want is empty.
func answers(d digResult, want []string) bool {
	if len(want) == 0 {
		return d.Status == "NXDOMAIN"
	}
	return d.Status == "NOERROR" && slices.Equal(d.Addrs(), want)
}

func describe(want []string) string {
	if len(want) == 0 {
		return "NXDOMAIN"
	}
	return fmt.Sprint(want)
}

// waitAnswers waits until dig NAME from every container in from answers
// exactly want (NXDOMAIN when empty) and returns the time since start.
// Names in the domain are answered at once: one try of 2 s is plenty.
func waitAnswers(t *testing.T, start time.Time, name string, want []string, from ...*harness.Container) time.Duration {
	t.Helper()
	want = slices.Sorted(slices.Values(want))
	harness.WaitFor(t, convergeTimeout, func() (bool, string) {
		for _, c := range from {
			if d := dig(c, name, "+time=2"); !answers(d, want) {
				return false, fmt.Sprintf("from %s: %s; want %s", c.Name, d.Summary(), describe(want))
			}
		}
		return true, ""
	})
	return time.Since(start)
}

// within logs how long something took and fails the test when that is
// more than bound.
func within(t *testing.T, what string, took, bound time.Duration) {
	t.Helper()
	t.Logf("%s after %v", what, took.Round(time.Millisecond))
	if took > bound {
		t.Errorf("%s took %v, want at most %v", what, took.Round(time.Millisecond), bound)
	}
}

// getent runs `getent hosts NAME` in c and returns the addresses it
// printed, sorted (none when the name did not resolve).
func getent(c *harness.Container, name string) ([]string, harness.Result) {
	r := c.Run(context.Background(), "getent", "hosts", name)
	var out []string
	for _, line := range strings.Split(strings.TrimSpace(r.Stdout), "\n") {
		if f := strings.Fields(line); len(f) > 0 {
			out = append(out, f[0])
		}
	}
	slices.Sort(out)
	return out, r
}

// lookup runs `weave dns-lookup NAME` on h and returns its addresses,
// sorted; none when it says the name is unknown.
func lookup(h *harness.Host, name string) ([]string, error) {
	r := h.WeaveQuiet("dns-lookup", name)
	if !r.OK() {
		if strings.Contains(r.Stderr, "no such name") {
			return nil, nil
		}
		return nil, fmt.Errorf("%s: %s", h.HostName, r)
	}
	out := strings.Fields(r.Stdout)
	slices.Sort(out)
	return out, nil
}

// dnsEntries returns `weave status dns --json`'s entries on h as
// "name addr container origin-nickname" lines, sorted.
func dnsEntries(t *testing.T, h *harness.Host) []string {
	t.Helper()
	var st api.DNS
	if err := h.StatusJSON("dns", &st); err != nil {
		t.Fatalf("%s: %v", h.HostName, err)
	}
	var out []string
	for _, e := range st.Entries {
		out = append(out, fmt.Sprintf("%s %s %s %s", e.Name, e.Addr, e.Container, e.Origin.NickName))
	}
	slices.Sort(out)
	return out
}

// mustWeave is h.MustWeave failing t (a subtest, say) rather than the
// test that made the LAN.
func mustWeave(t *testing.T, h *harness.Host, args ...string) string {
	t.Helper()
	r := h.Weave(args...)
	if !r.OK() {
		t.Fatalf("%s: weave %s: %v", h.HostName, strings.Join(args, " "), r.Err)
	}
	return r.Stdout
}

// attached makes a container namespace on h, attaches it and returns it
// with its one address.
func attached(t *testing.T, l *harness.LAN, h *harness.Host, name string) (*harness.Container, string) {
	t.Helper()
	c := l.AddContainer(h, name)
	addrs := strings.Fields(mustWeave(t, h, "attach", c.Ref()))
	if len(addrs) != 1 {
		t.Fatalf("attach %s printed %v, want one address", c.Ref(), addrs)
	}
	return c, addrs[0]
}

// deleteNetns deletes a container's namespace, as when the container
// goes away without a word to weave (the LAN's cleanup tolerates its
// absence).
func deleteNetns(t *testing.T, c *harness.Container) {
	t.Helper()
	if out, err := exec.Command("ip", "netns", "delete", c.Name).CombinedOutput(); err != nil {
		t.Fatalf("ip netns delete %s: %v: %s", c.Name, err, out)
	}
}

// TestDNSThreeHosts: weaveDNS on three hosts, queried by dig and glibc
// from containers on each: a name added on h2 resolves on h1 within the
// bound, in any case and unqualified; a name on two hosts answers both
// addresses (shuffled); reverse lookups; NXDOMAIN; names outside the
// domain relayed from an upstream of the test's own, SERVFAIL within the
// bound when it is silent or gone; 100 addresses over TCP; dns-remove,
// detach and a namespace's deletion remove a name everywhere; a router
// killed with SIGKILL and relaunched, or stopped and launched, brings its
// containers' names back. Also weave expose -h and attach --without-dns.
func TestDNSThreeHosts(t *testing.T) {
	t.Parallel()
	l := harness.New(t)
	h1, h2, h3 := l.AddHost("h1"), l.AddHost("h2"), l.AddHost("h3")
	// The upstream resolver's machine: on the LAN, with no router.
	up := l.AddHost("up")
	upAddr := up.IP + ":53"
	upstream := harness.StartDNSServer(t, up.Netns, upAddr, map[string][]netip.Addr{
		"www.example.test.":   {netip.MustParseAddr("192.0.2.7")},
		"other.example.test.": {netip.MustParseAddr("192.0.2.8")},
	}, "silent.example.test.")
	h1.Launch("--dns-upstream", upAddr)
	h2.Launch("--dns-upstream", upAddr, h1.IP)
	h3.Launch("--dns-upstream", upAddr, h1.IP)
	waitMesh(t, h1, h2, h3)

	var st api.DNS
	if err := h1.StatusJSON("dns", &st); err != nil {
		t.Fatal(err)
	}
	if st.Domain != "weave.local." || st.Address != dnsServer+":53" || !slices.Equal(st.Upstreams, []string{upAddr}) {
		t.Fatalf("h1 status dns: domain %q address %q upstreams %v; want weave.local., %s:53, [%s]",
			st.Domain, st.Address, st.Upstreams, dnsServer, upAddr)
	}

	// A client on every host, to see each host's answers.
	cl1, _ := attached(t, l, h1, "cl")
	cl2, _ := attached(t, l, h2, "cl")
	cl3, _ := attached(t, l, h3, "cl")
	everywhere := []*harness.Container{cl1, cl2, cl3}
	b, err := os.ReadFile("/etc/netns/" + cl1.Name + "/resolv.conf")
	if err != nil || !strings.Contains(string(b), "nameserver "+dnsServer+"\n") || !strings.Contains(string(b), "search weave.local") {
		t.Fatalf("%s's resolv.conf = %q, %v: want weaveDNS as its name server, weave.local searched", cl1.Ref(), b, err)
	}

	db2, db2IP := attached(t, l, h2, "db")
	db3, db3IP := attached(t, l, h3, "db")
	ok := t.Run("name added on h2 resolves on h1", func(t *testing.T) {
		start := time.Now()
		mustWeave(t, h2, "dns-add", db2.Ref(), "-h", "db.weave.local")
		harness.WaitFor(t, convergeTimeout, func() (bool, string) {
			d := dig(cl1, "db.weave.local")
			if !answers(d, []string{db2IP}) {
				return false, d.Summary()
			}
			got, r := getent(cl1, "db.weave.local")
			return slices.Equal(got, []string{db2IP}), r.String()
		})
		within(t, "db.weave.local added on h2 resolved by dig and getent on h1", time.Since(start), propagationBound)
		if d := dig(cl1, "db.weave.local", "+short"); strings.TrimSpace(d.Stdout) != db2IP {
			t.Errorf("%s: want %s", d.Result, db2IP)
		}
		want := fmt.Sprintf("db.weave.local. %s %s h2", db2IP, db2.Ref())
		if got := dnsEntries(t, h1); !slices.Equal(got, []string{want}) {
			t.Errorf("h1 status dns entries %q, want [%q] (origin h2)", got, want)
		}
	})
	if !ok {
		t.FailNow()
	}

	t.Run("case-insensitive and unqualified", func(t *testing.T) {
		if d := dig(cl1, "DB.Weave.Local"); !answers(d, []string{db2IP}) {
			t.Errorf("%s; want %s", d.Summary(), db2IP)
		}
		for _, name := range []string{"DB.Weave.Local", "db", "Db"} {
			if got, r := getent(cl1, name); !slices.Equal(got, []string{db2IP}) {
				t.Errorf("%s; want %s", r, db2IP)
			}
		}
	})

	t.Run("one name on two hosts", func(t *testing.T) {
		start := time.Now()
		mustWeave(t, h3, "dns-add", db3.Ref(), "-h", "db.weave.local")
		within(t, "both addresses answered on every host", waitAnswers(t, start, "db.weave.local", []string{db2IP, db3IP}, everywhere...), propagationBound)
		for _, h := range []*harness.Host{h1, h2, h3} {
			if got, err := lookup(h, "db"); err != nil || !slices.Equal(got, slices.Sorted(slices.Values([]string{db2IP, db3IP}))) {
				t.Errorf("%s: weave dns-lookup db = %v, %v; want %s and %s", h.HostName, got, err, db2IP, db3IP)
			}
		}
		// Shuffled: both come first at times.
		first := map[string]int{}
		for range 20 {
			if d := dig(cl1, "db.weave.local"); len(d.Answer) == 2 {
				if a, ok := d.Answer[0].(*dns.A); ok {
					first[a.A.String()]++
				}
			}
		}
		t.Logf("first address of 20 answers: %v", first)
		if first[db2IP] == 0 || first[db3IP] == 0 {
			t.Errorf("first address of 20 answers: %v: want both to come first at times (shuffled)", first)
		}
	})

	t.Run("reverse", func(t *testing.T) {
		for _, ip := range []string{db2IP, db3IP} {
			if d := dig(cl1, "-x", ip); d.Status != "NOERROR" || !slices.Equal(d.PTRs(), []string{"db.weave.local."}) {
				t.Errorf("%s, PTR %v; want db.weave.local.", d.Summary(), d.PTRs())
			}
		}
	})

	t.Run("unknown name in the domain", func(t *testing.T) {
		before := upstream.Queries()
		if d := dig(cl1, "nosuch.weave.local"); d.Status != "NXDOMAIN" {
			t.Errorf("%s; want NXDOMAIN", d.Summary())
		}
		if got, r := getent(cl1, "nosuch.weave.local"); len(got) != 0 || r.ExitCode != 2 {
			t.Errorf("%s; want exit 2 (not found)", r)
		}
		if n := upstream.Queries() - before; n != 0 {
			t.Errorf("the upstream got %d queries for a name in the domain, want none", n)
		}
	})

	t.Run("outside the domain", func(t *testing.T) {
		before := upstream.Queries()
		if d := dig(cl1, "www.example.test"); !answers(d, []string{"192.0.2.7"}) {
			t.Errorf("%s; want the upstream's 192.0.2.7", d.Summary())
		}
		if got, r := getent(cl2, "www.example.test"); !slices.Equal(got, []string{"192.0.2.7"}) {
			t.Errorf("%s; want the upstream's 192.0.2.7", r)
		}
		if d := dig(cl3, "nosuch.example.test"); d.Status != "NXDOMAIN" {
			t.Errorf("%s; want the upstream's NXDOMAIN", d.Summary())
		}
		if n := upstream.Queries() - before; n < 3 {
			t.Errorf("the upstream got %d queries, want at least 3", n)
		}

		// A silent upstream: SERVFAIL after the 2 s bound.
		d := dig(cl1, "silent.example.test", "+time=10")
		t.Logf("silent upstream: %s", d.Summary())
		if d.Status != "SERVFAIL" {
			t.Errorf("%s; want SERVFAIL", d.Summary())
		}
		within(t, "SERVFAIL for a name the upstream does not answer", d.Took, servfailBound)

		// An upstream that is gone (its port closed).
		upstream.Stop()
		d = dig(cl2, "other.example.test", "+time=10")
		t.Logf("stopped upstream: %s", d.Summary())
		if d.Status != "SERVFAIL" {
			t.Errorf("%s; want SERVFAIL", d.Summary())
		}
		within(t, "SERVFAIL with the upstream stopped", d.Took, servfailBound)
	})

	t.Run("100 addresses over TCP", func(t *testing.T) {
		var ips []string
		for i := range 100 {
			ips = append(ips, fmt.Sprintf("10.99.%d.%d", i/50, 1+i%50))
		}
		slices.Sort(ips)
		mustWeave(t, h1, append(append([]string{"dns-add"}, ips...), "-h", "many.weave.local")...)
		harness.WaitFor(t, convergeTimeout, func() (bool, string) {
			got, err := lookup(h2, "many")
			return err == nil && len(got) == 100, fmt.Sprintf("h2: weave dns-lookup many: %d addresses, %v", len(got), err)
		})
		if d := dig(cl2, "many.weave.local", "+tcp"); !answers(d, ips) {
			t.Errorf("%s; want the 100 addresses", d.Summary())
		}
		d := dig(cl2, "many.weave.local")
		t.Logf("over UDP: %s, retried over TCP %v", d.Summary(), d.RetriedTCP)
		if !answers(d, ips) || !d.RetriedTCP {
			t.Errorf("%s, retried over TCP %v; want the 100 addresses after a retry over TCP", d.Summary(), d.RetriedTCP)
		}
		d = dig(cl2, "many.weave.local", "+ignore", "+bufsize=512")
		t.Logf("over UDP, truncation not followed: %s", d.Summary())
		if !d.HasFlag("tc") || len(d.Answer) >= 100 {
			t.Errorf("%s; want a truncated (tc) UDP answer", d.Summary())
		}
	})

	t.Run("expose -h", func(t *testing.T) {
		// An address of its own outside the allocation range (expose
		// takes static addresses only).
		start := time.Now()
		out := strings.Fields(mustWeave(t, h3, "expose", "10.99.200.3/24", "-h", "h3.weave.local"))
		if !slices.Equal(out, []string{"10.99.200.3"}) {
			t.Fatalf("weave expose printed %v, want 10.99.200.3", out)
		}
		within(t, "h3.weave.local (weave expose -h) answered on every host", waitAnswers(t, start, "h3.weave.local", out, everywhere...), propagationBound)
		if d := dig(cl1, "-x", out[0]); !slices.Equal(d.PTRs(), []string{"h3.weave.local."}) {
			t.Errorf("%s, PTR %v; want h3.weave.local.", d.Summary(), d.PTRs())
		}
		mustWeave(t, h3, "hide")
		if ok, msg := harness.Eventually(propagationBound, func() (bool, string) {
			d := dig(cl1, "h3.weave.local")
			return d.Status == "NXDOMAIN", d.Summary()
		}); !ok {
			t.Logf("after weave hide: %s", msg)
		}
	})

	t.Run("--without-dns", func(t *testing.T) {
		c := l.AddContainer(h1, "nodns")
		mustWeave(t, h1, "attach", "--without-dns", c.Ref())
		if _, err := os.Stat("/etc/netns/" + c.Name + "/resolv.conf"); !os.IsNotExist(err) {
			t.Errorf("%s attached --without-dns has a resolv.conf under /etc/netns (%v)", c.Ref(), err)
		}
		// It can still ask weaveDNS, if it wants to.
		if d := dig(c, "db.weave.local"); !answers(d, slices.Sorted(slices.Values([]string{db2IP, db3IP}))) {
			t.Errorf("%s; want %s and %s", d.Summary(), db2IP, db3IP)
		}
	})

	t.Run("removal", func(t *testing.T) {
		// One name per way of removing it, each on a host other than h1.
		c1, c1IP := attached(t, l, h2, "rm1")
		c2, c2IP := attached(t, l, h3, "rm2")
		c3, c3IP := attached(t, l, h2, "rm3")
		mustWeave(t, h2, "dns-add", c1.Ref(), "-h", "gone1.weave.local")
		mustWeave(t, h3, "dns-add", c2.Ref(), "-h", "gone2.weave.local")
		mustWeave(t, h2, "dns-add", c3.Ref(), "-h", "gone3.weave.local")
		for name, ip := range map[string]string{"gone1": c1IP, "gone2": c2IP, "gone3": c3IP} {
			waitAnswers(t, time.Now(), name+".weave.local", []string{ip}, everywhere...)
		}

		start := time.Now()
		mustWeave(t, h2, "dns-remove", c1.Ref(), "-h", "gone1.weave.local")
		within(t, "dns-remove: gone1 gone everywhere", waitAnswers(t, start, "gone1.weave.local", nil, everywhere...), propagationBound)

		start = time.Now()
		mustWeave(t, h3, "detach", c2.Ref())
		within(t, "detach: gone2 gone everywhere", waitAnswers(t, start, "gone2.weave.local", nil, everywhere...), propagationBound)
		if _, err := os.Stat("/etc/netns/" + c2.Name + "/resolv.conf"); !os.IsNotExist(err) {
			t.Errorf("%s detached still has weave's resolv.conf under /etc/netns (%v)", c2.Ref(), err)
		}

		start = time.Now()
		deleteNetns(t, c3)
		within(t, "namespace deleted: gone3 gone everywhere", waitAnswers(t, start, "gone3.weave.local", nil, everywhere...), netnsGoneBound)

		// The others' names stayed.
		if d := dig(cl1, "db.weave.local"); !answers(d, slices.Sorted(slices.Values([]string{db2IP, db3IP}))) {
			t.Errorf("%s; want %s and %s still", d.Summary(), db2IP, db3IP)
		}
	})

	t.Run("kill -9 and relaunch", func(t *testing.T) {
		mustWeave(t, h2, "dns-add", db2.Ref(), "-h", "h2only.weave.local")
		waitAnswers(t, time.Now(), "h2only.weave.local", []string{db2IP}, cl1)
		h2.Kill()
		// h2's names leave with it (the mesh drops a dead peer), so
		// that their return below is h2's doing.
		start := time.Now()
		waitAnswers(t, start, "h2only.weave.local", nil, cl1, cl3)
		t.Logf("h2's names dropped by h1 and h3 %v after the kill", time.Since(start).Round(time.Millisecond))
		if d := dig(cl1, "db.weave.local"); !answers(d, []string{db3IP}) {
			t.Errorf("with h2 down: %s; want only h3's %s", d.Summary(), db3IP)
		}

		relaunch(t, h2, "--dns-upstream", upAddr, h1.IP)
		start = time.Now()
		waitMesh(t, h1, h2, h3)
		took := waitAnswers(t, start, "h2only.weave.local", []string{db2IP}, everywhere...)
		waitAnswers(t, start, "db.weave.local", []string{db2IP, db3IP}, everywhere...)
		t.Logf("h2's names back on every host %v after its relaunch (%v counting both names)", took.Round(time.Millisecond), time.Since(start).Round(time.Millisecond))
		// The names removed before the kill stay removed.
		for _, name := range []string{"gone1.weave.local", "gone3.weave.local"} {
			if d := dig(cl1, name); d.Status != "NXDOMAIN" {
				t.Errorf("after h2's relaunch: %s; want NXDOMAIN (removed before the kill)", d.Summary())
			}
		}
	})

	t.Run("stop and launch", func(t *testing.T) {
		mustWeave(t, h3, "stop")
		start := time.Now()
		waitAnswers(t, start, "db.weave.local", []string{db2IP}, cl1, cl2)
		t.Logf("h3's names dropped by h1 and h2 %v after weave stop", time.Since(start).Round(time.Millisecond))
		relaunch(t, h3, "--dns-upstream", upAddr, h1.IP)
		start = time.Now()
		waitAnswers(t, start, "db.weave.local", []string{db2IP, db3IP}, everywhere...)
		t.Logf("h3's names back on every host %v after its launch", time.Since(start).Round(time.Millisecond))
	})

	t.Run("reset removes the resolv.conf weave wrote", func(t *testing.T) {
		path := "/etc/netns/" + cl1.Name + "/resolv.conf"
		if _, err := os.Stat(path); err != nil {
			t.Fatalf("%s has no resolv.conf before the reset: %v", cl1.Ref(), err)
		}
		mustWeave(t, h1, "reset")
		if _, err := os.Stat(path); !os.IsNotExist(err) {
			t.Errorf("%s still has weave's resolv.conf after weave reset (%v)", cl1.Ref(), err)
		}
	})
}

// TestDNSBridgePorts: every container keeps reaching its host's weaveDNS
// as more ports join the bridge. A container reaches the service address
// through a permanent neighbour entry with the bridge's MAC, so that MAC
// must not change; a Linux bridge whose MAC was never set takes the lowest
// of its ports' and changes when a port with a lower one joins. Weave's
// veths have random MACs, which makes that a matter of chance; a port with
// the lowest locally administered MAC makes it certain.
func TestDNSBridgePorts(t *testing.T) {
	t.Parallel()
	l := harness.New(t)
	h := l.AddHost("h1")
	h.Launch()
	var cs []*harness.Container
	for i := range 4 {
		c, _ := attached(t, l, h, fmt.Sprintf("c%d", i))
		cs = append(cs, c)
	}
	ctx := context.Background()
	for _, args := range [][]string{
		{"ip", "link", "add", "lowmac0", "type", "veth", "peer", "name", "lowmac1"},
		{"ip", "link", "set", "lowmac0", "address", "02:00:00:00:00:01", "master", "weave", "up"},
	} {
		if r := h.Run(ctx, args...); !r.OK() {
			t.Fatalf("%s: %v", r, r.Err)
		}
	}
	c, _ := attached(t, l, h, "last")
	cs = append(cs, c)
	mac := h.Run(ctx, "cat", "/sys/class/net/weave/address")
	t.Logf("bridge MAC now %s", strings.TrimSpace(mac.Stdout))
	for _, c := range cs {
		if d := dig(c, "nosuch.weave.local", "+time=2"); d.Status != "NXDOMAIN" {
			t.Errorf("%s: %s; want NXDOMAIN from weaveDNS", c.Ref(), d.Summary())
		}
	}
}

// TestDNSDockerWebDB is the seed's deployment with names: a db started with
// `weave run -h db.weave.local` on h1, a web on h2 that calls
// db.weave.local:7000 (resolved by Go's resolver in the FROM scratch image,
// through the resolv.conf weave rewrote); a namespace on h2 reaches the db
// through the web. docker kill removes the db's name everywhere within the
// bound and docker start brings it back.
func TestDNSDockerWebDB(t *testing.T) {
	t.Parallel()
	l := harness.New(t)
	img := harness.DockerImage(t)
	label := dockerLabel(t, l)
	h1, h2 := meshedPair(t, l)
	cl1, _ := attached(t, l, h1, "cl")
	cl2, _ := attached(t, l, h2, "cl")
	both := []*harness.Container{cl1, cl2}

	db := weaveRun(t, h1, label, nil, "--name", "db-"+l.ID(), "-h", "db.weave.local", img, "db")
	// weave run returns once the container is attached and its name is
	// in the table: the bound is on propagation, not on docker run.
	start := time.Now()
	dbIP := containerAddr(t, h1, db).String()
	within(t, "db.weave.local answered on both hosts after weave run", waitAnswers(t, start, "db.weave.local", []string{dbIP}, both...), propagationBound)

	// The other spelling of a name in the domain.
	cache := weaveRun(t, h1, label, nil, "--hostname", "cache", "--domainname", "weave.local", img, "sleep")
	waitAnswers(t, time.Now(), "cache.weave.local", []string{containerAddr(t, h1, cache).String()}, both...)

	web := weaveRun(t, h2, label, nil, "--name", "web-"+l.ID(), img, "web", "-db", "db.weave.local:7000")
	webIP := containerAddr(t, h2, web).String()
	resolv := harness.MustDocker(t, "inspect", "--format", "{{.ResolvConfPath}}", web)
	if b, err := os.ReadFile(resolv); err != nil || !strings.Contains(string(b), "nameserver "+dnsServer+"\n") || !strings.Contains(string(b), "search weave.local") {
		t.Fatalf("web's resolv.conf %s = %q, %v: want weaveDNS as its name server, weave.local searched", resolv, b, err)
	}
	// Only names in the domain are registered: not the web's (its host
	// name is its ID).
	cacheIP := containerAddr(t, h1, cache).String()
	want := slices.Sorted(slices.Values([]string{
		fmt.Sprintf("cache.weave.local. %s %s h1", cacheIP, cache),
		fmt.Sprintf("db.weave.local. %s %s h1", dbIP, db),
	}))
	if got := dnsEntries(t, h2); !slices.Equal(got, want) {
		t.Errorf("h2 status dns entries %q, want %q", got, want)
	}

	// The db's greeting names its host name, which Docker may split.
	waitDB := func() {
		t.Helper()
		harness.WaitFor(t, reachTimeout, func() (bool, string) {
			code, body, err := httpGet(cl2.Netns, "http://"+webIP+"/db")
			return err == nil && code == http.StatusOK && strings.HasPrefix(body, "db ") && strings.HasSuffix(body, " "+dbIP+"\n"),
				fmt.Sprintf("GET /db from %s = %d %q, %v; want 200 \"db ... %s\"", cl2.Name, code, body, err, dbIP)
		})
	}
	waitDB()

	start = time.Now()
	harness.MustDocker(t, "kill", db)
	within(t, "docker kill: db.weave.local gone on both hosts", waitAnswers(t, start, "db.weave.local", nil, both...), propagationBound)
	for _, h := range []*harness.Host{h1, h2} {
		if got, err := lookup(h, "db"); err != nil || len(got) != 0 {
			t.Errorf("%s: weave dns-lookup db = %v, %v after the kill; want no such name", h.HostName, got, err)
		}
	}
	if code, body, err := httpGet(cl2.Netns, "http://"+webIP+"/db"); err != nil || code != http.StatusBadGateway {
		t.Errorf("GET /db with the db dead = %d %q, %v; want 502", code, body, err)
	}

	start = time.Now()
	harness.MustDocker(t, "start", db)
	within(t, "docker start: db.weave.local back on both hosts", waitAnswers(t, start, "db.weave.local", []string{dbIP}, both...), propagationBound)
	waitDB()
}

// TestDNSChurn: five rounds of killing and restarting named containers on
// three hosts never leave a stale answer: after each round every host's
// table and DNS answer exactly the live addresses, and at the end they stay
// so for longer than a full-state exchange between routers (which would
// bring back a removed entry that one of them still held). The namespaces
// named svc.weave.local are deleted and made again, alternately under
// another name (a new container with a new address; the old one must go)
// and under their old name (the same container ID); the Docker containers
// named web.weave.local are killed and started.
func TestDNSChurn(t *testing.T) {
	t.Parallel()
	const pushPullInterval = 10 * time.Second // dns/replicate's default
	l := harness.New(t)
	img := harness.DockerImage(t)
	label := dockerLabel(t, l)
	hosts := []*harness.Host{l.AddHost("h1"), l.AddHost("h2"), l.AddHost("h3")}
	hosts[0].Launch()
	hosts[1].Launch(hosts[0].IP)
	hosts[2].Launch(hosts[0].IP)
	waitMesh(t, hosts...)

	// On every host: a client, a namespace named svc.weave.local and a
	// Docker container named web.weave.local.
	type member struct {
		h      *harness.Host
		client *harness.Container
		svc    *harness.Container // nil while dead
		svcIP  string
		web    string // Docker ID
		webIP  string // "" while dead
	}
	ms := make([]*member, len(hosts))
	startSvc := func(m *member, round int) {
		t.Helper()
		m.svc, m.svcIP = attached(t, l, m.h, fmt.Sprintf("svc%d", round%2))
		mustWeave(t, m.h, "dns-add", m.svc.Ref(), "-h", "svc.weave.local")
	}
	for i, h := range hosts {
		m := &member{h: h}
		m.client, _ = attached(t, l, h, "cl")
		startSvc(m, 0)
		m.web = weaveRun(t, h, label, nil, "--name", fmt.Sprintf("web%d-%s", i+1, l.ID()), "-h", "web.weave.local", img, "sleep")
		m.webIP = containerAddr(t, h, m.web).String()
		ms[i] = m
	}
	live := func() map[string][]string {
		out := map[string][]string{"svc": nil, "web": nil}
		for _, m := range ms {
			if m.svc != nil {
				out["svc"] = append(out["svc"], m.svcIP)
			}
			if m.webIP != "" {
				out["web"] = append(out["web"], m.webIP)
			}
		}
		for _, v := range out {
			slices.Sort(v)
		}
		return out
	}
	// agree reports whether every host's table holds exactly want.
	agree := func(want map[string][]string) (bool, string) {
		for _, m := range ms {
			for name, addrs := range want {
				got, err := lookup(m.h, name)
				if err != nil {
					return false, err.Error()
				}
				if !slices.Equal(got, addrs) {
					return false, fmt.Sprintf("%s: weave dns-lookup %s = %v, want %v", m.h.HostName, name, got, addrs)
				}
			}
		}
		return true, ""
	}
	check := func(round int) {
		t.Helper()
		start := time.Now()
		want := live()
		harness.WaitFor(t, convergeTimeout, func() (bool, string) {
			ok, msg := agree(want)
			return ok, fmt.Sprintf("round %d: %s", round, msg)
		})
		took := time.Since(start)
		// The tables agree; the servers answer from them.
		for _, m := range ms {
			for name, addrs := range want {
				if d := dig(m.client, name+".weave.local"); !answers(d, addrs) {
					t.Errorf("round %d: from %s: %s; want %s", round, m.client.Name, d.Summary(), describe(addrs))
				}
			}
		}
		t.Logf("round %d: svc %v, web %v on every host %v after the round's changes", round, want["svc"], want["web"], took.Round(time.Millisecond))
	}
	check(0)

	for round := 1; round <= 5; round++ {
		// Every container changes: a live one is killed and, two
		// times out of three, started again; a dead one is started.
		for i, m := range ms {
			restart := (round+i)%3 != 0
			if m.svc != nil {
				deleteNetns(t, m.svc)
				m.svc = nil
				if restart {
					startSvc(m, round)
				}
			} else {
				startSvc(m, round)
			}
			if old := m.webIP; old != "" {
				harness.MustDocker(t, "kill", m.web)
				m.webIP = ""
				if !restart {
					continue
				}
				// Start it only once its router has seen it die (its
				// name is gone there), or the die event and the
				// start would race.
				harness.WaitFor(t, reachTimeout, func() (bool, string) {
					got, err := lookup(m.h, "web")
					return err == nil && !slices.Contains(got, old), fmt.Sprintf("%s: weave dns-lookup web = %v, %v; want %s gone", m.h.HostName, got, err, old)
				})
			}
			harness.MustDocker(t, "start", m.web)
			harness.WaitFor(t, reachTimeout, func() (bool, string) {
				ps, err := weavePS(m.h, m.web)
				if err != nil || len(ps) != 1 || len(ps[0].Addrs) != 1 {
					return false, fmt.Sprintf("%s: weave ps %s = %+v, %v", m.h.HostName, m.web[:12], ps, err)
				}
				m.webIP = ps[0].Addrs[0].Addr().String()
				return true, ""
			})
		}
		check(round)
	}

	// Nothing comes back: the tables stay as they are for longer than a
	// full-state exchange.
	want := live()
	window := pushPullInterval + 2*time.Second
	if changed, msg := harness.Eventually(window, func() (bool, string) {
		ok, msg := agree(want)
		return !ok, msg
	}); changed {
		t.Errorf("within %v of the last round: %s", window, msg)
	}
}

// TestDNSBadInput: dns-add and dns-remove with nothing to add, a name
// outside the domain, a container that does not exist, a malformed
// address, or a name that is not there exit 1 with one line on stderr and
// change no router's table.
func TestDNSBadInput(t *testing.T) {
	t.Parallel()
	l := harness.New(t)
	h1, h2 := meshedPair(t, l)
	c, cIP := attached(t, l, h1, "db")
	cl, _ := attached(t, l, h2, "cl")
	mustWeave(t, h1, "dns-add", c.Ref(), "-h", "db.weave.local")
	waitAnswers(t, time.Now(), "db.weave.local", []string{cIP}, cl)
	before1, before2 := dnsEntries(t, h1), dnsEntries(t, h2)

	missing := "no-such-container-" + l.ID()
	for _, tc := range []struct {
		name    string
		h       *harness.Host
		args    []string
		mention string
	}{
		{"dns-add of a name alone", h1, []string{"dns-add", "-h", "db.weave.local"}, "usage"},
		{"dns-add of nothing", h1, []string{"dns-add"}, "usage"},
		{"dns-add outside the domain", h1, []string{"dns-add", c.Ref(), "-h", "db.example.com"}, "db.example.com"},
		{"dns-add of an address outside the domain", h1, []string{"dns-add", "10.32.9.9", "-h", "db.example.com"}, "db.example.com"},
		{"dns-add of the domain itself", h1, []string{"dns-add", "10.32.9.9", "-h", "weave.local"}, "weave.local"},
		{"dns-add of addresses without a name", h1, []string{"dns-add", "10.32.9.9"}, "-h"},
		{"dns-add of a malformed address", h1, []string{"dns-add", "10.32.9.300", "10.32.9.9", "-h", "x.weave.local"}, "10.32.9.300"},
		{"dns-add for a missing Docker container", h1, []string{"dns-add", missing, "-h", "x.weave.local"}, missing},
		{"dns-add for a missing namespace", h1, []string{"dns-add", "netns:" + missing, "-h", "x.weave.local"}, missing},
		{"dns-add for a namespace without a name", h1, []string{"dns-add", c.Ref()}, "-h"},
		{"dns-remove of a name not there", h1, []string{"dns-remove", "10.32.9.9", "-h", "nothere.weave.local"}, "no such name"},
		{"dns-remove of a container's name not there", h1, []string{"dns-remove", c.Ref(), "-h", "nothere.weave.local"}, "no such name"},
		{"dns-remove of another router's name", h2, []string{"dns-remove", cIP, "-h", "db.weave.local"}, "no such name"},
		{"dns-remove of a name alone", h1, []string{"dns-remove", "-h", "db.weave.local"}, "usage"},
		{"dns-lookup of a name not there", h1, []string{"dns-lookup", "nothere"}, "no such name"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			checkOneLineError(t, tc.h.Weave(tc.args...), strings.ToLower(tc.mention))
		})
	}
	if after := dnsEntries(t, h1); !slices.Equal(after, before1) {
		t.Errorf("h1 entries after the bad commands %q, before %q", after, before1)
	}
	if after := dnsEntries(t, h2); !slices.Equal(after, before2) {
		t.Errorf("h2 entries after the bad commands %q, before %q", after, before2)
	}
	if d := dig(cl, "db.weave.local"); !answers(d, []string{cIP}) {
		t.Errorf("%s; want %s still", d.Summary(), cIP)
	}
	// The failed dns-remove of h1's name on h2 did not reach h1.
	if got, err := lookup(h1, "db"); err != nil || !slices.Equal(got, []string{cIP}) {
		t.Errorf("h1: weave dns-lookup db = %v, %v; want %s", got, err, cIP)
	}
}
