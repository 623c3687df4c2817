package netdev

import (
	"errors"
	"fmt"
	"net"
	"net/netip"

	"github.com/vishvananda/netlink"
)

// maxIfNameLen is IFNAMSIZ less the terminating NUL.
const maxIfNameLen = 15

func checkIfName(name string) error {
	if name == "" || len(name) > maxIfNameLen {
		return fmt.Errorf("interface name %q must be 1 to %d bytes", name, maxIfNameLen)
	}
	for _, r := range name {
		if r == '/' || r == ':' || r <= ' ' || r > '~' {
			return fmt.Errorf("interface name %q has an invalid character %q", name, r)
		}
	}
	return nil
}

func isNotFound(err error) bool {
	var nf netlink.LinkNotFoundError
	return errors.As(err, &nf)
}

func toNetlinkAddr(p netip.Prefix) *netlink.Addr {
	ip := p.Addr()
	bits := ip.BitLen()
	return &netlink.Addr{IPNet: &net.IPNet{
		IP:   net.IP(ip.AsSlice()),
		Mask: net.CIDRMask(p.Bits(), bits),
	}}
}

func fromIPNet(n *net.IPNet) (netip.Prefix, bool) {
	ip, ok := netip.AddrFromSlice(n.IP)
	if !ok {
		return netip.Prefix{}, false
	}
	ones, _ := n.Mask.Size()
	return netip.PrefixFrom(ip.Unmap(), ones), true
}

// linkAddrs returns link's IPv4 addresses, listed with list (netlink.AddrList
// or a namespaced handle's AddrList).
func linkAddrs(list func(netlink.Link, int) ([]netlink.Addr, error), link netlink.Link) ([]netip.Prefix, error) {
	addrs, err := list(link, netlink.FAMILY_V4)
	if err != nil && !errors.Is(err, netlink.ErrDumpInterrupted) {
		return nil, fmt.Errorf("list addresses of %s: %w", link.Attrs().Name, err)
	}
	var out []netip.Prefix
	for _, a := range addrs {
		if p, ok := fromIPNet(a.IPNet); ok {
			out = append(out, p)
		}
	}
	return out, nil
}
