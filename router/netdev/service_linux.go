package netdev

import (
	"errors"
	"fmt"
	"net"
	"net/netip"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// The service address is how a container reaches its own host's router
// (weaveDNS) over ethwe: one link-local address, the same on every host,
// that the bridge carries. No ARP ever asks for it, which would be answered
// by every host's bridge across the overlay: the container gets a /32
// route and a permanent neighbour entry pointing at its own host's bridge
// MAC, and the host gets a /32 route and a permanent neighbour entry back to
// each local container address, with the service address as source.

// MAC returns the bridge's Ethernet address.
func (b *Bridge) MAC() (net.HardwareAddr, error) {
	link, err := b.link()
	if err != nil {
		return nil, err
	}
	return link.Attrs().HardwareAddr, nil
}

// EnsureServiceAddr puts svc/32 on the bridge (idempotent).
func (b *Bridge) EnsureServiceAddr(svc netip.Addr) error {
	return b.AddAddr(netip.PrefixFrom(svc, 32))
}

// AddServiceRoute makes svc reachable from the container over ethwe, at the
// given MAC (its host bridge's), without ARP.
func (c *Container) AddServiceRoute(svc netip.Addr, mac net.HardwareAddr) error {
	link, err := c.h.LinkByName(c.Ref.IfaceName())
	if err != nil {
		return err
	}
	idx := link.Attrs().Index
	neigh := &netlink.Neigh{LinkIndex: idx, Family: unix.AF_INET, State: netlink.NUD_PERMANENT, IP: net.IP(svc.AsSlice()), HardwareAddr: mac}
	if err := c.h.NeighSet(neigh); err != nil {
		return fmt.Errorf("neighbour %s on %s: %w", svc, c.Ref.IfaceName(), err)
	}
	route := &netlink.Route{LinkIndex: idx, Dst: hostNet(svc), Scope: netlink.SCOPE_LINK}
	if err := c.h.RouteReplace(route); err != nil {
		return fmt.Errorf("route %s on %s: %w", svc, c.Ref.IfaceName(), err)
	}
	return nil
}

// AddHostRoute lets the host answer a container address ip (at mac) from
// the service address svc: a /32 route on the bridge with svc as source
// and a permanent neighbour entry.
func (b *Bridge) AddHostRoute(ip netip.Addr, mac net.HardwareAddr, svc netip.Addr) error {
	neigh := &netlink.Neigh{LinkIndex: b.Index, Family: unix.AF_INET, State: netlink.NUD_PERMANENT, IP: net.IP(ip.AsSlice()), HardwareAddr: mac}
	if err := netlink.NeighSet(neigh); err != nil {
		return fmt.Errorf("bridge %s: neighbour %s: %w", b.Name, ip, err)
	}
	route := &netlink.Route{LinkIndex: b.Index, Dst: hostNet(ip), Src: net.IP(svc.AsSlice()), Scope: netlink.SCOPE_LINK}
	if err := netlink.RouteReplace(route); err != nil {
		return fmt.Errorf("bridge %s: route %s: %w", b.Name, ip, err)
	}
	return nil
}

// DelHostRoute removes what AddHostRoute made; absent entries are fine.
func (b *Bridge) DelHostRoute(ip netip.Addr) error {
	var errs []error
	route := &netlink.Route{LinkIndex: b.Index, Dst: hostNet(ip), Scope: netlink.SCOPE_LINK}
	if err := netlink.RouteDel(route); err != nil && !errors.Is(err, unix.ESRCH) && !isNotFound(err) {
		errs = append(errs, fmt.Errorf("bridge %s: remove route %s: %w", b.Name, ip, err))
	}
	neigh := &netlink.Neigh{LinkIndex: b.Index, Family: unix.AF_INET, IP: net.IP(ip.AsSlice())}
	if err := netlink.NeighDel(neigh); err != nil && !errors.Is(err, unix.ENOENT) && !isNotFound(err) {
		errs = append(errs, fmt.Errorf("bridge %s: remove neighbour %s: %w", b.Name, ip, err))
	}
	return errors.Join(errs...)
}

func hostNet(ip netip.Addr) *net.IPNet {
	return &net.IPNet{IP: net.IP(ip.AsSlice()), Mask: net.CIDRMask(ip.BitLen(), ip.BitLen())}
}
