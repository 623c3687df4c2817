package router

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/vishvananda/netlink"

	"github.com/weavelab/weave/router/netdev"
)

func TestAttachConnectsContainers(t *testing.T) {
	h := newTestHost(t)
	r := h.router()
	c1, c2 := newContainer(t), newContainer(t)
	got := mustAttach(t, r, c1, "10.105.1.1/24")
	if len(got) != 1 || got[0] != netip.MustParsePrefix("10.105.1.1/24") {
		t.Fatalf("Attach returned %v", got)
	}
	mustAttach(t, r, c2, "ip:10.105.1.2/24")

	l := c1.ethwe(t)
	if l == nil || l.Attrs().MTU != DefaultMTU || l.Attrs().Flags&net.FlagUp == 0 {
		t.Fatalf("ethwe in c1 = %+v; want up with mtu %d", l, DefaultMTU)
	}
	assertRoute(t, c1, "10.105.1.0/24")
	exchange(t, listen(t, c1.ns, "10.105.1.1"), listen(t, c2.ns, "10.105.1.2"))

	ps, err := r.PS(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	want := []Attachment{
		{ID: c1.ref, MAC: l.Attrs().HardwareAddr.String(), Addrs: []netip.Prefix{netip.MustParsePrefix("10.105.1.1/24")}},
		{ID: c2.ref, MAC: c2.ethwe(t).Attrs().HardwareAddr.String(), Addrs: []netip.Prefix{netip.MustParsePrefix("10.105.1.2/24")}},
	}
	assertPS(t, ps, want)
	if ps, err := r.PS(context.Background(), c2.ref); err != nil || len(ps) != 1 || ps[0].ID != c2.ref {
		t.Fatalf("PS(c2) = %v, %v", ps, err)
	}

	host := hostVethName(h.cfg.Bridge, c1.ref)
	if err := r.Detach(context.Background(), c1.ref, nil); err != nil {
		t.Fatal(err)
	}
	if c1.ethwe(t) != nil {
		t.Fatal("ethwe still in c1 after detach")
	}
	if ok, _ := netdev.LinkExists(host); ok {
		t.Fatalf("host veth %s still there after detach", host)
	}
	ps, _ = r.PS(context.Background())
	assertPS(t, ps, want[1:])
	if _, err := r.PS(context.Background(), c1.ref); err == nil || !strings.Contains(err.Error(), "not attached") {
		t.Fatalf("PS of a detached container = %v", err)
	}
}

func TestAttachMoreAddresses(t *testing.T) {
	h := newTestHost(t)
	r := h.router()
	c1, c2 := newContainer(t), newContainer(t)
	mustAttach(t, r, c1, "10.105.1.1/24")
	mac := c1.ethwe(t).Attrs().HardwareAddr.String()
	mustAttach(t, r, c1, "10.106.0.1/16")
	// The same namespace by path is the same container.
	path := "netns:" + filepath.Join(netdev.NetnsDir, strings.TrimPrefix(c1.ref, "netns:"))
	mustAttach(t, r, testContainer{ref: path, ns: c1.ns}, "10.107.0.1/16")
	if got := c1.ethwe(t).Attrs().HardwareAddr.String(); got != mac {
		t.Fatalf("re-attach replaced ethwe: mac %s, was %s", got, mac)
	}
	ps, err := r.PS(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	assertPS(t, ps, []Attachment{{ID: c1.ref, MAC: mac, Addrs: prefixes("10.105.1.1/24", "10.106.0.1/16", "10.107.0.1/16")}})
	assertRoute(t, c1, "10.106.0.0/16")

	// Two subnets, both reachable from a container in each.
	mustAttach(t, r, c2, "10.105.1.2/24", "10.106.0.2/16")
	a1, a2 := listen(t, c1.ns, "10.106.0.1"), listen(t, c2.ns, "10.106.0.2")
	exchange(t, a1, a2)

	if err := r.Detach(context.Background(), c1.ref, []string{"10.105.1.1/24"}); err != nil {
		t.Fatal(err)
	}
	ps, _ = r.PS(context.Background(), c1.ref)
	assertPS(t, ps, []Attachment{{ID: c1.ref, MAC: mac, Addrs: prefixes("10.106.0.1/16", "10.107.0.1/16")}})
	assertKernelAddrs(t, c1, prefixes("10.106.0.1/16", "10.107.0.1/16"))
	// Removing the last addresses removes the interface.
	if err := r.Detach(context.Background(), c1.ref, []string{"10.107.0.1/16", "10.106.0.1/16"}); err != nil {
		t.Fatal(err)
	}
	if c1.ethwe(t) != nil {
		t.Fatal("ethwe still in c1 after its last address was detached")
	}
}

func TestErrorsChangeNothing(t *testing.T) {
	h := newTestHost(t)
	r := h.router()
	c1, c2, c3 := newContainer(t), newContainer(t), newContainer(t)
	mustAttach(t, r, c1, "10.105.1.1/24")
	mustAttach(t, r, c2, "10.105.1.2/24", "10.106.0.2/16")
	if _, err := r.Expose([]string{"10.105.1.254/24"}); err != nil {
		t.Fatal(err)
	}
	// A namespace with an ethwe this router did not make.
	c4 := newContainer(t)
	v := netlink.NewVeth(netlink.LinkAttrs{Name: "h5foreign0", TxQLen: -1})
	v.PeerName = "ethwe"
	v.PeerNamespace = netlink.NsFd(int(c4.ns))
	if err := netlink.LinkAdd(v); err != nil {
		t.Fatal(err)
	}
	stale := filepath.Join(t.TempDir(), "not-a-namespace")
	os.WriteFile(stale, nil, 0o600)

	type call struct {
		op        string // attach, detach, expose, hide
		container string
		addrs     []string
		err       string
	}
	calls := []call{
		{"attach", c3.ref, []string{"10.105.1.1/24"}, "address 10.105.1.1/24 already used by " + c1.ref},
		{"attach", c3.ref, []string{"10.105.1.3/24", "10.106.0.2/16"}, "address 10.106.0.2/16 already used by " + c2.ref},
		{"attach", c3.ref, []string{"10.105.1.3/24", "10.105.1.1/16"}, "already used by " + c1.ref},
		{"attach", c1.ref, []string{"10.105.1.1/24"}, "already attached with 10.105.1.1/24"},
		{"attach", c1.ref, []string{"10.105.1.5/24", "10.105.1.1/24"}, "already attached with 10.105.1.1/24"},
		{"attach", c3.ref, []string{"10.105.1.254/24"}, "already used by the host"},
		{"attach", c3.ref, []string{"10.105.1.300/24"}, "malformed CIDR"},
		{"attach", c3.ref, []string{"10.105.1.3"}, "missing /prefix-length"},
		{"attach", c3.ref, []string{"10.105.1.0/24"}, "network address"},
		{"attach", c3.ref, []string{"10.105.1.255/24"}, "broadcast address"},
		{"attach", c3.ref, []string{"10.105.1.3/24", "10.105.1.3/24"}, "given twice"},
		{"attach", c3.ref, []string{"net:10.105.0.0/16"}, "static addresses only"},
		{"attach", c3.ref, nil, "static addresses only"},
		{"attach", "netns:h5-no-such-ns", []string{"10.105.1.3/24"}, "no such network namespace"},
		{"attach", "pid:999999999", []string{"10.105.1.3/24"}, "no such process"},
		{"attach", "netns:" + stale, []string{"10.105.1.3/24"}, "is not a namespace"},
		{"attach", "webapp", []string{"10.105.1.3/24"}, "not a namespace reference"},
		{"attach", c4.ref, []string{"10.105.1.4/24"}, "already has an interface ethwe"},
		{"detach", c3.ref, nil, "not attached"},
		{"detach", c1.ref, []string{"10.105.1.9/24"}, "not attached with 10.105.1.9/24"},
		{"detach", c2.ref, []string{"10.106.0.2/16", "10.105.1.9/24"}, "not attached with 10.105.1.9/24"},
		{"detach", c1.ref, []string{"bogus"}, "malformed CIDR"},
		{"expose", "", []string{"10.105.1.1/24"}, "already used by " + c1.ref},
		{"expose", "", []string{"10.105.1.254/16"}, "already exposed as 10.105.1.254/24"},
		{"expose", "", nil, "static addresses only"},
		{"hide", "", []string{"10.105.1.253/24"}, "not exposed"},
	}
	before := snapshot(t, h, c1, c2, c3, c4)
	for _, c := range calls {
		t.Run(c.op+" "+c.container+" "+strings.Join(c.addrs, ","), func(t *testing.T) {
			// A subtest runs on its own goroutine: enter the host first.
			runtimeLockAndEnter(t, h.ns)
			var err error
			prefix := c.op + " " + c.container + ": "
			switch c.op {
			case "attach":
				_, err = r.Attach(context.Background(), c.container, c.addrs)
			case "detach":
				err = r.Detach(context.Background(), c.container, c.addrs)
			case "expose":
				_, err = r.Expose(c.addrs)
				prefix = "expose: "
			case "hide":
				err = r.Hide(c.addrs)
				prefix = "hide: "
			}
			if err == nil || !strings.Contains(err.Error(), c.err) || !strings.HasPrefix(err.Error(), prefix) {
				t.Fatalf("error = %v; want %q...%q", err, prefix, c.err)
			}
			t.Log(err)
			if strings.Contains(err.Error(), "\n") {
				t.Fatalf("error is not one line: %q", err)
			}
			if after := snapshot(t, h, c1, c2, c3, c4); after != before {
				t.Fatalf("kernel or table changed:\nbefore:\n%s\nafter:\n%s", before, after)
			}
		})
	}
}

func TestExposeHide(t *testing.T) {
	h := newTestHost(t)
	r := h.router()
	c1 := newContainer(t)
	mustAttach(t, r, c1, "10.105.1.1/24")
	for range 2 { // idempotent
		got, err := r.Expose([]string{"10.105.1.254/24"})
		if err != nil || len(got) != 1 || got[0] != netip.MustParsePrefix("10.105.1.254/24") {
			t.Fatalf("Expose = %v, %v", got, err)
		}
	}
	// The host (this goroutine's namespace) reaches the container.
	exchange(t, listen(t, h.ns, "10.105.1.254"), listen(t, c1.ns, "10.105.1.1"))
	if _, err := r.Expose([]string{"ip:10.106.0.254/16"}); err != nil {
		t.Fatal(err)
	}
	exposed, _ := r.Exposed()
	if !slices.Equal(exposed, prefixes("10.105.1.254/24", "10.106.0.254/16")) {
		t.Fatalf("Exposed = %v", exposed)
	}
	if err := r.Hide([]string{"10.105.1.254/24"}); err != nil {
		t.Fatal(err)
	}
	if exposed, _ = r.Exposed(); !slices.Equal(exposed, prefixes("10.106.0.254/16")) {
		t.Fatalf("Exposed after Hide = %v", exposed)
	}
	if err := r.Hide(nil); err != nil {
		t.Fatal(err)
	}
	if exposed, _ = r.Exposed(); len(exposed) != 0 {
		t.Fatalf("Exposed after Hide all = %v", exposed)
	}
}

// TestConcurrentAttach attaches containers from several goroutines, two of
// them racing for one address: exactly one of those wins.
func TestConcurrentAttach(t *testing.T) {
	h := newTestHost(t)
	r := h.router()
	const n = 6
	cs := make([]testContainer, n)
	for i := range cs {
		cs[i] = newContainer(t)
	}
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range cs {
		wg.Go(func() {
			// Router calls must come from a thread in the host namespace,
			// as they do in the daemon; this thread is discarded after.
			runtimeLockAndEnter(t, h.ns)
			addr := fmt.Sprintf("10.105.1.%d/24", 10+i)
			if i == n-1 {
				addr = "10.105.1.10/24" // same as container 0
			}
			_, errs[i] = r.Attach(context.Background(), cs[i].ref, []string{addr})
		})
	}
	wg.Wait()
	failed := 0
	for i, err := range errs {
		if err != nil {
			failed++
			if (i != 0 && i != n-1) || !strings.Contains(err.Error(), "already used by") {
				t.Errorf("attach %d: %v", i, err)
			}
		}
	}
	if failed != 1 {
		t.Fatalf("%d attaches failed, want exactly 1 (the duplicate): %v", failed, errs)
	}
	ps, err := r.PS(context.Background())
	if err != nil || len(ps) != n-1 {
		t.Fatalf("PS = %v, %v; want %d containers", ps, err, n-1)
	}
}
