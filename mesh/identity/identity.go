// Package identity owns the names by which routers know each other: the
// stable peer name (48 bits written like a MAC address), the random UID that
// tells one run of a peer from the next, and the nickname shown to people.
//
// It has no dependencies inside the module so that every other package
// (handshake, topology, mesh, router) can share one PeerName type.
package identity

import (
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"strings"
)

// PeerName is a router's stable name: 48 bits, printed as aa:bb:cc:dd:ee:ff.
// The zero value is never a valid peer; UnknownPeer names "nobody".
type PeerName uint64

// UnknownPeer is the zero PeerName, used where no peer is meant (for example
// the destination of a broadcast).
const UnknownPeer PeerName = 0

const nameMask = (1 << 48) - 1

// ErrBadPeerName is returned (wrapped) by ParsePeerName for malformed input.
var ErrBadPeerName = errors.New("malformed peer name")

// ParsePeerName parses "aa:bb:cc:dd:ee:ff" (also accepting '-' as separator
// and upper case). The all-zero name is rejected.
func ParsePeerName(s string) (PeerName, error) {
	hw, err := net.ParseMAC(strings.ReplaceAll(s, "-", ":"))
	if err != nil || len(hw) != 6 {
		return 0, fmt.Errorf("%w %q: want six hex bytes like 0a:1b:2c:3d:4e:5f", ErrBadPeerName, s)
	}
	n := PeerNameFromMAC(hw)
	if n == UnknownPeer {
		return 0, fmt.Errorf("%w %q: the all-zero name is reserved", ErrBadPeerName, s)
	}
	return n, nil
}

// PeerNameFromMAC converts a 6-byte hardware address. It panics if hw is not
// 6 bytes long, which is a programming error.
func PeerNameFromMAC(hw net.HardwareAddr) PeerName {
	if len(hw) != 6 {
		panic(fmt.Sprintf("identity: PeerNameFromMAC given %d bytes", len(hw)))
	}
	var b [8]byte
	copy(b[2:], hw)
	return PeerName(binary.BigEndian.Uint64(b[:]))
}

// RandomPeerName returns a fresh locally administered unicast name.
func RandomPeerName() (PeerName, error) {
	var b [6]byte
	if _, err := rand.Read(b[:]); err != nil {
		return 0, fmt.Errorf("random peer name: %w", err)
	}
	b[0] = (b[0] | 0x02) &^ 0x01 // locally administered, unicast
	return PeerNameFromMAC(b[:]), nil
}

// MAC returns the name as a hardware address.
func (n PeerName) MAC() net.HardwareAddr {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], uint64(n)&nameMask)
	return net.HardwareAddr(b[2:])
}

// String prints the name as aa:bb:cc:dd:ee:ff.
func (n PeerName) String() string { return n.MAC().String() }

// MarshalText makes PeerName print as a string in JSON.
func (n PeerName) MarshalText() ([]byte, error) { return []byte(n.String()), nil }

// UnmarshalText parses the form written by MarshalText.
func (n *PeerName) UnmarshalText(b []byte) error {
	p, err := ParsePeerName(string(b))
	if err != nil {
		return err
	}
	*n = p
	return nil
}

// UID tells one run of a peer from another run of the same name. A new one is
// drawn at each start; it is never zero.
type UID uint64

// RandomUID draws a fresh non-zero UID.
func RandomUID() (UID, error) {
	var b [8]byte
	for {
		if _, err := rand.Read(b[:]); err != nil {
			return 0, fmt.Errorf("random uid: %w", err)
		}
		if u := UID(binary.BigEndian.Uint64(b[:])); u != 0 {
			return u, nil
		}
	}
}

// Peer is everything that identifies one run of one router.
type Peer struct {
	Name     PeerName `json:"name"`
	NickName string   `json:"nickname"`
	UID      UID      `json:"uid"`
}

// String prints NAME(nickname), the form the CLI shows.
func (p Peer) String() string { return fmt.Sprintf("%s(%s)", p.Name, p.NickName) }

// MaxNickNameLen bounds nicknames accepted from the network and the CLI.
const MaxNickNameLen = 64

// NameLen is the size of a PeerName on the wire: 6 bytes, big-endian.
const NameLen = 6

// AppendName appends n in its wire form (NameLen bytes, big-endian). Every
// encoder of a PeerName uses it, so that there is one wire form.
func AppendName(b []byte, n PeerName) []byte {
	return append(b, byte(n>>40), byte(n>>32), byte(n>>24), byte(n>>16), byte(n>>8), byte(n))
}

// ReadName decodes the wire form written by AppendName from the first
// NameLen bytes of b, which the caller has checked are there.
func ReadName(b []byte) PeerName {
	_ = b[NameLen-1]
	return PeerName(uint64(b[0])<<40 | uint64(b[1])<<32 | uint64(b[2])<<24 | uint64(b[3])<<16 | uint64(b[4])<<8 | uint64(b[5]))
}
