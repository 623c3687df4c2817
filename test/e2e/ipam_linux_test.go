package e2e

import (
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"testing"

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
