package overlay

import (
	"encoding/binary"
	"fmt"
	"net/netip"

	"golang.org/x/sys/unix"
)

// rawProber sends path MTU probes with DF set. It is a send-only raw
// socket (IPPROTO_RAW: we write the IP and UDP headers, the kernel never
// queues received packets on it), so the data socket keeps
// IP_PMTUDISC_DONT and the probes do not slow down its receive path. With
// IP_PMTUDISC_PROBE the kernel ignores its cached path MTU (so a path that
// widened is seen) but still refuses packets larger than the outgoing
// interface's MTU with EMSGSIZE. Needs CAP_NET_RAW.
type rawProber struct {
	fd  int
	src netip.Addr // source address, unspecified: the kernel picks
}

func newProber(src netip.Addr) (prober, error) {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_RAW|unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK, unix.IPPROTO_RAW)
	if err != nil {
		return nil, fmt.Errorf("raw socket for path MTU probes: %w", err)
	}
	if err := unix.SetsockoptInt(fd, unix.IPPROTO_IP, unix.IP_MTU_DISCOVER, unix.IP_PMTUDISC_PROBE); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("raw socket for path MTU probes: IP_MTU_DISCOVER: %w", err)
	}
	return &rawProber{fd: fd, src: src}, nil
}

// send fills in the IPv4 and UDP headers at the start of pkt (the datagram
// follows them) and sends it without blocking.
func (r *rawProber) send(pkt []byte, srcPort uint16, dst netip.AddrPort) error {
	if len(pkt) < ipv4Header+udpHeader || len(pkt) > 65535 || !dst.Addr().Unmap().Is4() {
		return fmt.Errorf("probe of %d bytes to %s: bad size or address", len(pkt), dst)
	}
	ip := pkt[:ipv4Header]
	ip[0], ip[1] = 0x45, 0
	binary.BigEndian.PutUint16(ip[2:4], uint16(len(pkt)))
	binary.BigEndian.PutUint16(ip[4:6], 0)      // id: filled in by the kernel
	binary.BigEndian.PutUint16(ip[6:8], 0x4000) // DF
	ip[8], ip[9] = 64, unix.IPPROTO_UDP
	ip[10], ip[11] = 0, 0 // checksum: filled in by the kernel
	var src [4]byte
	if r.src.Is4() && !r.src.IsUnspecified() {
		src = r.src.As4()
	}
	copy(ip[12:16], src[:]) // zero: filled in by the kernel
	d4 := dst.Addr().Unmap().As4()
	copy(ip[16:20], d4[:])
	udp := pkt[ipv4Header : ipv4Header+udpHeader]
	binary.BigEndian.PutUint16(udp[0:2], srcPort)
	binary.BigEndian.PutUint16(udp[2:4], dst.Port())
	binary.BigEndian.PutUint16(udp[4:6], uint16(len(pkt)-ipv4Header))
	binary.BigEndian.PutUint16(udp[6:8], 0) // no checksum (IPv4 allows it)
	if err := unix.Sendto(r.fd, pkt, unix.MSG_DONTWAIT, &unix.SockaddrInet4{Addr: d4}); err != nil {
		return fmt.Errorf("send probe of %d bytes to %s: %w", len(pkt), dst, err)
	}
	return nil
}

func (r *rawProber) Close() error { return unix.Close(r.fd) }
