package overlay

import (
	"errors"
	"fmt"
	"net"
	"net/netip"

	"github.com/vishvananda/netlink"
)

// DetectUnderlayMTU returns the MTU of this host's network for Config's
// UnderlayMTU (and DefaultMTUFor): with a specific bind address, the MTU of
// the interface that holds it; otherwise that of the IPv4 default route's
// interface, or failing that the largest MTU of the interfaces that are up
// with an IPv4 address (loopback, bridges and TAPs aside). It reads the calling thread's network namespace.
func DetectUnderlayMTU(bind netip.Addr) (int, error) {
	mtu, err := detectUnderlayMTU(bind)
	if err != nil {
		return 0, err
	}
	return max(MinPathMTU, min(mtu, 65535)), nil
}

func detectUnderlayMTU(bind netip.Addr) (int, error) {
	if bind.IsValid() && !bind.IsUnspecified() {
		addrs, err := netlink.AddrList(nil, netlink.FAMILY_ALL)
		if err != nil {
			return 0, fmt.Errorf("underlay mtu: list addresses: %w", err)
		}
		for _, a := range addrs {
			if ip, ok := netip.AddrFromSlice(a.IP); ok && ip.Unmap() == bind.Unmap() {
				link, err := netlink.LinkByIndex(a.LinkIndex)
				if err != nil {
					return 0, fmt.Errorf("underlay mtu: interface of %s: %w", bind, err)
				}
				return link.Attrs().MTU, nil
			}
		}
		return 0, fmt.Errorf("underlay mtu: no interface has address %s", bind)
	}
	routes, err := netlink.RouteListFiltered(netlink.FAMILY_V4, &netlink.Route{Table: 254}, netlink.RT_FILTER_TABLE)
	if err != nil {
		return 0, fmt.Errorf("underlay mtu: list routes: %w", err)
	}
	for _, r := range routes {
		if r.Dst == nil || r.Dst.IP.IsUnspecified() && isZeroMask(r.Dst.Mask) {
			if r.MTU > 0 {
				return r.MTU, nil
			}
			if link, err := netlink.LinkByIndex(r.LinkIndex); err == nil {
				return link.Attrs().MTU, nil
			}
		}
	}
	// No default route: the interfaces that are up and have an IPv4
	// address (not loopback, not bridges or TAPs, which may be ours).
	addrs, err := netlink.AddrList(nil, netlink.FAMILY_V4)
	if err != nil {
		return 0, fmt.Errorf("underlay mtu: list addresses: %w", err)
	}
	best := 0
	for _, a := range addrs {
		l, err := netlink.LinkByIndex(a.LinkIndex)
		if err != nil {
			continue
		}
		la := l.Attrs()
		if la.Flags&net.FlagUp != 0 && la.Flags&net.FlagLoopback == 0 && l.Type() != "bridge" && l.Type() != "tuntap" && la.MTU > best {
			best = la.MTU
		}
	}
	if best == 0 {
		return 0, errors.New("underlay mtu: no default route and no interface up with an IPv4 address")
	}
	return best, nil
}

func isZeroMask(m []byte) bool {
	for _, b := range m {
		if b != 0 {
			return false
		}
	}
	return true
}
