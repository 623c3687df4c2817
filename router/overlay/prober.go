package overlay

import "net/netip"

// prober sends path MTU probes: pkt starts with room for the IPv4 and UDP
// headers, which send fills in (DF set, source port srcPort), followed by
// the datagram. send must not block; a probe too large for the local
// interface fails with an error wrapping syscall.EMSGSIZE. Safe for
// concurrent use.
type prober interface {
	send(pkt []byte, srcPort uint16, dst netip.AddrPort) error
	Close() error
}
