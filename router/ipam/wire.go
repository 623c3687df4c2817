package ipam

import (
	"encoding/json"
	"fmt"
	"net/netip"

	"github.com/weavelab/weave/mesh/identity"
)

// maxMessage bounds a message we decode (a ring of about 40,000 tokens).
const maxMessage = 4 << 20

// message is what peers send each other on the "ipam" gossip channel, as
// JSON. Gossip (broadcast and periodic) carries the ring and, before it is
// seeded, the consensus claims; unicasts ask for space (answered with the
// ring, and a refusal when there is none to give), hand over a leaving
// peer's space, and acknowledge that.
type message struct {
	// Ring always carries the range, so that peers with different ranges
	// find out at once; Entries only once seeded.
	Ring   *Ring                        `json:"ring"`
	Claims map[identity.PeerName]Claims `json:"claims,omitempty"`
	Ask    *askSpace                    `json:"ask,omitempty"`
	Refuse *askSpace                    `json:"refuse,omitempty"` // unicast: in reply to Ask, none to give there
	Heir   bool                         `json:"heir,omitempty"`   // unicast: we left, the ring makes you our heir
	Ack    bool                         `json:"ack,omitempty"`    // unicast: heir got it
}

// askSpace asks the receiver to hand over some of its free space in Subnet.
type askSpace struct {
	Subnet Subnet `json:"subnet"`
}

func (s Subnet) MarshalText() ([]byte, error) { return s.Prefix().MarshalText() }

func (s *Subnet) UnmarshalText(b []byte) error {
	var p netip.Prefix
	if err := p.UnmarshalText(b); err != nil {
		return err
	}
	*s = Subnet(p)
	return nil
}

func encode(m *message) []byte {
	b, err := json.Marshal(m)
	if err != nil {
		panic(fmt.Sprintf("ipam: encode: %v", err)) // only plain data: cannot fail
	}
	return b
}

// decode parses and checks a message from the network.
func decode(b []byte) (*message, error) {
	if len(b) > maxMessage {
		return nil, fmt.Errorf("%w: message of %d bytes", ErrInvalid, len(b))
	}
	var m message
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	if m.Ring == nil {
		return nil, fmt.Errorf("%w: no ring", ErrInvalid)
	}
	if err := m.Ring.validate(); err != nil {
		return nil, err
	}
	for _, a := range []*askSpace{m.Ask, m.Refuse} {
		if a == nil {
			continue
		}
		p := a.Subnet.Prefix()
		if !p.IsValid() || !p.Addr().Is4() || p.Masked() != p {
			return nil, fmt.Errorf("%w: bad subnet %s", ErrInvalid, p)
		}
	}
	for p, cl := range m.Claims {
		if len(cl.Value) > 4096 {
			return nil, fmt.Errorf("%w: claims of %s too long", ErrInvalid, p)
		}
	}
	return &m, nil
}
