package netdev_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"net"
	"net/netip"
	"os"
	"testing"
	"time"

	"github.com/songgao/water"
	"github.com/vishvananda/netlink"

	"github.com/weavelab/weave/router/netdev"
	"github.com/weavelab/weave/router/netdev/netdevtest"
)

const testMTU = 1376

// hangGuard bounds waits for frames so a broken test fails instead of
// hanging; it is not a performance assertion.
const hangGuard = 10 * time.Second

func mustLink(t *testing.T, name string) netlink.Link {
	t.Helper()
	l, err := netlink.LinkByName(name)
	if err != nil {
		t.Fatalf("link %s: %v", name, err)
	}
	return l
}

// addVeth makes a veth pair name/name+"p" standing for a link of another kind.
func addVeth(t *testing.T, name string) {
	t.Helper()
	v := netlink.NewVeth(netlink.LinkAttrs{Name: name, TxQLen: -1})
	v.PeerName = name + "p"
	if err := netlink.LinkAdd(v); err != nil {
		t.Fatalf("add veth %s: %v", name, err)
	}
}

func noLink(t *testing.T, name string) {
	t.Helper()
	if ok, err := netdev.LinkExists(name); err != nil || ok {
		t.Fatalf("link %s exists = %v, %v; want gone", name, ok, err)
	}
}

func TestEnsureBridgeIdempotent(t *testing.T) {
	netdevtest.EnterIsolatedHost(t)
	br, err := netdev.EnsureBridge("h5br0", testMTU)
	if err != nil {
		t.Fatal(err)
	}
	again, err := netdev.EnsureBridge("h5br0", testMTU)
	if err != nil {
		t.Fatalf("second EnsureBridge: %v", err)
	}
	if again.Index != br.Index {
		t.Fatalf("second EnsureBridge made a new bridge: index %d, was %d", again.Index, br.Index)
	}
	l := mustLink(t, "h5br0")
	if l.Type() != "bridge" || l.Attrs().MTU != testMTU || l.Attrs().Flags&net.FlagUp == 0 {
		t.Fatalf("bridge = type %s mtu %d flags %v; want bridge, %d, up", l.Type(), l.Attrs().MTU, l.Attrs().Flags, testMTU)
	}
	// A link of another type with the name is refused.
	addVeth(t, "h5other0")
	if _, err := netdev.EnsureBridge("h5other0", testMTU); err == nil {
		t.Fatal("EnsureBridge adopted a veth")
	}
	if err := netdev.RemoveBridge("h5br0"); err != nil {
		t.Fatal(err)
	}
	noLink(t, "h5br0")
	if err := netdev.RemoveBridge("h5br0"); err != nil {
		t.Fatalf("removing an absent bridge: %v", err)
	}
}

func TestBridgeAddrs(t *testing.T) {
	netdevtest.EnterIsolatedHost(t)
	br, err := netdev.EnsureBridge("h5br0", testMTU)
	if err != nil {
		t.Fatal(err)
	}
	p := netip.MustParsePrefix("10.105.7.254/24")
	for range 2 { // idempotent
		if err := br.AddAddr(p); err != nil {
			t.Fatal(err)
		}
	}
	got, err := br.Addrs()
	if err != nil || len(got) != 1 || got[0] != p {
		t.Fatalf("Addrs = %v, %v; want [%s]", got, err, p)
	}
	for range 2 {
		if err := br.DelAddr(p); err != nil {
			t.Fatal(err)
		}
	}
	if got, _ := br.Addrs(); len(got) != 0 {
		t.Fatalf("Addrs after DelAddr = %v", got)
	}
}

// setup makes an isolated host with a bridge and a TAP on it, and a
// container namespace.
func setup(t *testing.T) (*netdev.Bridge, netdev.Device, *netdev.Container) {
	netdevtest.EnterIsolatedHost(t)
	br, err := netdev.EnsureBridge("h5br0", testMTU)
	if err != nil {
		t.Fatal(err)
	}
	tap, err := netdev.OpenTAP("h5tap0", "h5br0", testMTU)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tap.Close() })
	name, _ := netdevtest.NewNamedNetns(t, "h5-c")
	ref, err := netdev.ParseContainer("netns:" + name)
	if err != nil {
		t.Fatal(err)
	}
	c, err := netdev.OpenContainer(ref)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return br, tap, c
}

func TestTAPOnBridge(t *testing.T) {
	br, tap, _ := setup(t)
	l := mustLink(t, "h5tap0")
	if l.Attrs().MasterIndex != br.Index || l.Attrs().MTU != testMTU || l.Attrs().Flags&net.FlagUp == 0 {
		t.Fatalf("tap master %d mtu %d flags %v; want master %d, mtu %d, up", l.Attrs().MasterIndex, l.Attrs().MTU, l.Attrs().Flags, br.Index, testMTU)
	}
	if l.Attrs().TxQLen != 4096 {
		t.Fatalf("tap txqueuelen %d, want 4096 (tun's 500 drops a container's UDP while the router is off the CPU)", l.Attrs().TxQLen)
	}
	if tap.BatchSize() < 1 || tap.Name() != "h5tap0" || tap.MTU() != testMTU {
		t.Fatalf("tap batch %d name %s mtu %d", tap.BatchSize(), tap.Name(), tap.MTU())
	}
	// Close unblocks a pending Read and removes the (non-persistent) link.
	done := make(chan error, 1)
	go func() {
		bufs := [][]byte{make([]byte, 2048)}
		for {
			if _, err := tap.Read(bufs, []int{0}, 0); err != nil {
				done <- err
				return
			}
		}
	}()
	if err := tap.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if !errors.Is(err, os.ErrClosed) {
			t.Fatalf("Read after Close = %v, want os.ErrClosed", err)
		}
	case <-time.After(hangGuard):
		t.Fatal("Close did not unblock Read")
	}
	noLink(t, "h5tap0")
}

func TestOpenTAPAdoptsLeftover(t *testing.T) {
	netdevtest.EnterIsolatedHost(t)
	if _, err := netdev.EnsureBridge("h5br0", testMTU); err != nil {
		t.Fatal(err)
	}
	// A persistent TAP, as a killed router with another setting might leave.
	old, err := water.New(water.Config{DeviceType: water.TAP, PlatformSpecificParams: water.PlatformSpecificParams{Name: "h5tap0", Persist: true}})
	if err != nil {
		t.Fatal(err)
	}
	old.Close()
	mustLink(t, "h5tap0")
	tap, err := netdev.OpenTAP("h5tap0", "h5br0", testMTU)
	if err != nil {
		t.Fatalf("adopting a leftover TAP: %v", err)
	}
	tap.Close()
	noLink(t, "h5tap0")
	// A name taken by something else is refused.
	addVeth(t, "h5tap1")
	if tap, err := netdev.OpenTAP("h5tap1", "h5br0", testMTU); err == nil {
		tap.Close()
		t.Fatal("OpenTAP took over a veth")
	}
}

// TestTAPCarriesContainerFrames checks both directions through the bridge:
// the TAP reads the gratuitous ARP a container sends, and a UDP frame
// written to the TAP reaches a socket in the container.
func TestTAPCarriesContainerFrames(t *testing.T) {
	br, tap, c := setup(t)
	iface, err := c.CreateIface("vethwetest0", br, testMTU, testMTU)
	if err != nil {
		t.Fatal(err)
	}
	addr := netip.MustParsePrefix("10.105.1.1/24")
	if err := c.AddAddrs([]netip.Prefix{addr}); err != nil {
		t.Fatal(err)
	}
	frames := make(chan []byte, 64)
	go func() {
		defer close(frames)
		bufs := [][]byte{make([]byte, 65536)}
		sizes := []int{0}
		for {
			if _, err := tap.Read(bufs, sizes, 0); err != nil {
				return
			}
			frames <- append([]byte(nil), bufs[0][:sizes[0]]...)
		}
	}()
	t.Cleanup(func() {
		tap.Close()
		for range frames {
		}
	})
	if err := c.Announce([]netip.Prefix{addr}); err != nil {
		t.Fatal(err)
	}
	want := netdev.GratuitousARP(iface.MAC, addr.Addr())
	deadline := time.After(hangGuard)
	for found := false; !found; {
		select {
		case f := <-frames:
			found = len(f) >= 14+28 && bytes.Equal(f[0:6], []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}) &&
				bytes.Equal(f[6:12], iface.MAC) && binary.BigEndian.Uint16(f[12:]) == 0x0806 && bytes.Equal(f[14:14+28], want)
		case <-deadline:
			t.Fatal("no gratuitous ARP from the container on the TAP")
		}
	}

	var conn *net.UDPConn
	if err := c.Do(func() (err error) {
		conn, err = net.ListenUDP("udp4", &net.UDPAddr{IP: addr.Addr().AsSlice(), Port: 5555})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	payload := []byte("hello from the tap")
	frame := udpFrame(iface.MAC, net.HardwareAddr{2, 0, 0, 0, 0, 0x99}, netip.MustParseAddr("10.105.1.99"), addr.Addr(), 4444, 5555, payload)
	// Headroom full of garbage: a VNetTAP writes its virtio header there
	// (it must clear it) and the frame from there, without a copy.
	if _, err := tap.Write([][]byte{append(bytes.Repeat([]byte{0xee}, 16), frame...)}, 16); err != nil {
		t.Fatal(err)
	}
	conn.SetReadDeadline(time.Now().Add(hangGuard))
	buf := make([]byte, 1500)
	n, from, err := conn.ReadFromUDP(buf)
	if err != nil {
		t.Fatalf("container did not receive the frame written to the TAP: %v", err)
	}
	if !bytes.Equal(buf[:n], payload) || from.Port != 4444 {
		t.Fatalf("container got %q from %v", buf[:n], from)
	}
}

// udpFrame builds an Ethernet/IPv4/UDP frame (UDP checksum 0, i.e. none).
func udpFrame(dst, src net.HardwareAddr, sip, dip netip.Addr, sport, dport uint16, payload []byte) []byte {
	f := make([]byte, 14+20+8+len(payload))
	copy(f[0:6], dst)
	copy(f[6:12], src)
	binary.BigEndian.PutUint16(f[12:], 0x0800)
	ip := f[14:34]
	ip[0] = 0x45
	binary.BigEndian.PutUint16(ip[2:], uint16(20+8+len(payload)))
	ip[8] = 64 // TTL
	ip[9] = 17 // UDP
	s, d := sip.As4(), dip.As4()
	copy(ip[12:16], s[:])
	copy(ip[16:20], d[:])
	var sum uint32
	for i := 0; i < 20; i += 2 {
		sum += uint32(binary.BigEndian.Uint16(ip[i:]))
	}
	for sum > 0xffff {
		sum = sum&0xffff + sum>>16
	}
	binary.BigEndian.PutUint16(ip[10:], ^uint16(sum))
	udp := f[34:]
	binary.BigEndian.PutUint16(udp[0:], sport)
	binary.BigEndian.PutUint16(udp[2:], dport)
	binary.BigEndian.PutUint16(udp[4:], uint16(8+len(payload)))
	copy(udp[8:], payload)
	return f
}

func TestContainerIface(t *testing.T) {
	br, _, c := setup(t)
	if iface, err := c.Iface(); err != nil || iface != nil {
		t.Fatalf("Iface before create = %v, %v; want none", iface, err)
	}
	iface, err := c.CreateIface("vethwetest0", br, testMTU, testMTU)
	if err != nil {
		t.Fatal(err)
	}
	if iface.Name != netdev.ContainerIfName || iface.MTU != testMTU || len(iface.MAC) != 6 {
		t.Fatalf("iface = %+v", iface)
	}
	host := mustLink(t, "vethwetest0")
	if host.Attrs().MasterIndex != br.Index || host.Attrs().MTU != testMTU || host.Attrs().Flags&net.FlagUp == 0 {
		t.Fatalf("host end: master %d mtu %d flags %v", host.Attrs().MasterIndex, host.Attrs().MTU, host.Attrs().Flags)
	}
	// A second interface is refused and leaves no host end behind.
	if _, err := c.CreateIface("vethwetest1", br, testMTU, testMTU); err == nil {
		t.Fatal("second CreateIface succeeded")
	}
	noLink(t, "vethwetest1")

	a := netip.MustParsePrefix("10.105.1.1/24")
	b := netip.MustParsePrefix("10.106.0.1/16")
	if err := c.AddAddrs([]netip.Prefix{a, b}); err != nil {
		t.Fatal(err)
	}
	// All or nothing: a list whose second entry fails adds nothing.
	d := netip.MustParsePrefix("10.107.0.1/16")
	if err := c.AddAddrs([]netip.Prefix{d, a}); err == nil {
		t.Fatal("adding an existing address succeeded")
	}
	assertAddrs(t, c, a, b)
	if err := c.DelAddrs([]netip.Prefix{a}); err != nil {
		t.Fatal(err)
	}
	assertAddrs(t, c, b)
	if err := c.DeleteIface(); err != nil {
		t.Fatal(err)
	}
	noLink(t, "vethwetest0")
	if iface, err := c.Iface(); err != nil || iface != nil {
		t.Fatalf("Iface after delete = %v, %v; want none", iface, err)
	}
}

func assertAddrs(t *testing.T, c *netdev.Container, want ...netip.Prefix) {
	t.Helper()
	iface, err := c.Iface()
	if err != nil || iface == nil {
		t.Fatalf("Iface = %v, %v", iface, err)
	}
	if len(iface.Addrs) != len(want) {
		t.Fatalf("addresses = %v, want %v", iface.Addrs, want)
	}
	for i := range want {
		if iface.Addrs[i] != want[i] {
			t.Fatalf("addresses = %v, want %v", iface.Addrs, want)
		}
	}
}

func TestOpenContainerErrors(t *testing.T) {
	netdevtest.EnterIsolatedHost(t)
	for _, s := range []string{"netns:h5-does-not-exist", "pid:999999999", "netns:/nonexistent/ns"} {
		ref, err := netdev.ParseContainer(s)
		if err != nil {
			t.Fatal(err)
		}
		if c, err := netdev.OpenContainer(ref); !errors.Is(err, netdev.ErrNoNamespace) {
			if c != nil {
				c.Close()
			}
			t.Errorf("OpenContainer(%s) = %v, want ErrNoNamespace", s, err)
		}
	}
	// A file that is not a namespace.
	f, err := os.CreateTemp(t.TempDir(), "ns")
	if err != nil {
		t.Fatal(err)
	}
	f.Close()
	if c, err := netdev.OpenContainer(netdev.ContainerRef{Kind: netdev.KindNetns, Path: f.Name()}); err == nil {
		c.Close()
		t.Error("OpenContainer accepted a plain file")
	}
	// The host's own namespace is refused.
	self := netdev.ContainerRef{Kind: netdev.KindNetns, Path: "/proc/thread-self/ns/net"}
	if c, err := netdev.OpenContainer(self); err == nil {
		c.Close()
		t.Error("OpenContainer accepted the host's own namespace")
	}
}
