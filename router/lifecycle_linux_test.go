package router

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

	"github.com/weavelab/weave/router/netdev"
)

func TestPSAfterRestart(t *testing.T) {
	h := newTestHost(t)
	r1 := h.router()
	c1, c2 := newContainer(t), newContainer(t)
	mustAttach(t, r1, c1, "10.105.1.1/24")
	mustAttach(t, r1, c2, "10.105.1.2/24")
	want, err := r1.PS(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if err := r1.Close(); err != nil {
		t.Fatal(err)
	}
	if ok, _ := netdev.LinkExists(h.cfg.TAPName); ok {
		t.Fatal("TAP still there after Close")
	}
	if _, err := r1.PS(context.Background()); !errors.Is(err, ErrClosed) {
		t.Fatalf("PS after Close = %v, want ErrClosed", err)
	}

	r2 := h.router() // adopts the bridge, reads the table
	got, err := r2.PS(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	assertPS(t, got, want)
	exchange(t, listen(t, c1.ns, "10.105.1.1"), listen(t, c2.ns, "10.105.1.2"))

	// A container that vanished while no router ran is dropped.
	r2.Close()
	name := strings.TrimPrefix(c2.ref, "netns:")
	if err := netns.DeleteNamed(name); err != nil {
		t.Fatal(err)
	}
	r3 := h.router()
	got, err = r3.PS(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	assertPS(t, got, want[:1])
	st, _ := os.ReadFile(filepath.Join(h.cfg.StateDir, stateFileName))
	if strings.Contains(string(st), c2.ref) {
		t.Fatalf("state file still holds the vanished %s:\n%s", c2.ref, st)
	}
	// And one that vanishes while the router runs.
	if err := r3.Detach(context.Background(), c1.ref, nil); err != nil {
		t.Fatal(err)
	}
	if got, _ = r3.PS(context.Background()); len(got) != 0 {
		t.Fatalf("PS = %v, want empty", got)
	}
}

func TestReset(t *testing.T) {
	h := newTestHost(t)
	r := h.router()
	c1, c2 := newContainer(t), newContainer(t)
	mustAttach(t, r, c1, "10.105.1.1/24")
	mustAttach(t, r, c2, "10.105.1.2/24")
	if _, err := r.Expose([]string{"10.105.1.254/24"}); err != nil {
		t.Fatal(err)
	}
	if err := r.Reset(); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{h.cfg.Bridge, tapName(h.cfg.Bridge), hostVethName(h.cfg.Bridge, c1.ref), hostVethName(h.cfg.Bridge, c2.ref)} {
		if ok, _ := netdev.LinkExists(name); ok {
			t.Errorf("%s still there after Reset", name)
		}
	}
	for _, c := range []testContainer{c1, c2} {
		if c.ethwe(t) != nil {
			t.Errorf("ethwe still in %s after Reset", c.ref)
		}
	}
	if _, err := os.Stat(filepath.Join(h.cfg.StateDir, stateFileName)); !os.IsNotExist(err) {
		t.Errorf("state file still there after Reset: %v", err)
	}
	if _, err := r.Attach(context.Background(), c1.ref, []string{"10.105.1.1/24"}); !errors.Is(err, ErrClosed) {
		t.Errorf("Attach after Reset = %v, want ErrClosed", err)
	}
	// A fresh router starts from nothing.
	if ps, err := h.router().PS(context.Background()); err != nil || len(ps) != 0 {
		t.Fatalf("PS of a fresh router = %v, %v", ps, err)
	}
}

func TestResetHostWithoutRouter(t *testing.T) {
	h := newTestHost(t)
	r := h.router()
	c1 := newContainer(t)
	mustAttach(t, r, c1, "10.105.1.1/24")
	r.Close() // as weave stop leaves things
	if err := ResetHost(h.cfg); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{h.cfg.Bridge, hostVethName(h.cfg.Bridge, c1.ref)} {
		if ok, _ := netdev.LinkExists(name); ok {
			t.Errorf("%s still there after ResetHost", name)
		}
	}
	if c1.ethwe(t) != nil {
		t.Error("ethwe still in the container after ResetHost")
	}
	if err := ResetHost(h.cfg); err != nil {
		t.Fatalf("second ResetHost: %v", err)
	}
}

// TestAttachByPID attaches the namespace of a process, then the same
// namespace by name, and drops the attachment when the process exits.
func TestAttachByPID(t *testing.T) {
	h := newTestHost(t)
	r := h.router()
	c1 := newContainer(t)
	cmd := exec.Command("ip", "netns", "exec", strings.TrimPrefix(c1.ref, "netns:"), "sleep", "600")
	if err := cmd.Start(); err != nil {
		t.Fatalf("start a process in the namespace (needs iproute2): %v", err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	ref := fmt.Sprintf("pid:%d", cmd.Process.Pid)
	// ip netns exec enters the namespace just after starting; wait for it
	// to be there (bounded), as a container runtime would before attaching.
	want, _ := netdev.ContainerRef{Kind: netdev.KindNetns, Path: netdev.NetnsDir + "/" + strings.TrimPrefix(c1.ref, "netns:")}.NSID()
	for deadline := time.Now().Add(hangGuard); ; time.Sleep(10 * time.Millisecond) {
		p, _ := netdev.ParseContainer(ref)
		if id, err := p.NSID(); err == nil && id == want {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("process never entered the namespace")
		}
	}
	mustAttach(t, r, testContainer{ref: ref, ns: c1.ns}, "10.105.1.1/24")
	mustAttach(t, r, c1, "10.106.0.1/16") // same namespace by name
	ps, err := r.PS(context.Background(), c1.ref)
	if err != nil {
		t.Fatal(err)
	}
	assertPS(t, ps, []Attachment{{ID: ref, MAC: c1.ethwe(t).Attrs().HardwareAddr.String(), Addrs: prefixes("10.105.1.1/24", "10.106.0.1/16")}})

	cmd.Process.Kill()
	cmd.Wait()
	if ps, err = r.PS(context.Background()); err != nil || len(ps) != 0 {
		t.Fatalf("PS after the process exited = %v, %v; want empty", ps, err)
	}
	if c1.ethwe(t) != nil {
		t.Fatal("ethwe of the exited process's attachment still in the namespace")
	}
}

// TestHostMTULetsBigFramesReachTAP: with a host MTU above the containers',
// a frame from a container that raised its MTU reaches the TAP whole, where
// the data plane can deal with it, instead of being dropped by the veth.
func TestHostMTULetsBigFramesReachTAP(t *testing.T) {
	h := newTestHost(t)
	h.cfg.HostMTU = MaxHostMTU
	r := h.router()
	c1 := newContainer(t)
	mustAttach(t, r, c1, "10.105.1.1/24")
	if got := c1.ethwe(t).Attrs().MTU; got != DefaultMTU {
		t.Fatalf("ethwe mtu = %d, want %d", got, DefaultMTU)
	}
	for _, name := range []string{h.cfg.Bridge, tapName(h.cfg.Bridge), hostVethName(h.cfg.Bridge, c1.ref)} {
		l, err := netlink.LinkByName(name)
		if err != nil || l.Attrs().MTU != MaxHostMTU {
			t.Fatalf("%s: mtu %v, %v; want %d", name, l, err, MaxHostMTU)
		}
	}

	tap := r.TAP()
	big := make(chan int, 1)
	done := make(chan struct{})
	go func() {
		defer close(done)
		bufs, sizes := [][]byte{make([]byte, 65536)}, []int{0}
		for {
			if _, err := tap.Read(bufs, sizes, 0); err != nil {
				return
			}
			if sizes[0] > 1400 {
				select {
				case big <- sizes[0]:
				default:
				}
			}
		}
	}()
	t.Cleanup(func() { r.Close(); <-done })

	// The container raises its MTU and sends 1500-byte packets to a
	// neighbour the bridge does not know, so the frame floods to the TAP.
	nh, err := netlink.NewHandleAt(c1.ns)
	if err != nil {
		t.Fatal(err)
	}
	defer nh.Close()
	eth := c1.ethwe(t)
	if err := nh.LinkSetMTU(eth, 1500); err != nil {
		t.Fatal(err)
	}
	if err := nh.NeighAdd(&netlink.Neigh{LinkIndex: eth.Attrs().Index, State: netlink.NUD_PERMANENT,
		IP: net.ParseIP("10.105.1.99"), HardwareAddr: net.HardwareAddr{2, 0, 0, 0, 0, 0x99}}); err != nil {
		t.Fatal(err)
	}
	conn := listen(t, c1.ns, "10.105.1.1")
	if _, err := conn.WriteTo(make([]byte, 1472), &net.UDPAddr{IP: net.ParseIP("10.105.1.99"), Port: 9}); err != nil {
		t.Fatal(err)
	}
	select {
	case n := <-big:
		if n != 14+1500 {
			t.Fatalf("TAP read a %d-byte frame, want %d", n, 14+1500)
		}
	case <-time.After(hangGuard):
		t.Fatal("the container's 1500-byte frame never reached the TAP")
	}
}
