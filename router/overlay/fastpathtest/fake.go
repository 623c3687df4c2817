// Package fastpathtest is an in-memory kernel fast path for tests of the
// overlay: forwarding entries kept in a map, heartbeats carried between the
// fakes on one Net, with switches to block a direction.
package fastpathtest

import (
	"errors"
	"net"
	"net/netip"
	"sync"
	"time"
)

// Net joins fakes by address, as the underlay would.
type Net struct {
	mu      sync.Mutex
	fakes   map[netip.AddrPort]*Fake
	blocked map[netip.AddrPort]bool
}

// NewNet returns an empty network.
func NewNet() *Net {
	return &Net{fakes: map[netip.AddrPort]*Fake{}, blocked: map[netip.AddrPort]bool{}}
}

// Block drops (on) or delivers (off) datagrams to addr, like a firewall on
// that host's VXLAN port.
func (n *Net) Block(addr netip.AddrPort, on bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.blocked[addr] = on
}

// Fake is one host's fast path at Addr. Safe for concurrent use.
type Fake struct {
	net  *Net
	addr netip.AddrPort
	in   chan []byte
	done chan struct{}
	once sync.Once

	mu      sync.Mutex
	entries map[[6]byte]netip.Addr
	ages    map[[6]byte]time.Duration
	sets    int // SetEntry calls
	// FailSet makes SetEntry fail (tests of retries).
	FailSet bool
}

// New attaches a fake at addr (its IP and VXLAN port) to n.
func (n *Net) New(addr netip.AddrPort) *Fake {
	f := &Fake{net: n, addr: addr, in: make(chan []byte, 64), done: make(chan struct{}),
		entries: map[[6]byte]netip.Addr{}, ages: map[[6]byte]time.Duration{}}
	n.mu.Lock()
	n.fakes[addr] = f
	n.mu.Unlock()
	return f
}

// Port is the fake device's UDP port.
func (f *Fake) Port() int { return int(f.addr.Port()) }

// SetEntry records mac -> dst.
func (f *Fake) SetEntry(mac [6]byte, dst netip.Addr) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.FailSet {
		return errors.New("fastpathtest: set refused")
	}
	f.entries[mac] = dst
	f.sets++
	return nil
}

// DelEntry forgets mac.
func (f *Fake) DelEntry(mac [6]byte, _ netip.Addr) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.entries, mac)
	delete(f.ages, mac)
	return nil
}

// EntryAges returns the ages set with SetAge (0 for the others).
func (f *Fake) EntryAges() (map[[6]byte]time.Duration, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := map[[6]byte]time.Duration{}
	for mac := range f.entries {
		out[mac] = f.ages[mac]
	}
	return out, nil
}

// SetAge says how long ago the kernel last used mac's entry.
func (f *Fake) SetAge(mac net.HardwareAddr, age time.Duration) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.ages[[6]byte(mac)] = age
}

// Entries returns a copy of the entries.
func (f *Fake) Entries() map[[6]byte]netip.Addr {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make(map[[6]byte]netip.Addr, len(f.entries))
	for k, v := range f.entries {
		out[k] = v
	}
	return out
}

// SendBeat delivers the frame's payload to the fake at dst unless blocked
// (or absent: a peer without fast path).
func (f *Fake) SendBeat(dst netip.AddrPort, frame []byte) error {
	if len(frame) < 14 {
		return errors.New("fastpathtest: runt frame")
	}
	f.net.mu.Lock()
	to, blocked := f.net.fakes[dst], f.net.blocked[dst]
	f.net.mu.Unlock()
	if to == nil || blocked {
		return nil
	}
	select {
	case to.in <- append([]byte(nil), frame[14:]...):
	default: // full: dropped, like a busy socket
	}
	return nil
}

// RecvBeat returns the next delivered payload; after Close, net.ErrClosed.
func (f *Fake) RecvBeat(buf []byte) (int, error) {
	select {
	case p := <-f.in:
		return copy(buf, p), nil
	case <-f.done:
		return 0, net.ErrClosed
	}
}

// Close unblocks RecvBeat and detaches the fake from its Net.
func (f *Fake) Close() error {
	f.once.Do(func() {
		close(f.done)
		f.net.mu.Lock()
		delete(f.net.fakes, f.addr)
		f.net.mu.Unlock()
	})
	return nil
}
