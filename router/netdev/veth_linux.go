package netdev

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// CreateVeth creates a veth pair in the current namespace for a runtime
// that moves the container end into the container itself (the Docker
// network plugin): hostName on bridge br with hostMTU and up, peerName with
// mtu and mac (random when nil), left down for the runtime to move, rename
// and configure. It returns the peer's MAC. On error nothing is left behind.
func CreateVeth(hostName, peerName string, br *Bridge, mtu, hostMTU int, mac net.HardwareAddr) (net.HardwareAddr, error) {
	if err := checkIfName(peerName); err != nil {
		return nil, err
	}
	if exists, err := LinkExists(peerName); err != nil {
		return nil, err
	} else if exists {
		return nil, fmt.Errorf("interface %s already exists", peerName)
	}
	veth, err := newBridgedVeth(hostName, peerName, br, mtu, hostMTU)
	if err != nil {
		return nil, err
	}
	if len(mac) > 0 {
		veth.PeerHardwareAddr = mac
	}
	if err := netlink.LinkAdd(veth); err != nil {
		return nil, fmt.Errorf("create veth %s: %w", hostName, err)
	}
	fail := func(err error) (net.HardwareAddr, error) {
		if derr := DeleteLink(hostName); derr != nil {
			err = errors.Join(err, derr)
		}
		return nil, err
	}
	host, err := netlink.LinkByName(hostName)
	if err != nil {
		return fail(err)
	}
	if err := netlink.LinkSetUp(host); err != nil {
		return fail(fmt.Errorf("set %s up: %w", hostName, err))
	}
	peer, err := netlink.LinkByName(peerName)
	if err != nil {
		return fail(err)
	}
	return peer.Attrs().HardwareAddr, nil
}

// newBridgedVeth checks that hostName is a free interface name and returns
// a veth pair, not yet created, whose host end hostName has hostMTU and is
// on bridge br and whose peer is peerName with mtu. The caller says where
// the peer goes, creates the pair, and sets the host end up.
func newBridgedVeth(hostName, peerName string, br *Bridge, mtu, hostMTU int) (*netlink.Veth, error) {
	if err := checkIfName(hostName); err != nil {
		return nil, err
	}
	if exists, err := LinkExists(hostName); err != nil {
		return nil, err
	} else if exists {
		return nil, fmt.Errorf("host interface %s already exists", hostName)
	}
	brl, err := br.link()
	if err != nil {
		return nil, err
	}
	attrs := netlink.NewLinkAttrs()
	attrs.Name = hostName
	attrs.MTU = hostMTU
	attrs.MasterIndex = brl.Attrs().Index
	veth := netlink.NewVeth(attrs)
	veth.PeerName = peerName
	veth.PeerMTU = uint32(mtu)
	return veth, nil
}

// AddServiceRouteByMAC is AddServiceRoute for the interface with the given
// MAC in the namespace at nsPath (whatever the runtime named it), waiting
// up to wait for the runtime to move it there.
func AddServiceRouteByMAC(nsPath string, mac net.HardwareAddr, svc netip.Addr, brMAC net.HardwareAddr, wait time.Duration) error {
	c, err := OpenContainer(ContainerRef{Kind: KindNetns, Path: nsPath})
	if err != nil {
		return err
	}
	defer c.Close()
	deadline := time.Now().Add(wait)
	for {
		err := serviceRouteByMAC(c, mac, svc, brMAC)
		if err == nil || time.Now().After(deadline) {
			return err
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// serviceRouteByMAC is one try of AddServiceRouteByMAC.
func serviceRouteByMAC(c *Container, mac net.HardwareAddr, svc netip.Addr, brMAC net.HardwareAddr) error {
	links, err := c.h.LinkList()
	if err != nil {
		return err
	}
	for _, l := range links {
		if !bytes.Equal(l.Attrs().HardwareAddr, mac) {
			continue
		}
		idx := l.Attrs().Index
		neigh := &netlink.Neigh{LinkIndex: idx, Family: unix.AF_INET, State: netlink.NUD_PERMANENT, IP: net.IP(svc.AsSlice()), HardwareAddr: brMAC}
		if err := c.h.NeighSet(neigh); err != nil {
			return fmt.Errorf("neighbour %s on %s: %w", svc, l.Attrs().Name, err)
		}
		route := &netlink.Route{LinkIndex: idx, Dst: hostNet(svc), Scope: netlink.SCOPE_LINK}
		if err := c.h.RouteReplace(route); err != nil {
			return fmt.Errorf("route %s on %s: %w", svc, l.Attrs().Name, err)
		}
		return nil
	}
	return fmt.Errorf("no interface with MAC %s in %s", mac, c.Ref.Path)
}
