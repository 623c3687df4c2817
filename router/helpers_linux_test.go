package router

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

	"github.com/weavelab/weave/router/netdev"
	"github.com/weavelab/weave/router/netdev/netdevtest"
)

// hangGuard bounds waits for datagrams so a broken test fails instead of
// hanging; it is not a performance assertion.
const hangGuard = 10 * time.Second

// testHost is an isolated host namespace (the test goroutine runs in it)
// with a router config whose state survives router restarts.
type testHost struct {
	t   *testing.T
	ns  netns.NsHandle
	cfg Config
}

func newTestHost(t *testing.T) *testHost {
	ns := netdevtest.EnterIsolatedHost(t)
	return &testHost{t: t, ns: ns, cfg: Config{
		Bridge:   "h5br0",
		MTU:      DefaultMTU,
		StateDir: filepath.Join(t.TempDir(), "state"),
		Logger:   slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug})),
	}}
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(b []byte) (int, error) {
	w.t.Log(strings.TrimSuffix(string(b), "\n"))
	return len(b), nil
}

func (h *testHost) router() *Router {
	h.t.Helper()
	r, err := New(h.cfg)
	if err != nil {
		h.t.Fatalf("New: %v", err)
	}
	h.t.Cleanup(func() { r.Close() })
	return r
}

// testContainer is a named namespace standing for a container.
type testContainer struct {
	ref string // netns:NAME
	ns  netns.NsHandle
}

func newContainer(t *testing.T) testContainer {
	name, ns := netdevtest.NewNamedNetns(t, "h5-c")
	return testContainer{ref: "netns:" + name, ns: ns}
}

// ethwe returns the container's ethwe link, or nil.
func (c testContainer) ethwe(t *testing.T) netlink.Link {
	t.Helper()
	h, err := netlink.NewHandleAt(c.ns)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	l, err := h.LinkByName("ethwe")
	if err != nil {
		return nil
	}
	return l
}

func mustAttach(t *testing.T, r *Router, c testContainer, addrs ...string) []netip.Prefix {
	t.Helper()
	got, err := r.Attach(context.Background(), c.ref, addrs)
	if err != nil {
		t.Fatalf("Attach: %v", err)
	}
	return got
}

// listen opens a UDP socket on ip inside ns.
func listen(t *testing.T, ns netns.NsHandle, ip string) *net.UDPConn {
	t.Helper()
	var conn *net.UDPConn
	err := netdev.DoInNetns(ns, func() (err error) {
		conn, err = net.ListenUDP("udp4", &net.UDPAddr{IP: net.ParseIP(ip)})
		return err
	})
	if err != nil {
		t.Fatalf("listen on %s: %v", ip, err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// exchange sends a datagram from a to b and a reply back, and checks both
// arrive: traffic across the bridge, both ways.
func exchange(t *testing.T, a, b *net.UDPConn) {
	t.Helper()
	msg := []byte(fmt.Sprintf("from %s", a.LocalAddr()))
	if _, err := a.WriteTo(msg, b.LocalAddr()); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 1500)
	b.SetReadDeadline(time.Now().Add(hangGuard))
	n, from, err := b.ReadFrom(buf)
	if err != nil || !bytes.Equal(buf[:n], msg) {
		t.Fatalf("%s did not get the datagram from %s: %q, %v", b.LocalAddr(), a.LocalAddr(), buf[:n], err)
	}
	if _, err := b.WriteTo([]byte("reply"), from); err != nil {
		t.Fatal(err)
	}
	a.SetReadDeadline(time.Now().Add(hangGuard))
	if n, _, err = a.ReadFrom(buf); err != nil || string(buf[:n]) != "reply" {
		t.Fatalf("%s did not get the reply from %s: %q, %v", a.LocalAddr(), b.LocalAddr(), buf[:n], err)
	}
}

func assertRoute(t *testing.T, c testContainer, dst string) {
	t.Helper()
	nh, err := netlink.NewHandleAt(c.ns)
	if err != nil {
		t.Fatal(err)
	}
	defer nh.Close()
	routes, err := nh.RouteList(nil, netlink.FAMILY_V4)
	if err != nil {
		t.Fatal(err)
	}
	for _, rt := range routes {
		if rt.Dst != nil && rt.Dst.String() == dst {
			return
		}
	}
	t.Fatalf("no route to %s in %s: %v", dst, c.ref, routes)
}

func assertPS(t *testing.T, got, want []Attachment) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("PS = %+v, want %+v", got, want)
	}
	for i := range want {
		if got[i].ID != want[i].ID || got[i].MAC != want[i].MAC || !slices.Equal(got[i].Addrs, want[i].Addrs) {
			t.Fatalf("PS = %+v, want %+v", got, want)
		}
	}
}

func prefixes(ss ...string) []netip.Prefix {
	var out []netip.Prefix
	for _, s := range ss {
		out = append(out, netip.MustParsePrefix(s))
	}
	return out
}

func assertKernelAddrs(t *testing.T, c testContainer, want []netip.Prefix) {
	t.Helper()
	nh, err := netlink.NewHandleAt(c.ns)
	if err != nil {
		t.Fatal(err)
	}
	defer nh.Close()
	addrs, err := nh.AddrList(c.ethwe(t), netlink.FAMILY_V4)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, a := range addrs {
		got = append(got, a.IPNet.String())
	}
	var ws []string
	for _, p := range want {
		ws = append(ws, p.String())
	}
	sort.Strings(got)
	sort.Strings(ws)
	if !slices.Equal(got, ws) {
		t.Fatalf("ethwe addresses in %s = %v, want %v", c.ref, got, ws)
	}
}

// snapshot renders what the kernel and the table hold: links in the host
// namespace (with master and state), addresses on the bridge, links and
// addresses in each container, and the state file.
func snapshot(t *testing.T, h *testHost, cs ...testContainer) string {
	t.Helper()
	var b strings.Builder
	describe := func(nh *netlink.Handle) {
		links, err := nh.LinkList()
		if err != nil {
			t.Fatal(err)
		}
		for _, l := range links {
			a := l.Attrs()
			fmt.Fprintf(&b, "  %s %s master=%d up=%v mtu=%d mac=%s\n", a.Name, l.Type(), a.MasterIndex, a.Flags&net.FlagUp != 0, a.MTU, a.HardwareAddr)
			addrs, _ := nh.AddrList(l, netlink.FAMILY_V4)
			for _, ad := range addrs {
				fmt.Fprintf(&b, "    %s\n", ad.IPNet)
			}
		}
	}
	b.WriteString("host:\n")
	hh, err := netlink.NewHandleAt(h.ns)
	if err != nil {
		t.Fatal(err)
	}
	describe(hh)
	hh.Close()
	for _, c := range cs {
		fmt.Fprintf(&b, "%s:\n", c.ref)
		nh, err := netlink.NewHandleAt(c.ns)
		if err != nil {
			t.Fatal(err)
		}
		describe(nh)
		nh.Close()
	}
	st, _ := os.ReadFile(filepath.Join(h.cfg.StateDir, stateFileName))
	b.Write(st)
	return b.String()
}

// runtimeLockAndEnter locks the calling goroutine to its thread and moves
// the thread into ns for good (the runtime discards it when the goroutine
// ends, since it is never unlocked).
func runtimeLockAndEnter(t *testing.T, ns netns.NsHandle) {
	runtime.LockOSThread()
	if err := netns.Set(ns); err != nil {
		t.Errorf("enter host namespace: %v", err)
	}
}
