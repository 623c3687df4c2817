package e2e

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/weavelab/weave/mesh/identity"
	"github.com/weavelab/weave/router/api"
	"github.com/weavelab/weave/test/harness"
)

// ipamStatus reads `weave status ipam --json`.
func ipamStatus(t *testing.T, h *harness.Host) api.IPAM {
	t.Helper()
	var st api.IPAM
	if err := h.StatusJSON("ipam", &st); err != nil {
		t.Fatalf("%s: status ipam: %v", h.HostName, err)
	}
	return st
}

// TestIPAMConcurrentAttach: 24 netns containers attached at once on three
// hosts (no address given) get 24 distinct addresses from the default
// range, and they reach each other across hosts.
func TestIPAMConcurrentAttach(t *testing.T) {
	t.Parallel()
	l := harness.New(t)
	h1, h2, h3 := l.AddHost("h1"), l.AddHost("h2"), l.AddHost("h3")
	h1.Launch()
	h2.Launch(h1.IP)
	h3.Launch(h1.IP)
	waitMesh(t, h1, h2, h3)

	hosts := []*harness.Host{h1, h2, h3}
	var cs []*harness.Container
	for i := range 24 {
		cs = append(cs, l.AddContainer(hosts[i%3], fmt.Sprintf("c%d", i)))
	}
	addrs := make([]string, len(cs))
	errs := make([]error, len(cs))
	var wg sync.WaitGroup
	for i, c := range cs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := c.Host.WeaveQuiet("attach", c.Ref())
			if !r.OK() {
				errs[i] = fmt.Errorf("%s: %s", c.Ref(), r)
				return
			}
			addrs[i] = strings.TrimSpace(r.Stdout)
		}()
	}
	wg.Wait()
	seen := map[string]string{}
	rng := netip.MustParsePrefix("10.32.0.0/12")
	for i, a := range addrs {
		if errs[i] != nil {
			t.Fatal(errs[i])
		}
		ip, err := netip.ParseAddr(a)
		if err != nil || !rng.Contains(ip) {
			t.Fatalf("%s got %q: want one address in %s", cs[i].Ref(), a, rng)
		}
		if other, dup := seen[a]; dup {
			t.Fatalf("%s and %s both got %s", other, cs[i].Ref(), a)
		}
		seen[a] = cs[i].Ref()
	}
	// Across hosts, by the allocated addresses.
	harness.WaitFor(t, reachTimeout, func() (bool, string) { return cs[0].Reaches(addrs[1]) })
	harness.WaitFor(t, reachTimeout, func() (bool, string) { return cs[2].Reaches(addrs[4]) })

	// Every host sees one ring: the whole range, three owners, all
	// reachable.
	for _, h := range hosts {
		st := ipamStatus(t, h)
		var total uint64
		for _, p := range st.Peers {
			total += p.Size
			if !p.Reachable {
				t.Errorf("%s: owner %s unreachable", h.HostName, p.Peer)
			}
		}
		if st.State != "ready" || total != 1<<20 {
			t.Errorf("%s: ipam %+v: want ready with the whole /12 owned", h.HostName, st)
		}
	}
	if st := ipamStatus(t, h1); st.Allocated != 8 {
		t.Errorf("h1 allocated %d, want 8", st.Allocated)
	}
}

// smallRange is an allocation range small enough to run out of: 16
// addresses, of which 14 are handed out (not the network and broadcast
// addresses).
const (
	smallRange     = "10.40.0.0/28"
	smallRangeSize = 16
	smallRangeUsed = 14
)

// attachOne attaches c with no ADDR and returns the one address printed.
func attachOne(t *testing.T, c *harness.Container) string {
	t.Helper()
	got := c.Attach()
	if len(got) != 1 {
		t.Fatalf("attach %s printed %q: want one address", c.Ref(), got)
	}
	return got[0]
}

// psAddrs returns the address of every container attached on h (weave:expose
// left out), mapped to the container's ID, from `weave ps`. Two containers
// with one address fail the test.
func psAddrs(t *testing.T, h *harness.Host) map[string]string {
	t.Helper()
	r := h.WeaveQuiet("ps")
	if !r.OK() {
		t.Fatalf("%s: %s", h.HostName, r)
	}
	out := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(r.Stdout), "\n") {
		f := strings.Fields(line)
		if len(f) < 3 || f[0] == "weave:expose" {
			continue
		}
		for _, a := range f[2:] {
			ip, _, _ := strings.Cut(a, "/")
			if other, dup := out[ip]; dup {
				t.Fatalf("%s: weave ps shows %s on %s and %s", h.HostName, ip, other, f[0])
			}
			out[ip] = f[0]
		}
	}
	return out
}

// ipamOwners returns each owner's share of the range (by nickname, or
// peer name when the nickname is not known) from `weave status ipam`.
func ipamOwners(h *harness.Host) (map[string]uint64, api.IPAM, error) {
	var st api.IPAM
	if err := h.StatusJSON("ipam", &st); err != nil {
		return nil, st, err
	}
	out := map[string]uint64{}
	for _, p := range st.Peers {
		who := p.Peer.NickName
		if who == "" {
			who = p.Peer.Name.String()
		}
		out[who] += p.Size
	}
	return out, st, nil
}

// waitOwners waits until h's `weave status ipam` shows exactly the shares
// in want (by nickname).
func waitOwners(t *testing.T, h *harness.Host, want map[string]uint64) {
	t.Helper()
	harness.WaitFor(t, convergeTimeout, func() (bool, string) {
		got, st, err := ipamOwners(h)
		if err != nil {
			return false, err.Error()
		}
		return maps.Equal(got, want) && st.State == "ready",
			fmt.Sprintf("%s: ipam %s, owners %v; want ready and owners %v", h.HostName, st.State, got, want)
	})
}

// waitUnreachable waits until h's ring marks each of peers unreachable
// (the mesh has no route to it any more).
func waitUnreachable(t *testing.T, h *harness.Host, peers ...*harness.Host) {
	t.Helper()
	harness.WaitFor(t, convergeTimeout, func() (bool, string) {
		_, st, err := ipamOwners(h)
		if err != nil {
			return false, err.Error()
		}
		var still []string
		for _, p := range st.Peers {
			for _, o := range peers {
				if p.Peer.Name.String() == o.PeerName && p.Reachable {
					still = append(still, o.HostName)
				}
			}
		}
		return len(still) == 0, fmt.Sprintf("%s: ipam still sees %v reachable", h.HostName, still)
	})
}

// noEthwe fails the test if c has an ethwe interface.
func noEthwe(t *testing.T, c *harness.Container) {
	t.Helper()
	if r := c.Run(context.Background(), "ip", "link", "show", "ethwe"); r.OK() {
		t.Errorf("%s has ethwe after a failed attach:\n%s", c.Ref(), r.Stdout)
	}
}

// inPrefix reports whether the address ip lies in the CIDR p.
func inPrefix(ip, p string) bool {
	a, err := netip.ParseAddr(ip)
	return err == nil && netip.MustParsePrefix(p).Contains(a)
}

// TestIPAMRmPeer: after `weave rmpeer` of a stopped peer its space is the
// caller's: the whole small range can be allocated there. rmpeer refuses a
// reachable peer and ourselves.
func TestIPAMRmPeer(t *testing.T) {
	t.Parallel()
	l := harness.New(t)
	h1, h2 := l.AddHost("h1"), l.AddHost("h2")
	// consensus=2 on both: the first allocation seeds the ring with both.
	h1.Launch("--ipalloc-range", smallRange, "--ipalloc-init", "consensus=2")
	h2.Launch("--ipalloc-range", smallRange, h1.IP)
	waitMesh(t, h1, h2)
	attachOne(t, l.AddContainer(h1, "c0"))
	attachOne(t, l.AddContainer(h2, "c0"))
	half := uint64(smallRangeSize / 2)
	waitOwners(t, h1, map[string]uint64{"h1": half, "h2": half})

	checkOneLineError(t, h1.Weave("rmpeer", h2.PeerName), "reachable")
	checkOneLineError(t, h1.Weave("rmpeer", "h2"), "reachable")
	checkOneLineError(t, h1.Weave("rmpeer", h1.PeerName), "ourselves")
	waitOwners(t, h1, map[string]uint64{"h1": half, "h2": half})

	h2.Stop()
	waitUnreachable(t, h1, h2)
	// By nickname, as for a running peer; then the output names it.
	r := h1.Weave("rmpeer", "h2")
	want := fmt.Sprintf("%d IPs taken over from %s(h2)", half, h2.PeerName)
	if !r.OK() {
		t.Errorf("rmpeer by the nickname of a stopped peer: %s; want %q", r, want)
		// By peer name, which the ring knows without the topology.
		r = h1.Weave("rmpeer", h2.PeerName)
		want = fmt.Sprintf("%d IPs taken over from %s", half, h2.PeerName)
	}
	if out := strings.TrimSpace(r.Stdout); !r.OK() || out != want {
		t.Errorf("%s: want exit 0 and %q", r, want)
	}
	waitOwners(t, h1, map[string]uint64{"h1": smallRangeSize})

	// h1 now hands out every address of the range (h2's container is
	// gone for good as far as the network knows), then says it is full.
	got := map[string]bool{}
	for i := range smallRangeUsed + 1 {
		c := l.AddContainer(h1, fmt.Sprintf("c%d", i+1))
		r := h1.WeaveQuiet("attach", c.Ref())
		if !r.OK() {
			checkOneLineError(t, r, "no free address")
			noEthwe(t, c)
			break
		}
		ip := strings.TrimSpace(r.Stdout)
		if !inPrefix(ip, smallRange) || got[ip] {
			t.Fatalf("attach %s: got %q, want a new address in %s", c.Ref(), ip, smallRange)
		}
		got[ip] = true
	}
	if n := len(psAddrs(t, h1)); n != smallRangeUsed {
		t.Errorf("h1 has %d addresses after filling the range, want %d (its own share is %d)", n, smallRangeUsed, half-1)
	}
	if st := ipamStatus(t, h1); st.Allocated != smallRangeUsed || st.Pending != 0 {
		t.Errorf("h1 ipam: %d allocated, %d pending; want %d and 0", st.Allocated, st.Pending, smallRangeUsed)
	}
}

// TestIPAMKillRestart: a router killed with SIGKILL and launched again
// keeps its allocations, and neither it nor its peer hands them out again.
func TestIPAMKillRestart(t *testing.T) {
	t.Parallel()
	l := harness.New(t)
	h1, h2 := l.AddHost("h1"), l.AddHost("h2")
	h1.Launch("--ipalloc-init", "consensus=2")
	h2.Launch(h1.IP)
	waitMesh(t, h1, h2)
	for i := range 4 {
		attachOne(t, l.AddContainer(h1, fmt.Sprintf("a%d", i)))
	}
	before := psAddrs(t, h1)
	if len(before) != 4 {
		t.Fatalf("h1 ps: %v, want 4 addresses", before)
	}

	h1.Kill()
	relaunch(t, h1, "--ipalloc-init", "consensus=2")
	waitMesh(t, h1, h2)
	if after := psAddrs(t, h1); !maps.Equal(after, before) {
		t.Fatalf("h1 ps after kill -9 and launch: %v, want %v", after, before)
	}
	if st := ipamStatus(t, h1); st.Allocated != 4 || st.State != "ready" {
		t.Fatalf("h1 ipam after restart: %s, %d allocated; want ready, 4", st.State, st.Allocated)
	}

	// More on both hosts at once: nothing collides with the four.
	var cs []*harness.Container
	for i := range 3 {
		cs = append(cs, l.AddContainer(h1, fmt.Sprintf("b%d", i)), l.AddContainer(h2, fmt.Sprintf("b%d", i)))
	}
	attachAll(t, cs)
	all := map[string]string{}
	for _, h := range []*harness.Host{h1, h2} {
		for ip, id := range psAddrs(t, h) {
			if other, dup := all[ip]; dup {
				t.Errorf("%s has %s on %s and on %s", ip, other, h.HostName, id)
			}
			all[ip] = h.HostName + " " + id
		}
	}
	if len(all) != 10 {
		t.Errorf("addresses in use: %v, want 10 distinct", all)
	}
}

// relaunch launches h's router again right after Kill. Kill returns once
// the router's main thread is a zombie, but its other threads may still
// hold the pid file's lock for a moment; launch then says "already
// running". Retry until the kernel has let go of it.
func relaunch(t *testing.T, h *harness.Host, args ...string) {
	t.Helper()
	args = append([]string{"launch", "--nickname", h.HostName}, args...)
	var last harness.Result
	harness.WaitFor(t, reachTimeout, func() (bool, string) {
		last = h.WeaveQuiet(args...)
		if !last.OK() && !strings.Contains(last.Stderr, "already running") {
			t.Fatalf("%s: %s", h.HostName, last)
		}
		return last.OK(), last.String()
	})
	t.Logf("%s: %s", h.HostName, last)
	if name := strings.TrimSpace(last.Stdout); name != h.PeerName {
		t.Fatalf("%s relaunched as %q, want its old peer name %s", h.HostName, name, h.PeerName)
	}
}

// attachAll attaches every container (no ADDR) at once and fails the test
// if one fails.
func attachAll(t *testing.T, cs []*harness.Container) []string {
	t.Helper()
	addrs := make([]string, len(cs))
	errs := make([]error, len(cs))
	var wg sync.WaitGroup
	for i, c := range cs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := c.Host.WeaveQuiet("attach", c.Ref())
			if !r.OK() {
				errs[i] = fmt.Errorf("%s on %s: %s", c.Ref(), c.Host.HostName, r)
			}
			addrs[i] = strings.TrimSpace(r.Stdout)
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	return addrs
}

// TestIPAMSeededApart: two routers launched alone that both allocated have
// each seeded a ring of their own; connected, they refuse each other with
// a reason, and neither ring changes.
func TestIPAMSeededApart(t *testing.T) {
	t.Parallel()
	l := harness.New(t)
	h1, h2 := l.AddHost("h1"), l.AddHost("h2")
	h1.Launch()
	h2.Launch()
	attachOne(t, l.AddContainer(h1, "c1"))
	attachOne(t, l.AddContainer(h2, "c2"))
	whole := uint64(1 << 20) // 10.32.0.0/12
	waitOwners(t, h1, map[string]uint64{"h1": whole})
	waitOwners(t, h2, map[string]uint64{"h2": whole})

	h1.MustWeave("connect", h2.IP)
	var reason string
	harness.WaitFor(t, convergeTimeout, func() (bool, string) {
		var conns []api.Connection
		if err := h1.StatusJSON("connections", &conns); err != nil {
			return false, err.Error()
		}
		for _, c := range conns {
			r := strings.ToLower(c.Reason)
			if c.State == api.StateFailed && strings.Contains(r, "ipam") && strings.Contains(r, "incompatible") {
				reason = c.Reason
				return true, ""
			}
		}
		return false, fmt.Sprintf("h1 connections: %+v; want one failed for an incompatible ipam", conns)
	})
	t.Logf("h1's connection to h2 failed: %s", reason)
	for _, h := range []*harness.Host{h1, h2} {
		if log := h.Log(); !strings.Contains(log, "incompatible") || !strings.Contains(log, "seeded") {
			t.Errorf("%s: weave.log does not say the rings were seeded apart", h.HostName)
		}
	}
	// Never merged: each still owns the whole range, alone.
	waitOwners(t, h1, map[string]uint64{"h1": whole})
	waitOwners(t, h2, map[string]uint64{"h2": whole})
}

// TestIPAMReset: `weave reset` hands the router's space to a reachable
// peer before it goes.
func TestIPAMReset(t *testing.T) {
	t.Parallel()
	l := harness.New(t)
	h1, h2 := l.AddHost("h1"), l.AddHost("h2")
	h1.Launch("--ipalloc-init", "consensus=2")
	h2.Launch(h1.IP)
	waitMesh(t, h1, h2)
	attachOne(t, l.AddContainer(h2, "c2"))
	waitOwners(t, h1, map[string]uint64{"h1": 1 << 19, "h2": 1 << 19})

	h2.MustWeave("reset")
	waitOwners(t, h1, map[string]uint64{"h1": 1 << 20})
	attachOne(t, l.AddContainer(h1, "c1"))
}

// TestIPAMPartition: with h3 cut off, h1 and h3 allocate from their own
// space (h1 may get more from h2; h3 can only fail or wait once its own
// is used up); after healing, every address in use is distinct.
func TestIPAMPartition(t *testing.T) {
	t.Parallel()
	const rng = "10.40.0.0/27" // 30 addresses to hand out
	l := harness.New(t)
	h1, h2, h3 := l.AddHost("h1"), l.AddHost("h2"), l.AddHost("h3")
	h1.Launch("--ipalloc-range", rng, "--ipalloc-init", "consensus=3")
	h2.Launch("--ipalloc-range", rng, "--ipalloc-init", "consensus=3", h1.IP)
	h3.Launch("--ipalloc-range", rng, "--ipalloc-init", "consensus=3", h1.IP)
	waitMesh(t, h1, h2, h3)
	hosts := []*harness.Host{h1, h2, h3}
	var cs []*harness.Container
	for _, h := range hosts {
		cs = append(cs, l.AddContainer(h, "c0"))
	}
	attachAll(t, cs)
	// Every host owns space now (as a seed, or given some).
	harness.WaitFor(t, convergeTimeout, func() (bool, string) {
		got, _, err := ipamOwners(h3)
		return err == nil && len(got) == 3, fmt.Sprintf("h3 sees owners %v (%v), want all three", got, err)
	})

	l.Cut(h1, h3)
	l.Cut(h2, h3)
	waitUnreachable(t, h3, h1, h2)
	waitUnreachable(t, h1, h3)
	waitUnreachable(t, h2, h3)
	_, st3, err := ipamOwners(h3)
	if err != nil {
		t.Fatal(err)
	}
	var h3Free uint64
	for _, p := range st3.Peers {
		if p.Us {
			h3Free = p.Free
		}
	}
	// More than either side can serve alone: attaches that cannot be
	// served must fail or wait (bounded here), never succeed outside
	// the host's space.
	tries := int(h3Free) + 3
	var wg sync.WaitGroup
	var mu sync.Mutex
	outcome := map[string]int{}
	for _, h := range []*harness.Host{h1, h3} {
		for i := range tries {
			c := l.AddContainer(h, fmt.Sprintf("p%d", i))
			wg.Add(1)
			go func() {
				defer wg.Done()
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				defer cancel()
				r := h.WeaveCtx(ctx, "attach", c.Ref())
				what := "attached"
				switch {
				case r.OK():
				case ctx.Err() != nil:
					what = "waited"
				default:
					what = "failed"
					checkOneLineError(t, r, "")
				}
				mu.Lock()
				outcome[h.HostName+" "+what]++
				mu.Unlock()
			}()
		}
	}
	wg.Wait()
	t.Logf("attaches during the partition (%d per host, h3 had %d free): %v", tries, h3Free, outcome)
	if outcome["h3 attached"] > int(h3Free) {
		t.Errorf("h3 attached %d containers while cut off with %d free addresses", outcome["h3 attached"], h3Free)
	}
	if outcome["h3 attached"] == 0 || outcome["h1 attached"] == 0 {
		t.Errorf("during the partition: %v; want both sides to allocate from their own space", outcome)
	}

	l.Restore(h1, h3)
	l.Restore(h2, h3)
	waitMesh(t, h1, h2, h3)
	all := map[string]string{}
	for _, h := range hosts {
		for ip, id := range psAddrs(t, h) {
			if other, dup := all[ip]; dup {
				t.Errorf("%s is used by %s and by %s on %s", ip, other, id, h.HostName)
			}
			all[ip] = h.HostName + " " + id
			if !inPrefix(ip, rng) {
				t.Errorf("%s on %s: %s is outside %s", id, h.HostName, ip, rng)
			}
		}
	}
	var allocated int
	for _, h := range hosts {
		st := ipamStatus(t, h)
		allocated += st.Allocated
		if st.Pending != 0 {
			t.Errorf("%s: %d requests still pending after their callers went away", h.HostName, st.Pending)
		}
	}
	if allocated != len(all) {
		t.Errorf("ipam counts %d allocations over the three hosts, weave ps shows %d addresses", allocated, len(all))
	}
	t.Logf("%d distinct addresses in use after healing", len(all))
}

// TestIPAMBadInput: attach and launch refuse bad IPAM input with one line
// on stderr and exit 1, and allocate nothing.
func TestIPAMBadInput(t *testing.T) {
	t.Parallel()
	l := harness.New(t)
	h1, h2, h3 := l.AddHost("h1"), l.AddHost("h2"), l.AddHost("h3")
	h1.Launch("--ipalloc-init", "consensus=2")
	h2.Launch(h1.IP)
	waitMesh(t, h1, h2)
	attachOne(t, l.AddContainer(h1, "ok"))
	waitOwners(t, h1, map[string]uint64{"h1": 1 << 19, "h2": 1 << 19})
	// The ring is sorted by peer name: the lower one owns 10.32.0.0/13.
	n1, err1 := identity.ParsePeerName(h1.PeerName)
	n2, err2 := identity.ParsePeerName(h2.PeerName)
	if err := errors.Join(err1, err2); err != nil {
		t.Fatal(err)
	}
	h2Addr := "10.40.0.5/12"
	if n2 < n1 {
		h2Addr = "10.32.0.5/12"
	}

	c := l.AddContainer(h1, "bad")
	for _, tc := range []struct {
		name    string
		args    []string
		mention string
	}{
		{"outside the range", []string{"net:10.99.0.0/24", c.Ref()}, "outside"},
		{"malformed CIDR", []string{"net:10.32.0.0/33", c.Ref()}, "malformed"},
		{"too small", []string{"net:10.32.0.0/31", c.Ref()}, "too small"},
		{"network address", []string{"10.32.0.0/12", c.Ref()}, "10.32.0.0"},
		{"owned by another peer", []string{h2Addr, c.Ref()}, "another peer"},
		{"no such netns", []string{"netns:" + l.ID() + "-nosuch"}, "nosuch"},
		{"good then bad", []string{"net:default", "net:10.99.0.0/24", c.Ref()}, "outside"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			checkOneLineError(t, h1.Weave(append([]string{"attach"}, tc.args...)...), tc.mention)
			st := ipamStatus(t, h1)
			if st.Allocated != 1 || st.Held != 0 || st.Pending != 0 {
				t.Errorf("h1 ipam after a failed attach: %d allocated, %d held, %d pending; want 1, 0, 0", st.Allocated, st.Held, st.Pending)
			}
			noEthwe(t, c)
		})
	}

	for _, tc := range []struct {
		name    string
		args    []string
		mention string
	}{
		{"bad init", []string{"--ipalloc-init", "bogus"}, "--ipalloc-init"},
		{"bad consensus", []string{"--ipalloc-init", "consensus=0"}, "--ipalloc-init"},
		{"default subnet outside", []string{"--ipalloc-default-subnet", "10.99.0.0/16"}, "--ipalloc-default-subnet"},
		{"range too small", []string{"--ipalloc-range", "10.40.0.0/31"}, "10.40.0.0/31"},
	} {
		t.Run("launch "+tc.name, func(t *testing.T) {
			checkOneLineError(t, h3.Weave(append([]string{"launch"}, tc.args...)...), tc.mention)
			if pid := h3.PID(); pid != 0 {
				if r := h3.WeaveQuiet("version"); strings.Contains(r.Stdout, "weave router") {
					t.Errorf("a router runs on h3 after a failed launch: %s", r.Stdout)
				}
			}
		})
	}
}

// TestIPAMGrace: the addresses of a namespace that vanishes are held for
// --ipalloc-grace, then freed; a namespace of the same name attached again
// within the grace period gets its address back.
func TestIPAMGrace(t *testing.T) {
	t.Parallel()
	l := harness.New(t)
	short, long := l.AddHost("short"), l.AddHost("long")
	short.Launch("--ipalloc-grace", "1s")
	long.Launch() // the default grace, 30s
	gone := l.AddContainer(short, "gone")
	attachOne(t, gone)
	attachOne(t, l.AddContainer(short, "stays"))
	back := l.AddContainer(long, "back")
	addr := attachOne(t, back)

	waitHeld := func(h *harness.Host, allocated, held int) {
		t.Helper()
		harness.WaitFor(t, convergeTimeout, func() (bool, string) {
			var st api.IPAM
			if err := h.StatusJSON("ipam", &st); err != nil {
				return false, err.Error()
			}
			return st.Allocated == allocated && st.Held == held,
				fmt.Sprintf("%s: %d allocated, %d held; want %d, %d", h.HostName, st.Allocated, st.Held, allocated, held)
		})
	}
	for _, c := range []*harness.Container{gone, back} {
		if out, err := exec.Command("ip", "netns", "delete", c.Name).CombinedOutput(); err != nil {
			t.Fatalf("ip netns delete %s: %v: %s", c.Name, err, out)
		}
	}
	// Held (the router notices at its next reconcile), then freed.
	waitHeld(short, 1, 0)
	waitHeld(long, 0, 1)
	if out, err := exec.Command("ip", "netns", "add", back.Name).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add %s: %v: %s", back.Name, err, out)
	}
	if got := attachOne(t, back); got != addr {
		t.Errorf("%s came back within the grace period and got %s, want its old %s", back.Ref(), got, addr)
	}
	waitHeld(long, 1, 0)
}
