package router

import (
	"context"
	"net"
	"net/netip"
	"testing"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

// TestServiceAddress: with a service address, an attached container
// reaches the host at it (UDP both ways) without ARP, the host routes back
// to the container's addresses only while it is attached, and the address
// is neither exposed nor attachable.
func TestServiceAddress(t *testing.T) {
	h := newTestHost(t)
	svc := netip.MustParseAddr("169.254.53.1")
	h.cfg.ServiceAddr = svc
	r := h.router()
	c1 := newContainer(t)
	mustAttach(t, r, c1, "10.107.1.1/24")

	host, err := netns.Get()
	if err != nil {
		t.Fatal(err)
	}
	defer host.Close()
	exchange(t, listen(t, c1.ns, "10.107.1.1"), listen(t, host, svc.String()))

	nh, err := netlink.NewHandleAt(c1.ns)
	if err != nil {
		t.Fatal(err)
	}
	defer nh.Close()
	neighs, err := nh.NeighList(c1.ethwe(t).Attrs().Index, netlink.FAMILY_V4)
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, n := range neighs {
		if n.IP.Equal(net.IP(svc.AsSlice())) && n.State == netlink.NUD_PERMANENT {
			found = true
		}
	}
	if !found {
		t.Errorf("no permanent neighbour entry for %s in the container: %v", svc, neighs)
	}
	if exposed, err := r.Exposed(); err != nil || len(exposed) != 0 {
		t.Errorf("Exposed() = %v, %v; the service address is not exposed", exposed, err)
	}
	c2 := newContainer(t)
	if _, err := r.Attach(context.Background(), c2.ref, []string{svc.String() + "/16"}); err == nil {
		t.Error("attached a container with the service address")
	}
	if err := r.Hide(nil); err != nil {
		t.Fatal(err)
	}
	if addrs, _ := r.bridge.Addrs(); len(addrs) != 1 || addrs[0] != netip.PrefixFrom(svc, 32) {
		t.Errorf("hide removed the service address: bridge has %v", addrs)
	}

	routeTo := func(ip string) bool {
		rs, err := netlink.RouteListFiltered(netlink.FAMILY_V4, &netlink.Route{Dst: &net.IPNet{IP: net.ParseIP(ip).To4(), Mask: net.CIDRMask(32, 32)}}, netlink.RT_FILTER_DST)
		return err == nil && len(rs) > 0
	}
	if !routeTo("10.107.1.1") {
		t.Fatal("no host route to the attached container")
	}
	if err := r.Detach(context.Background(), c1.ref, nil); err != nil {
		t.Fatal(err)
	}
	if routeTo("10.107.1.1") {
		t.Error("host route to the container left after detach")
	}
}

// TestGone: Gone drops a container's record at once (Docker said it died),
// removes its host veth and reports its addresses to OnGone.
func TestGone(t *testing.T) {
	h := newTestHost(t)
	var goneID string
	var goneAddrs []netip.Prefix
	h.cfg.OnGone = func(id string, addrs []netip.Prefix) { goneID, goneAddrs = id, addrs }
	r := h.router()
	c := newContainer(t)
	mustAttach(t, r, c, "10.108.1.1/24")
	if err := r.Gone("no-such-id"); err != nil {
		t.Fatal(err)
	}
	if err := r.Gone(c.ref); err != nil {
		t.Fatal(err)
	}
	if goneID != c.ref || len(goneAddrs) != 1 || goneAddrs[0] != netip.MustParsePrefix("10.108.1.1/24") {
		t.Errorf("OnGone(%q, %v)", goneID, goneAddrs)
	}
	if ps, _ := r.PS(context.Background()); len(ps) != 0 {
		t.Errorf("PS after Gone = %v", ps)
	}
	if c.ethwe(t) != nil {
		t.Error("ethwe left in the container after Gone (its veth was not deleted)")
	}
}
