// Package netdevtest provides an in-memory netdev.Device for tests of code
// that reads and writes Ethernet frames (the data plane), so the same test
// can run over a fake and over a real TAP. It also has helpers for tests on
// real kernel parts: isolated network namespaces made and removed per test.
package netdevtest

import (
	"fmt"
	"net"
	"sync"

	"github.com/weavelab/weave/router/netdev"
)

var _ netdev.Device = (*Fake)(nil)

// DefaultQueue is how many frames a Fake buffers before Write blocks.
const DefaultQueue = 1024

// Fake is one end of an in-memory cable: frames written to one end are read
// from the other, in order. It is safe for concurrent use; like a TAP it
// copies frames on Write, so callers may reuse their buffers.
type Fake struct {
	name  string
	mtu   int
	batch int

	in   chan []byte // frames for Read
	peer *Fake

	closeOnce sync.Once
	closed    chan struct{}
}

// NewPair returns two connected fakes with the given MTU and batch size
// (batch < 1 means 1). Close one end and the other's writes are dropped
// silently, as with a cable pulled from a switch.
func NewPair(name string, mtu, batch int) (a, b *Fake) {
	if batch < 1 {
		batch = 1
	}
	a = &Fake{name: name + "-a", mtu: mtu, batch: batch, in: make(chan []byte, DefaultQueue), closed: make(chan struct{})}
	b = &Fake{name: name + "-b", mtu: mtu, batch: batch, in: make(chan []byte, DefaultQueue), closed: make(chan struct{})}
	a.peer, b.peer = b, a
	return a, b
}

// Read blocks until at least one frame arrives, then returns up to
// min(len(bufs), BatchSize()) frames that are already queued. It returns an
// error wrapping net.ErrClosed once this end is closed.
func (f *Fake) Read(bufs [][]byte, sizes []int, offset int) (int, error) {
	if len(bufs) == 0 {
		return 0, nil
	}
	var first []byte
	select {
	case first = <-f.in:
	case <-f.closed:
		return 0, fmt.Errorf("read %s: %w", f.name, net.ErrClosed)
	}
	n := 0
	put := func(frame []byte) error {
		if len(frame) > len(bufs[n])-offset {
			return fmt.Errorf("read %s: frame of %d bytes does not fit buffer of %d", f.name, len(frame), len(bufs[n])-offset)
		}
		sizes[n] = copy(bufs[n][offset:], frame)
		n++
		return nil
	}
	if err := put(first); err != nil {
		return 0, err
	}
	limit := min(len(bufs), f.batch)
	for n < limit {
		select {
		case frame := <-f.in:
			if err := put(frame); err != nil {
				return n, err
			}
		default:
			return n, nil
		}
	}
	return n, nil
}

// Write copies each bufs[i][offset:] to the peer's queue, blocking while that
// queue is full. It returns an error wrapping net.ErrClosed once this end is
// closed; frames to a closed peer are dropped.
func (f *Fake) Write(bufs [][]byte, offset int) (int, error) {
	for i, b := range bufs {
		frame := append([]byte(nil), b[offset:]...)
		select {
		case <-f.closed:
			return i, fmt.Errorf("write %s: %w", f.name, net.ErrClosed)
		default:
		}
		select {
		case f.peer.in <- frame:
		case <-f.peer.closed:
		case <-f.closed:
			return i, fmt.Errorf("write %s: %w", f.name, net.ErrClosed)
		}
	}
	return len(bufs), nil
}

// BatchSize is the batch size given to NewPair.
func (f *Fake) BatchSize() int { return f.batch }

// Name is the pair's name with "-a" or "-b".
func (f *Fake) Name() string { return f.name }

// MTU is the MTU given to NewPair.
func (f *Fake) MTU() int { return f.mtu }

// Close closes this end; it is idempotent and unblocks a pending Read.
func (f *Fake) Close() error {
	f.closeOnce.Do(func() { close(f.closed) })
	return nil
}
