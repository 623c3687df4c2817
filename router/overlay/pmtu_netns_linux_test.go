package overlay

import (
	"encoding/binary"
	"net/netip"
	"os/exec"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netns"

	"github.com/weavelab/weave/mesh/handshake"
	"github.com/weavelab/weave/router/netdev/netdevtest"
)

// detectIn runs DetectUnderlayMTU in namespace ns.
func detectIn(t *testing.T, ns netns.NsHandle, bind string) int {
	t.Helper()
	runtime.LockOSThread()
	orig, err := netns.Get()
	if err != nil {
		t.Fatal(err)
	}
	defer orig.Close()
	if err := netns.Set(ns); err != nil {
		t.Fatal(err)
	}
	mtu, err := DetectUnderlayMTU(netip.MustParseAddr(bind))
	if serr := netns.Set(orig); serr != nil {
		t.Fatalf("return to the test's namespace: %v", serr) // thread stays locked and is discarded
	}
	runtime.UnlockOSThread()
	if err != nil {
		t.Fatal(err)
	}
	return mtu
}

// TestPMTUNetns puts two overlays in their own network namespaces, a and
// b, joined through a router namespace r whose link to b has MTU 1400
// (a's own link has 1500, so a learns the narrow hop only by probing). Both
// ends must settle at a path MTU of 1400; then a DF frame from a's
// container that fits the container MTU (1376) but not the path gets ICMP
// "fragmentation needed" with the connection's frame MTU (1400 - Overhead),
// while the same frame without DF, and a DF frame that fits, get through.
func TestPMTUNetns(t *testing.T) {
	netdevtest.RequireRoot(t)
	nsA, hA := netdevtest.NewNamedNetns(t, "h10a")
	nsR, hR := netdevtest.NewNamedNetns(t, "h10r")
	nsB, hB := netdevtest.NewNamedNetns(t, "h10b")
	run := func(args ...string) {
		t.Helper()
		if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
			t.Fatalf("%s: %v: %s", strings.Join(args, " "), err, out)
		}
	}
	for _, ns := range []string{nsA, nsR, nsB} {
		run("ip", "-n", ns, "link", "set", "lo", "up")
	}
	run("ip", "-n", nsA, "link", "add", "va", "type", "veth", "peer", "name", "ra", "netns", nsR)
	run("ip", "-n", nsR, "link", "add", "rb", "mtu", "1400", "type", "veth", "peer", "name", "vb", "mtu", "1400", "netns", nsB)
	for _, c := range [][]string{
		{nsA, "va", "10.99.1.1/24"}, {nsR, "ra", "10.99.1.2/24"},
		{nsR, "rb", "10.99.2.1/24"}, {nsB, "vb", "10.99.2.2/24"},
	} {
		run("ip", "-n", c[0], "addr", "add", c[2], "dev", c[1])
		run("ip", "-n", c[0], "link", "set", c[1], "up")
	}
	run("ip", "-n", nsA, "route", "add", "default", "via", "10.99.1.2")
	run("ip", "-n", nsB, "route", "add", "default", "via", "10.99.2.1")
	run("ip", "netns", "exec", nsR, "sysctl", "-q", "-w", "net.ipv4.ip_forward=1")

	for _, c := range []struct {
		ns   netns.NsHandle
		bind string
		want int
	}{{hB, "0.0.0.0", 1400}, {hA, "0.0.0.0", 1500}, {hB, "10.99.2.2", 1400}, {hR, "0.0.0.0", 1500}, {hR, "10.99.2.1", 1400}} {
		if got := detectIn(t, c.ns, c.bind); got != c.want {
			t.Errorf("DetectUnderlayMTU(%s) = %d, want %d", c.bind, got, c.want)
		}
	}

	bind := func(addr string) func(*Config) {
		return func(c *Config) {
			c.BindAddr = netip.MustParseAddr(addr)
			c.UnderlayMTU = 1500
		}
	}
	a := newHostIn(t, 40, &hA, bind("10.99.1.1"))
	b := newHostIn(t, 41, &hB, bind("10.99.2.2"))
	if a.ov.prober == nil || b.ov.prober == nil {
		t.Fatal("no raw socket for path MTU probes")
	}
	a.routes.unicast[b.name] = b.name
	b.routes.unicast[a.name] = a.name
	a.routes.broadcast[a.name] = []P{b.name}
	b.routes.broadcast[b.name] = []P{a.name}
	connect(t, a, b, handshake.SuiteChaCha)
	waitEstablished(t, a, b)

	const pmtu = 1400
	frameMTU := pmtu - Overhead
	for _, h := range []*host{a, b} {
		waitFor(t, func() bool {
			ps := h.ov.Stats().Peers
			return len(ps) == 1 && ps[0].PMTUProbed
		})
		ps := h.ov.Stats().Peers[0]
		if ps.PMTU != pmtu || ps.MaxFrame != frameMTU+ethHeader {
			t.Fatalf("host %s: pmtu %d, max frame %d; want %d, %d", h.name, ps.PMTU, ps.MaxFrame, pmtu, frameMTU+ethHeader)
		}
	}
	if a.ov.ContainerMTU() != DefaultContainerMTU {
		t.Fatalf("container mtu %d, want %d", a.ov.ContainerMTU(), DefaultContainerMTU)
	}

	mA, mB := mac(40, 1), mac(41, 1)
	b.inject(t, ethFrame(broadcastMAC, mB, 1, 60)) // a learns mB
	a.expect(t, 1)

	// DF, within the container MTU but beyond the path: ICMP, not sent.
	a.inject(t, ipv4Frame(mB, mA, ethHeader+1350, true))
	var icmp []byte
	select {
	case icmp = <-a.frames:
	case <-time.After(safety):
		t.Fatal("no ICMP fragmentation-needed for a DF frame beyond the path MTU")
	}
	ip := icmp[ethHeader:]
	if ip[9] != 1 || ip[20] != 3 || ip[21] != 4 || int(binary.BigEndian.Uint16(ip[26:28])) != frameMTU {
		t.Fatalf("not an ICMP fragmentation-needed with mtu %d: % x", frameMTU, icmp[:min(len(icmp), 40)])
	}
	if string(icmp[0:6]) != string(mA) {
		t.Fatal("ICMP not addressed to the sender")
	}

	// Without DF, the same size and a much larger frame arrive whole
	// (fragmented on the way); a DF frame that fits arrives too.
	for _, f := range [][]byte{
		ipv4Frame(mB, mA, ethHeader+1350, false),
		ipv4Frame(mB, mA, 4000, false),
		ipv4Frame(mB, mA, ethHeader+frameMTU, true),
	} {
		a.inject(t, f)
		select {
		case got := <-b.frames:
			if string(got) != string(f) {
				t.Fatalf("frame of %d bytes altered", len(f))
			}
		case <-time.After(safety):
			t.Fatalf("frame of %d bytes (DF %v) never arrived", len(f), f[ethHeader+6]&0x40 != 0)
		}
	}
	b.expectNone(t)
	a.expectNone(t)
	st := a.ov.Stats()
	if st.FragNeeded != 1 || st.Fragmented != 2 {
		t.Fatalf("frag_needed %d fragmented %d, want 1 and 2", st.FragNeeded, st.Fragmented)
	}
	if d := st.Drops; len(d) != 0 {
		t.Fatalf("drops %v", d)
	}
}
