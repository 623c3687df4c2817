package handshake

import (
	"encoding/binary"
	"fmt"
	"io"
	"unicode/utf8"

	"github.com/weavelab/weave/mesh/identity"
)

// helloMagic opens every hello, so that a non-weave client is refused at once.
var helloMagic = [8]byte{'w', 'e', 'a', 'v', 'e', 'n', 'e', 't'}

// Hello layout (all integers big-endian). The 12-byte prefix is the same in
// every protocol version; version 1 reads the fields below from the body and
// ignores any bytes after the nickname (later versions may append fields;
// they are still covered by the transcript hash).
//
//	prefix:  magic[8] minVersion[1] maxVersion[1] bodyLen[2]
//	body:    flags[1] name[6] uid[8] udpPort[2] nonce[16] identity[32]
//	         element[32] suites[1] prefer[1] nickLen[1] nick[nickLen]
//	         extensions...
//
// identity is the sender's long-term public key, to which its name must be
// bound (identity.NameOf); element is its CPace share (see cpace.go), all
// zero without a password. suites is the set of data-plane cipher suites
// the sender accepts (bit s for Suite s) and prefer the one it prefers,
// both zero without a password.
const (
	helloPrefixLen  = 12
	helloFixedLen   = 1 + 6 + 8 + 2 + nonceLen + 32 + 32 + 2 + 1
	maxHelloBodyLen = 1024
	nonceLen        = 16

	flagPassword = 1 << 0 // the sender has a password and sent a CPace element
)

// hello is one side's opening message.
type hello struct {
	MinVersion, MaxVersion uint8
	Password               bool
	Peer                   identity.Peer
	UDPPort                uint16
	Nonce                  [nonceLen]byte
	Identity               identity.PublicKey
	Element                [32]byte // CPace share; zero without a password
	Suites                 offer    // data cipher suites; zero without a password
}

// encode returns the hello as sent on the wire.
func (h *hello) encode() []byte {
	b := make([]byte, 0, helloPrefixLen+helloFixedLen+len(h.Peer.NickName))
	b = append(b, helloMagic[:]...)
	b = append(b, h.MinVersion, h.MaxVersion)
	b = binary.BigEndian.AppendUint16(b, uint16(helloFixedLen+len(h.Peer.NickName)))
	var flags byte
	if h.Password {
		flags |= flagPassword
	}
	b = append(b, flags)
	b = append(b, h.Peer.Name.MAC()...)
	b = binary.BigEndian.AppendUint64(b, uint64(h.Peer.UID))
	b = binary.BigEndian.AppendUint16(b, h.UDPPort)
	b = append(b, h.Nonce[:]...)
	b = append(b, h.Identity[:]...)
	b = append(b, h.Element[:]...)
	b = append(b, h.Suites.Accept, byte(h.Suites.Prefer))
	b = append(b, byte(len(h.Peer.NickName)))
	b = append(b, h.Peer.NickName...)
	return b
}

// readHello reads one hello from r and returns it decoded together with its
// raw bytes (for the transcript).
func readHello(r io.Reader) (*hello, []byte, error) {
	raw := make([]byte, helloPrefixLen, helloPrefixLen+helloFixedLen+identity.MaxNickNameLen)
	if _, err := io.ReadFull(r, raw); err != nil {
		return nil, nil, fmt.Errorf("read hello: %w", err)
	}
	if [8]byte(raw[:8]) != helloMagic {
		return nil, nil, fmt.Errorf("%w: not a weave router (bad magic %q)", ErrProtocol, raw[:8])
	}
	n := int(binary.BigEndian.Uint16(raw[10:12]))
	if n > maxHelloBodyLen {
		return nil, nil, fmt.Errorf("%w: hello body of %d bytes exceeds %d", ErrProtocol, n, maxHelloBodyLen)
	}
	raw = append(raw, make([]byte, n)...)
	if _, err := io.ReadFull(r, raw[helloPrefixLen:]); err != nil {
		return nil, nil, fmt.Errorf("read hello: %w", err)
	}
	h, err := decodeHello(raw)
	if err != nil {
		return nil, nil, err
	}
	return h, raw, nil
}

// decodeHello parses a complete hello (prefix and body).
func decodeHello(b []byte) (*hello, error) {
	if len(b) < helloPrefixLen {
		return nil, fmt.Errorf("%w: hello of %d bytes is truncated", ErrProtocol, len(b))
	}
	if [8]byte(b[:8]) != helloMagic {
		return nil, fmt.Errorf("%w: not a weave router (bad magic %q)", ErrProtocol, b[:8])
	}
	h := &hello{MinVersion: b[8], MaxVersion: b[9]}
	if h.MinVersion == 0 || h.MinVersion > h.MaxVersion {
		return nil, fmt.Errorf("%w: hello has bad version range %d..%d", ErrProtocol, h.MinVersion, h.MaxVersion)
	}
	n := int(binary.BigEndian.Uint16(b[10:12]))
	body := b[helloPrefixLen:]
	if n != len(body) || n > maxHelloBodyLen {
		return nil, fmt.Errorf("%w: hello body length %d, have %d bytes", ErrProtocol, n, len(body))
	}
	if err := h.decodeBodyV1(body); err != nil {
		// A peer whose versions are all outside ours may use another body
		// layout; report the version range, not the layout.
		if h.MaxVersion < MinVersion || h.MinVersion > MaxVersion {
			return &hello{MinVersion: h.MinVersion, MaxVersion: h.MaxVersion}, nil
		}
		return nil, err
	}
	return h, nil
}

// decodeBodyV1 parses the body layout of protocol version 1.
func (h *hello) decodeBodyV1(body []byte) error {
	if len(body) < helloFixedLen {
		return fmt.Errorf("%w: hello body of %d bytes is shorter than %d", ErrProtocol, len(body), helloFixedLen)
	}
	flags := body[0]
	h.Password = flags&flagPassword != 0
	h.Peer.Name = identity.PeerNameFromMAC(body[1:7])
	h.Peer.UID = identity.UID(binary.BigEndian.Uint64(body[7:15]))
	h.UDPPort = binary.BigEndian.Uint16(body[15:17])
	copy(h.Nonce[:], body[17:17+nonceLen])
	copy(h.Identity[:], body[17+nonceLen:17+nonceLen+32])
	copy(h.Element[:], body[17+nonceLen+32:17+nonceLen+64])
	h.Suites = offer{Accept: body[17+nonceLen+64], Prefer: Suite(body[17+nonceLen+65])}
	nl := int(body[helloFixedLen-1])
	if nl > identity.MaxNickNameLen || helloFixedLen+nl > len(body) {
		return fmt.Errorf("%w: hello nickname of %d bytes is too long or truncated", ErrProtocol, nl)
	}
	nick := body[helloFixedLen : helloFixedLen+nl]
	if !utf8.Valid(nick) {
		return fmt.Errorf("%w: hello nickname is not UTF-8", ErrProtocol)
	}
	h.Peer.NickName = string(nick)
	if h.Peer.Name == identity.UnknownPeer || h.Peer.UID == 0 {
		return fmt.Errorf("%w: hello from %s has a zero name or uid", ErrProtocol, h.Peer)
	}
	if h.Password == (h.Element == [32]byte{}) {
		return fmt.Errorf("%w: hello from %s: password flag and CPace element disagree", ErrProtocol, h.Peer)
	}
	if h.Password && h.Suites.Accept&suiteMask == 0 {
		return fmt.Errorf("%w: hello from %s offers no data cipher suite this version knows (%#x)", ErrProtocol, h.Peer, h.Suites.Accept)
	}
	if h.Identity.IsZero() {
		return fmt.Errorf("%w: hello from %s has no identity key", ErrProtocol, h.Peer)
	}
	return nil
}

// negotiate returns the highest version in both ranges.
func negotiate(ourMin, ourMax, theirMin, theirMax uint8) (uint8, error) {
	lo, hi := max(ourMin, theirMin), min(ourMax, theirMax)
	if lo > hi {
		return 0, fmt.Errorf("%w: we speak %d..%d, the peer %d..%d", ErrVersion, ourMin, ourMax, theirMin, theirMax)
	}
	return hi, nil
}
