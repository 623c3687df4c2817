package netdev

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"

	"golang.org/x/sys/unix"
)

// Announce sends a gratuitous ARP request from ethwe for each IPv4 address,
// so that peers on the network update stale neighbour entries at once.
func (c *Container) Announce(addrs []netip.Prefix) error {
	link, err := c.h.LinkByName(c.Ref.IfaceName())
	if err != nil {
		return err
	}
	mac := link.Attrs().HardwareAddr
	if len(mac) != 6 {
		return fmt.Errorf("%s has no ethernet address", c.Ref.IfaceName())
	}
	proto := htons(unix.ETH_P_ARP)
	fd := -1
	err = c.Do(func() error {
		var err error
		fd, err = unix.Socket(unix.AF_PACKET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, int(proto))
		return err
	})
	if err != nil {
		return fmt.Errorf("arp socket: %w", err)
	}
	defer unix.Close(fd)
	to := &unix.SockaddrLinklayer{Protocol: proto, Ifindex: link.Attrs().Index, Halen: 6}
	copy(to.Addr[:], []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff})
	var errs []error
	for _, a := range addrs {
		if !a.Addr().Is4() {
			continue
		}
		if err := unix.Sendto(fd, GratuitousARP(mac, a.Addr()), 0, to); err != nil {
			errs = append(errs, fmt.Errorf("gratuitous arp for %s: %w", a.Addr(), err))
		}
	}
	return errors.Join(errs...)
}

// GratuitousARP returns the ARP payload (no Ethernet header) of a gratuitous
// request: sender and target protocol address both ip.
func GratuitousARP(mac []byte, ip netip.Addr) []byte {
	p := make([]byte, 28)
	binary.BigEndian.PutUint16(p[0:], 1)      // hardware type: Ethernet
	binary.BigEndian.PutUint16(p[2:], 0x0800) // protocol type: IPv4
	p[4], p[5] = 6, 4                         // address lengths
	binary.BigEndian.PutUint16(p[6:], 1)      // operation: request
	copy(p[8:14], mac)
	ip4 := ip.As4()
	copy(p[14:18], ip4[:])
	copy(p[24:28], ip4[:]) // target hardware address stays zero
	return p
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }
