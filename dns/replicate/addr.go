package replicate

import (
	"errors"
	"fmt"
	"net"
	"net/netip"

	"github.com/weavelab/weave/mesh/identity"
)

// Memberlist wants every node to have an IP address and a port: it parses
// join addresses with net.ParseIP (anything else goes to DNS), keeps
// Node.Addr as a net.IP and answers probes at "ip:port". So each peer gets a
// synthetic, never-routed address derived from its name alone:
//
//	ip   = fd77:6561:7665::/80 + the 48-bit peer name
//	       (fd, then "weave" in ASCII, four zero bytes, the name)
//	port = AddrPort (6783, the router's control port, over whose
//	       connections the messages really travel)
//
// so aa:bb:cc:dd:ee:ff is [fd77:6561:7665::aabb:ccdd:eeff]:6783. The
// mapping needs no table and cannot go stale; the address is a label, and
// nothing ever listens on it. The prefix is a unique local address (RFC
// 4193), which memberlist does not warn about as "public".

// AddrPort is the port of every peer's synthetic memberlist address.
const AddrPort = 6783

// addrPrefix is the first ten bytes of every synthetic address.
var addrPrefix = [10]byte{0xfd, 'w', 'e', 'a', 'v', 'e'}

// ErrBadAddr is returned (wrapped) for an address that is not one of ours.
var ErrBadAddr = errors.New("not a weave mesh memberlist address")

// PeerIP returns the synthetic IP address of peer p.
func PeerIP(p identity.PeerName) netip.Addr {
	var b [16]byte
	copy(b[:], addrPrefix[:])
	copy(b[10:], p.MAC())
	return netip.AddrFrom16(b)
}

// PeerAddr returns the memberlist address ("[ip]:port") of peer p.
func PeerAddr(p identity.PeerName) string {
	return netip.AddrPortFrom(PeerIP(p), AddrPort).String()
}

// ParsePeerAddr returns the peer whose memberlist address is s, as written
// by PeerAddr. It is strict: the prefix, the port and a non-zero name must
// all be right.
func ParsePeerAddr(s string) (identity.PeerName, error) {
	ap, err := netip.ParseAddrPort(s)
	if err != nil {
		return 0, fmt.Errorf("%w: %q: %w", ErrBadAddr, s, err)
	}
	if ap.Port() != AddrPort {
		return 0, fmt.Errorf("%w: %q: port is not %d", ErrBadAddr, s, AddrPort)
	}
	p, err := peerOfIP(ap.Addr())
	if err != nil {
		return 0, fmt.Errorf("%w: %q: %w", ErrBadAddr, s, err)
	}
	return p, nil
}

func peerOfIP(ip netip.Addr) (identity.PeerName, error) {
	if !ip.Is6() || ip.Is4In6() || ip.Zone() != "" {
		return 0, errors.New("want a plain IPv6 address")
	}
	b := ip.As16()
	if [10]byte(b[:10]) != addrPrefix {
		return 0, errors.New("wrong prefix")
	}
	p := identity.PeerNameFromMAC(net.HardwareAddr(b[10:]))
	if p == identity.UnknownPeer {
		return 0, errors.New("the all-zero peer name is reserved")
	}
	return p, nil
}

// Addr is the net.Addr of a peer, as seen by memberlist: packets' From, and
// streams' LocalAddr and RemoteAddr.
type Addr struct{ Peer identity.PeerName }

// Network returns "weave-mesh".
func (a Addr) Network() string { return "weave-mesh" }

// String returns the peer's memberlist address, as PeerAddr.
func (a Addr) String() string { return PeerAddr(a.Peer) }
