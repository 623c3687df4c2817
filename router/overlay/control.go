package overlay

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// Control messages travel over the connection's TCP stream (SendControl /
// ControlMessage). Layout: byte 0 version (1), byte 1 type, then fields.
//
//	hello (type 1): index uint32 (the receiver index to put in datagrams
//	for us), max datagram uint16 (largest UDP payload we accept without
//	fragmentation: our underlay MTU minus IP and UDP headers), then
//	optionally fast port uint16 (the UDP port of our kernel fast path's
//	VXLAN device, 0 or absent: none). Routers before the fast path send
//	8 bytes and ignore the trailing field, so it needs no new version.
const (
	controlVersion = 1
	controlHello   = 1
	helloLen       = 2 + 4 + 2
	helloFastLen   = helloLen + 2
)

var errControl = errors.New("malformed overlay control message")

type hello struct {
	Index       uint32
	MaxDatagram uint16
	FastPort    uint16 // 0: the sender has no fast path
}

func encodeHello(h hello) []byte {
	b := make([]byte, helloFastLen)
	b[0], b[1] = controlVersion, controlHello
	binary.BigEndian.PutUint32(b[2:6], h.Index)
	binary.BigEndian.PutUint16(b[6:8], h.MaxDatagram)
	binary.BigEndian.PutUint16(b[8:10], h.FastPort)
	return b
}

// decodeControl parses a control message; only hello exists so far. Longer
// messages are accepted (later versions may append fields).
func decodeControl(b []byte) (hello, error) {
	if len(b) < 2 {
		return hello{}, fmt.Errorf("%w: %d bytes", errControl, len(b))
	}
	if b[0] != controlVersion {
		return hello{}, fmt.Errorf("%w: version %d", errControl, b[0])
	}
	if b[1] != controlHello {
		return hello{}, fmt.Errorf("%w: type %d", errControl, b[1])
	}
	if len(b) < helloLen {
		return hello{}, fmt.Errorf("%w: hello of %d bytes", errControl, len(b))
	}
	h := hello{Index: binary.BigEndian.Uint32(b[2:6]), MaxDatagram: binary.BigEndian.Uint16(b[6:8])}
	if len(b) >= helloFastLen {
		h.FastPort = binary.BigEndian.Uint16(b[8:10])
	}
	if h.Index == 0 {
		return hello{}, fmt.Errorf("%w: zero index", errControl)
	}
	if h.MaxDatagram < 512 {
		return hello{}, fmt.Errorf("%w: max datagram %d", errControl, h.MaxDatagram)
	}
	return h, nil
}
