package netdev_test

import (
	"encoding/json"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/weavelab/weave/router/netdev"
	"github.com/weavelab/weave/router/netdev/netdevtest"
)

// inThisNetns runs a command in the calling thread's network namespace.
func inThisNetns(t *testing.T, args ...string) string {
	t.Helper()
	ns := fmt.Sprintf("--net=/proc/%d/task/%d/ns/net", os.Getpid(), unix.Gettid())
	out, err := exec.Command("nsenter", append([]string{ns}, args...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("%v: %v\n%s", args, err, out)
	}
	return string(out)
}

func TestVXLANDevice(t *testing.T) {
	netdevtest.EnterIsolatedHost(t)
	if err := netlink.LinkSetUp(mustLink(t, "lo")); err != nil {
		t.Fatal(err)
	}
	if _, err := netdev.EnsureBridge("h5vbr", testMTU); err != nil {
		t.Fatal(err)
	}
	vx, err := netdev.EnsureVXLAN("h5vx", "h5vbr", 46784, testMTU)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { vx.Close() })
	l := mustLink(t, "h5vx")
	v, ok := l.(*netlink.Vxlan)
	if !ok || v.Port != 46784 || v.VxlanId != netdev.VXLANVNI || v.Learning || v.MTU != testMTU || v.MasterIndex != mustLink(t, "h5vbr").Attrs().Index {
		t.Fatalf("device %+v", l)
	}

	// The bridge port floods nothing and learns nothing.
	var ports []map[string]any
	if err := json.Unmarshal([]byte(inThisNetns(t, "bridge", "-d", "-j", "link", "show", "dev", "h5vx")), &ports); err != nil || len(ports) != 1 {
		t.Fatalf("bridge link show: %v %v", ports, err)
	}
	for _, flag := range []string{"flood", "mcast_flood", "bcast_flood", "learning"} {
		if on, ok := ports[0][flag].(bool); !ok || on {
			t.Errorf("bridge port %s = %v, want false", flag, ports[0][flag])
		}
	}

	// Entries: bridge (master) and VXLAN (self, dst), then gone.
	mac := [6]byte{0x02, 0x42, 0, 0, 9, 1}
	if err := vx.SetEntry(mac, netip.MustParseAddr("10.9.9.9")); err != nil {
		t.Fatal(err)
	}
	if err := vx.SetEntry(mac, netip.MustParseAddr("10.9.9.8")); err != nil { // replace
		t.Fatal(err)
	}
	fdb := inThisNetns(t, "bridge", "fdb", "show", "dev", "h5vx")
	hw := net.HardwareAddr(mac[:]).String()
	if !strings.Contains(fdb, hw+" dst 10.9.9.8 self permanent") || !strings.Contains(fdb, hw+" sticky master h5vbr static") || strings.Contains(fdb, "10.9.9.9") {
		t.Fatalf("fdb:\n%s", fdb)
	}
	ages, err := vx.EntryAges()
	if _, ok := ages[mac]; err != nil || !ok {
		t.Fatalf("ages %v %v", ages, err)
	}
	if err := vx.DelEntry(mac, netip.MustParseAddr("10.9.9.8")); err != nil {
		t.Fatal(err)
	}
	if err := vx.DelEntry(mac, netip.MustParseAddr("10.9.9.8")); err != nil {
		t.Fatalf("second delete: %v", err)
	}
	if fdb := inThisNetns(t, "bridge", "fdb", "show", "dev", "h5vx"); strings.Contains(fdb, hw) {
		t.Fatalf("fdb after delete:\n%s", fdb)
	}

	// A heartbeat sent to our own VXLAN port comes back out of the device.
	got := make(chan []byte, 1)
	go func() {
		buf := make([]byte, 256)
		n, err := vx.RecvBeat(buf)
		if err != nil {
			close(got)
			return
		}
		got <- buf[:n]
	}()
	frame := make([]byte, 60)
	copy(frame, netdev.FastPathHeartbeatDst[:])
	copy(frame[6:], []byte{0x02, 1, 2, 3, 4, 5})
	frame[12], frame[13] = 0x88, 0xb5
	copy(frame[14:], "WFDP-test")
	deadline := time.After(hangGuard)
	for done := false; !done; {
		if err := vx.SendBeat(netip.MustParseAddrPort("127.0.0.1:46784"), frame); err != nil {
			t.Fatal(err)
		}
		select {
		case p := <-got:
			if !strings.HasPrefix(string(p), "WFDP-test") {
				t.Fatalf("received % x", p)
			}
			done = true
		case <-time.After(100 * time.Millisecond):
		case <-deadline:
			t.Fatal("heartbeat never came out of the device")
		}
	}

	// Relaunch: the device is made afresh, without old entries.
	if err := vx.SetEntry(mac, netip.MustParseAddr("10.9.9.9")); err != nil {
		t.Fatal(err)
	}
	vx.Close()
	vx2, err := netdev.EnsureVXLAN("h5vx", "h5vbr", 46784, testMTU)
	if err != nil {
		t.Fatal(err)
	}
	defer vx2.Close()
	if fdb := inThisNetns(t, "bridge", "fdb", "show", "dev", "h5vx"); strings.Contains(fdb, hw) {
		t.Fatalf("stale entry after relaunch:\n%s", fdb)
	}
	if err := netdev.DeleteLink("h5vx"); err != nil {
		t.Fatal(err)
	}
	noLink(t, "h5vx")
}
