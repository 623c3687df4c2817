package encap

import "errors"

// Replay window errors.
var (
	ErrReplay = errors.New("replayed datagram")
	ErrTooOld = errors.New("datagram too old for the replay window")
)

// WindowSize is how far behind the highest counter seen a datagram may
// arrive and still be accepted (once).
const WindowSize = 2048

const (
	windowWords = 64 // ring of bitmap words; > WindowSize/64+1 so a full window fits
	windowMask  = windowWords - 1
)

// Window is a sliding replay window over 64-bit counters, in the style of
// RFC 6479 / WireGuard: a ring of bitmap words indexed by counter/64. The
// zero value is an empty window. Not safe for concurrent use.
//
// Check before authenticating (cheap rejection), Mark after.
type Window struct {
	bits    [windowWords]uint64
	highest uint64
	started bool
}

// Check reports whether counter c may be accepted: nil, ErrReplay or ErrTooOld.
func (w *Window) Check(c uint64) error {
	if !w.started || c > w.highest {
		return nil
	}
	if w.highest-c >= WindowSize {
		return ErrTooOld
	}
	if w.bits[(c/64)&windowMask]&(1<<(c%64)) != 0 {
		return ErrReplay
	}
	return nil
}

// Mark records counter c as seen; call only after Check returned nil and
// the datagram authenticated.
func (w *Window) Mark(c uint64) {
	word := c / 64
	switch {
	case !w.started:
		w.bits = [windowWords]uint64{}
		w.started, w.highest = true, c
	case c > w.highest:
		cur := w.highest / 64
		diff := word - cur
		if diff > windowWords {
			diff = windowWords
		}
		for i := uint64(1); i <= diff; i++ {
			w.bits[(cur+i)&windowMask] = 0
		}
		w.highest = c
	}
	w.bits[word&windowMask] |= 1 << (c % 64)
}
