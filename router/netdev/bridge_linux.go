package netdev

import (
	"errors"
	"fmt"
	"net/netip"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// Bridge is the Linux bridge that joins the router's TAP port and the
// containers' veths. It is a name plus helpers; the kernel holds the state.
type Bridge struct {
	Name  string
	Index int
}

// EnsureBridge creates the Linux bridge name with the given MTU, or adopts
// one that already exists (for example left by a killed router), and sets it
// up. It is idempotent. An existing link of another type is an error.
func EnsureBridge(name string, mtu int) (*Bridge, error) {
	if err := checkIfName(name); err != nil {
		return nil, fmt.Errorf("bridge: %w", err)
	}
	link, err := netlink.LinkByName(name)
	switch {
	case err == nil:
		if link.Type() != "bridge" {
			return nil, fmt.Errorf("bridge %s: a link of type %s already has that name", name, link.Type())
		}
	case isNotFound(err):
		br := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: name, MTU: mtu}}
		if err := netlink.LinkAdd(br); err != nil && !errors.Is(err, unix.EEXIST) {
			return nil, fmt.Errorf("create bridge %s: %w", name, err)
		}
		if link, err = netlink.LinkByName(name); err != nil {
			return nil, fmt.Errorf("bridge %s: %w", name, err)
		}
	default:
		return nil, fmt.Errorf("bridge %s: %w", name, err)
	}
	// A bridge whose MAC was never set takes the lowest of its ports'
	// MACs and changes it as ports come and go; containers keep a
	// permanent neighbour entry for the bridge (the service address), so
	// fix the MAC it has now.
	if err := netlink.LinkSetHardwareAddr(link, link.Attrs().HardwareAddr); err != nil {
		return nil, fmt.Errorf("bridge %s: fix its MAC: %w", name, err)
	}
	if mtu > 0 && link.Attrs().MTU != mtu {
		if err := netlink.LinkSetMTU(link, mtu); err != nil {
			return nil, fmt.Errorf("bridge %s: set mtu %d: %w", name, mtu, err)
		}
	}
	if err := netlink.LinkSetUp(link); err != nil {
		return nil, fmt.Errorf("bridge %s: set up: %w", name, err)
	}
	return &Bridge{Name: name, Index: link.Attrs().Index}, nil
}

// RemoveBridge deletes the bridge and every veth enslaved to it (the host
// ends of containers' interfaces, so those vanish too). A missing bridge is
// not an error. Other ports (e.g. a TAP) are only released.
func RemoveBridge(name string) error {
	link, err := netlink.LinkByName(name)
	if isNotFound(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("remove bridge %s: %w", name, err)
	}
	if link.Type() != "bridge" {
		return fmt.Errorf("remove bridge %s: it is a %s, not a bridge", name, link.Type())
	}
	ports, err := bridgePorts(link.Attrs().Index)
	if err != nil {
		return fmt.Errorf("remove bridge %s: %w", name, err)
	}
	var errs []error
	for _, p := range ports {
		if p.Type() == "veth" {
			if err := netlink.LinkDel(p); err != nil && !isNotFound(err) {
				errs = append(errs, fmt.Errorf("delete veth %s: %w", p.Attrs().Name, err))
			}
		}
	}
	if err := netlink.LinkDel(link); err != nil && !isNotFound(err) {
		errs = append(errs, fmt.Errorf("delete bridge %s: %w", name, err))
	}
	return errors.Join(errs...)
}

// link looks the bridge up by name and checks it is still the bridge
// EnsureBridge found, so that a call from a thread in another namespace, or
// after the bridge was replaced, fails instead of touching another link.
func (b *Bridge) link() (netlink.Link, error) {
	link, err := netlink.LinkByName(b.Name)
	if err != nil {
		return nil, fmt.Errorf("bridge %s: %w", b.Name, err)
	}
	if link.Type() != "bridge" || link.Attrs().Index != b.Index {
		return nil, fmt.Errorf("bridge %s: no longer the bridge this router made (deleted, replaced, or called from another network namespace)", b.Name)
	}
	return link, nil
}

// Ports lists the links enslaved to the bridge.
func (b *Bridge) Ports() ([]netlink.Link, error) {
	link, err := b.link()
	if err != nil {
		return nil, err
	}
	return bridgePorts(link.Attrs().Index)
}

func bridgePorts(index int) ([]netlink.Link, error) {
	links, err := netlink.LinkList()
	if err != nil && !errors.Is(err, netlink.ErrDumpInterrupted) {
		return nil, fmt.Errorf("list links: %w", err)
	}
	var ports []netlink.Link
	for _, l := range links {
		if l.Attrs().MasterIndex == index {
			ports = append(ports, l)
		}
	}
	return ports, nil
}

// Addrs returns the IPv4 addresses on the bridge itself (weave expose).
func (b *Bridge) Addrs() ([]netip.Prefix, error) {
	link, err := b.link()
	if err != nil {
		return nil, err
	}
	return linkAddrs(netlink.AddrList, link)
}

// AddAddr puts addr on the bridge, giving the host an address on the
// network. Adding an address that is already there is not an error.
func (b *Bridge) AddAddr(addr netip.Prefix) error {
	link, err := b.link()
	if err != nil {
		return err
	}
	if err := netlink.AddrAdd(link, toNetlinkAddr(addr)); err != nil && !errors.Is(err, unix.EEXIST) {
		return fmt.Errorf("bridge %s: add %s: %w", b.Name, addr, err)
	}
	return nil
}

// DelAddr removes addr from the bridge; an absent address is not an error.
func (b *Bridge) DelAddr(addr netip.Prefix) error {
	link, err := b.link()
	if err != nil {
		return err
	}
	if err := netlink.AddrDel(link, toNetlinkAddr(addr)); err != nil && !errors.Is(err, unix.EADDRNOTAVAIL) {
		return fmt.Errorf("bridge %s: remove %s: %w", b.Name, addr, err)
	}
	return nil
}

// DeleteLink deletes the named link in the current namespace; a missing
// link is not an error. Deleting one end of a veth pair deletes both.
func DeleteLink(name string) error {
	link, err := netlink.LinkByName(name)
	if isNotFound(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("delete %s: %w", name, err)
	}
	if err := netlink.LinkDel(link); err != nil && !isNotFound(err) {
		return fmt.Errorf("delete %s: %w", name, err)
	}
	return nil
}

// LinkExists reports whether a link with this name exists in the current
// namespace.
func LinkExists(name string) (bool, error) {
	_, err := netlink.LinkByName(name)
	if isNotFound(err) {
		return false, nil
	}
	return err == nil, err
}
