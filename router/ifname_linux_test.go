package router

import (
	"context"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/vishvananda/netlink"

	"github.com/weavelab/weave/router/netdev"
)

// TestAttachNamedInterface: a container attached with its interface named
// (as the CNI plugin asks: eth0) gets that interface, keeps it across a
// reconcile and a router restart, cannot be attached again under another
// name, and detaching removes it.
func TestAttachNamedInterface(t *testing.T) {
	h := newTestHost(t)
	r := h.router()
	c := newContainer(t)
	ctx := context.Background()
	ref, err := netdev.ParseContainer(c.ref)
	if err != nil {
		t.Fatal(err)
	}
	ref.IfName = "eth0"
	want := netip.MustParsePrefix("10.106.1.1/24")
	if _, err := r.AttachRef(ctx, ref, []netip.Prefix{want}); err != nil {
		t.Fatalf("AttachRef eth0: %v", err)
	}
	link := func() netlink.Link {
		nh, err := netlink.NewHandleAt(c.ns)
		if err != nil {
			t.Fatal(err)
		}
		defer nh.Close()
		l, _ := nh.LinkByName("eth0")
		return l
	}
	if link() == nil || c.ethwe(t) != nil {
		t.Fatalf("want eth0 and no ethwe in the container")
	}
	if l := link(); l.Attrs().MTU != DefaultMTU {
		t.Errorf("eth0 MTU %d, want %d", l.Attrs().MTU, DefaultMTU)
	}
	if err := r.Reconcile(); err != nil {
		t.Fatal(err)
	}
	r.Close()
	r = h.router() // the record (with its interface name) survives
	as, err := r.PS(ctx)
	if err != nil || len(as) != 1 || !slices.Equal(as[0].Addrs, []netip.Prefix{want}) {
		t.Fatalf("after reconcile and restart: %+v %v, want the attachment kept", as, err)
	}
	other := ref
	other.IfName = "net1"
	if _, err := r.AttachRef(ctx, other, []netip.Prefix{netip.MustParsePrefix("10.106.1.2/24")}); err == nil || !strings.Contains(err.Error(), "already attached with interface eth0") {
		t.Errorf("attach under another name: %v", err)
	}
	plain, _ := netdev.ParseContainer(c.ref)
	if _, err := r.DetachRef(ctx, plain, func(netip.Prefix) bool { return true }, nil); err != nil {
		t.Fatalf("DetachRef: %v", err)
	}
	if link() != nil {
		t.Errorf("eth0 still there after detach")
	}
}
