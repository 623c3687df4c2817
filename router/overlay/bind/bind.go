// Package bind owns the overlay's UDP side: the Bind interface through which
// the data plane reads and writes batches of datagrams, and UDP, its
// implementation over a UDP socket (recvmmsg/sendmmsg, and on Linux UDP
// segmentation offload on send and UDP GRO on receive). Package bindtest
// has an in-memory fake, so the overlay's tests run over either.
package bind

import (
	"errors"
	"net/netip"
)

// Bind is a UDP endpoint that moves datagrams in batches.
//
// ReadBatch and WriteBatch may each be called from several goroutines at
// once. Close unblocks pending calls; they, and every later call, return an
// error wrapping net.ErrClosed.
type Bind interface {
	// ReadBatch blocks until at least one message arrives, then fills
	// msgs[:n] with what is already queued (at most len(msgs)). Message i
	// is read into msgs[i].Buffers[0]; see Message for the fields set.
	ReadBatch(msgs []Message) (n int, err error)
	// WriteBatch sends msgs in order and returns how many were sent; when
	// err is not nil it concerns msgs[n]. A message with several Buffers
	// is one offloaded run (allowed only when Caps().GSO): each buffer is a
	// datagram, all of len(Buffers[0]) bytes except that the last may be
	// shorter. If the run is refused because of the offload itself, err
	// wraps ErrGSORefused and the caller should send the datagrams one by
	// one. WriteBatch does not keep msgs or their buffers.
	WriteBatch(msgs []Message) (n int, err error)
	// Caps reports the offloads the endpoint has.
	Caps() Caps
	// LocalAddr is the bound address (the port chosen when asked for 0).
	LocalAddr() netip.AddrPort
	Close() error
}

// Message is one entry of a batch.
type Message struct {
	// Buffers: to write, the datagram (or the datagrams of an offloaded
	// run); to read, Buffers[0] is where the bytes go.
	Buffers [][]byte
	// Addr is the destination (write) or the source (read).
	Addr netip.AddrPort
	// N is how many bytes were read into Buffers[0].
	N int
	// Segment (read) is 0 when the bytes are one datagram, or, with GRO,
	// the size of each datagram of a run of them (the last may be shorter).
	Segment int
}

// Caps are a Bind's offloads.
type Caps struct {
	// GSO: WriteBatch takes runs of datagrams as one message.
	GSO bool
	// GRO: ReadBatch may return runs of datagrams from one sender in one
	// buffer (Message.Segment).
	GRO bool
}

// ErrGSORefused is wrapped by WriteBatch errors that refuse an offloaded
// run because of the offload (no checksum offload on the route, a size the
// kernel rejects, a kernel that does not know UDP_SEGMENT).
var ErrGSORefused = errors.New("udp segmentation offload refused")

// MaxGSOSegments and MaxGSOBytes bound an offloaded run: the kernel takes
// at most 64 segments per message, and the message must fit one (64 KiB)
// UDP datagram.
const (
	MaxGSOSegments = 64
	MaxGSOBytes    = 65000
)
