// Package bindtest is an in-memory bind.Bind for tests of the overlay: fakes
// on one Net reach each other by address as UDP sockets on one LAN would,
// with offloaded runs carried whole (and handed to a receiver with GRO as
// one buffer), and switches to refuse offload.
package bindtest

import (
	"fmt"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"

	"github.com/weavelab/weave/router/overlay/bind"
)

var _ bind.Bind = (*Fake)(nil)

// Queue is how many messages a Fake buffers; more are dropped, as a full
// socket buffer drops datagrams.
const Queue = 4096

// Net joins fakes by address. It is safe for concurrent use.
type Net struct {
	mu       sync.Mutex
	fakes    map[netip.AddrPort]*Fake
	nextPort uint16
}

// NewNet returns an empty network.
func NewNet() *Net {
	return &Net{fakes: map[netip.AddrPort]*Fake{}, nextPort: 40000}
}

// message is a datagram, or a run of them (seg > 0), in flight.
type message struct {
	data []byte
	seg  int
	from netip.AddrPort
}

// Fake is one endpoint on a Net. Its Caps default to GSO and GRO.
type Fake struct {
	net  *Net
	addr netip.AddrPort
	in   chan message

	gso, gro, refuseGSO atomic.Bool
	runs                atomic.Uint64 // runs delivered in one buffer

	readMu  sync.Mutex // one ReadBatch at a time; guards carry
	carry   message    // the rest of a run split without GRO
	carried bool

	closeOnce sync.Once
	closed    chan struct{}
}

// Listen makes a fake bound to addr; port 0 picks an unused one. An address
// in use is an error.
func (n *Net) Listen(addr netip.AddrPort) (*Fake, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if addr.Port() == 0 {
		for {
			n.nextPort++
			a := netip.AddrPortFrom(addr.Addr(), n.nextPort)
			if n.fakes[a] == nil {
				addr = a
				break
			}
		}
	}
	if n.fakes[addr] != nil {
		return nil, fmt.Errorf("listen %s: address in use", addr)
	}
	f := &Fake{net: n, addr: addr, in: make(chan message, Queue), closed: make(chan struct{})}
	f.gso.Store(true)
	f.gro.Store(true)
	n.fakes[addr] = f
	return f, nil
}

// Send delivers d to the fake at to as if from (which need not be bound):
// a spoofed or hand-made datagram. It reports whether a fake took it.
func (n *Net) Send(from, to netip.AddrPort, d []byte) bool {
	return n.deliver(from, to, append([]byte(nil), d...), 0)
}

func (n *Net) deliver(from, to netip.AddrPort, data []byte, seg int) bool {
	n.mu.Lock()
	f := n.fakes[to]
	n.mu.Unlock()
	if f == nil {
		return false
	}
	select {
	case <-f.closed:
		return false
	default:
	}
	select {
	case f.in <- message{data: data, seg: seg, from: from}:
		return true
	default:
		return false
	}
}

// SetCaps sets the offloads the fake reports (and, for GRO, applies).
func (f *Fake) SetCaps(c bind.Caps) {
	f.gso.Store(c.GSO)
	f.gro.Store(c.GRO)
}

// RefuseGSO makes WriteBatch refuse offloaded runs with an error wrapping
// bind.ErrGSORefused, as a kernel without checksum offload on the route does.
func (f *Fake) RefuseGSO(refuse bool) { f.refuseGSO.Store(refuse) }

// Runs is how many offloaded runs ReadBatch returned as one buffer.
func (f *Fake) Runs() uint64 { return f.runs.Load() }

// Caps implements bind.Bind.
func (f *Fake) Caps() bind.Caps { return bind.Caps{GSO: f.gso.Load(), GRO: f.gro.Load()} }

// LocalAddr implements bind.Bind.
func (f *Fake) LocalAddr() netip.AddrPort { return f.addr }

// Close implements bind.Bind; it frees the address.
func (f *Fake) Close() error {
	f.closeOnce.Do(func() {
		close(f.closed)
		f.net.mu.Lock()
		if f.net.fakes[f.addr] == f {
			delete(f.net.fakes, f.addr)
		}
		f.net.mu.Unlock()
	})
	return nil
}

func (f *Fake) errClosed(op string) error {
	return fmt.Errorf("%s %s: %w", op, f.addr, net.ErrClosed)
}

// ReadBatch implements bind.Bind. A run arrives in one buffer with GRO;
// without, each of its datagrams takes a message of its own. Concurrent
// calls take turns.
func (f *Fake) ReadBatch(msgs []bind.Message) (int, error) {
	if len(msgs) == 0 {
		return 0, nil
	}
	f.readMu.Lock()
	defer f.readMu.Unlock()
	m, ok := f.carry, f.carried
	f.carried = false
	if !ok {
		select {
		case m = <-f.in:
		case <-f.closed:
			return 0, f.errClosed("read")
		}
	}
	n := 0
	for {
		data, seg := m.data, m.seg
		rest := false
		if seg > 0 && seg < len(data) && !f.gro.Load() {
			// this message gets one datagram of the run, the rest waits
			data, seg, rest = data[:seg], 0, true
		}
		out := &msgs[n]
		if len(data) > len(out.Buffers[0]) {
			return n, fmt.Errorf("read %s: datagram of %d bytes does not fit buffer of %d", f.addr, len(data), len(out.Buffers[0]))
		}
		out.N = copy(out.Buffers[0], data)
		out.Addr, out.Segment = m.from, 0
		if seg > 0 && seg < len(data) {
			out.Segment = seg
			f.runs.Add(1)
		}
		n++
		if rest {
			m.data = m.data[m.seg:]
		}
		if n == len(msgs) {
			if rest {
				f.carry, f.carried = m, true
			}
			return n, nil
		}
		if !rest {
			select {
			case m = <-f.in:
			default:
				return n, nil
			}
		}
	}
}

// WriteBatch implements bind.Bind. Messages to addresses nobody holds are
// dropped (and count as sent), as UDP would; so are messages to a full
// queue.
func (f *Fake) WriteBatch(msgs []bind.Message) (int, error) {
	select {
	case <-f.closed:
		return 0, f.errClosed("write")
	default:
	}
	for i := range msgs {
		m := &msgs[i]
		if len(m.Buffers) > 1 {
			if !f.gso.Load() {
				return i, fmt.Errorf("write %s: offloaded run without GSO", f.addr)
			}
			if f.refuseGSO.Load() {
				return i, fmt.Errorf("write %s to %s: %w", f.addr, m.Addr, bind.ErrGSORefused)
			}
		}
		f.net.mu.Lock()
		to := f.net.fakes[m.Addr]
		f.net.mu.Unlock()
		if to == nil {
			continue
		}
		size := 0
		for _, b := range m.Buffers {
			size += len(b)
		}
		data := make([]byte, 0, size)
		for _, b := range m.Buffers {
			data = append(data, b...)
		}
		seg := 0
		if len(m.Buffers) > 1 {
			seg = len(m.Buffers[0])
		}
		f.net.deliver(f.addr, m.Addr, data, seg)
	}
	return len(msgs), nil
}
