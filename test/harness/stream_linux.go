package harness

import (
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"time"
)

// Stream is what a TCPStream moved: the bytes and SHA-256 each end saw.
type Stream struct {
	Sent, Received       int64
	SentSum, ReceivedSum [32]byte
	Took                 time.Duration
}

// Mbps is the stream's goodput in Mbit/s.
func (s Stream) Mbps() float64 { return float64(s.Received) * 8 / s.Took.Seconds() / 1e6 }

// PatternReader returns a reader of n pseudo-random bytes that are a
// function of seed only (ChaCha8), so that a sender can produce gigabytes
// without holding them and a checker can produce the same bytes again.
func PatternReader(seed uint64, n int64) io.Reader {
	return io.LimitReader(rand.NewChaCha8(chachaSeed(seed, 0)), n)
}

func chachaSeed(seed, sub uint64) [32]byte {
	var s [32]byte
	binary.LittleEndian.PutUint64(s[0:], seed)
	binary.LittleEndian.PutUint64(s[8:], sub)
	copy(s[16:], "weave-h8-pattern")
	return s
}

// TCPStream sends size bytes of PatternReader(seed, size) over one TCP
// connection from namespace from to a listener in namespace to on toIP,
// hashing on both ends, and returns an error unless the receiver got
// exactly what was sent (same length and SHA-256). Unlike TCPTransfer it
// holds no more than a buffer of the data, so size may be gigabytes. It
// blocks until both ends finish or timeout passes.
func TCPStream(from, to Netns, toIP string, size int64, seed uint64, timeout time.Duration) (Stream, error) {
	return tcpSend(from, to, toIP, PatternReader(seed, size), size, timeout)
}

// tcpSend sends the size bytes of src over one TCP connection from
// namespace from to a listener in namespace to on toIP, hashing on both
// ends, and returns an error unless the receiver got exactly what was
// sent. TCPStream and TCPTransfer share it.
func tcpSend(from, to Netns, toIP string, src io.Reader, size int64, timeout time.Duration) (Stream, error) {
	var s Stream
	ln, err := to.Listen("tcp", net.JoinHostPort(toIP, "0"))
	if err != nil {
		return s, fmt.Errorf("listen in %s: %w", to.Name, err)
	}
	defer ln.Close()
	deadline := time.Now().Add(timeout)
	type got struct {
		n   int64
		sum [32]byte
		err error
	}
	gotc := make(chan got, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			gotc <- got{err: err}
			return
		}
		defer c.Close()
		c.SetDeadline(deadline)
		h := sha256.New()
		n, err := io.CopyBuffer(h, c, make([]byte, 256<<10))
		g := got{n: n, err: err}
		copy(g.sum[:], h.Sum(nil))
		gotc <- g
	}()
	start := time.Now()
	c, err := from.Dial("tcp", ln.Addr().String(), 10*time.Second)
	if err != nil {
		return s, fmt.Errorf("dial %s from %s: %w", ln.Addr(), from.Name, err)
	}
	defer c.Close()
	c.SetDeadline(deadline)
	h := sha256.New()
	n, werr := io.CopyBuffer(io.MultiWriter(c, h), src, make([]byte, 256<<10))
	s.Sent = n
	copy(s.SentSum[:], h.Sum(nil))
	if werr == nil {
		werr = c.(*net.TCPConn).CloseWrite()
	}
	if werr != nil {
		// Unblock the receiver rather than wait for the deadline.
		c.Close()
	}
	var g got
	select {
	case g = <-gotc:
	case <-time.After(time.Until(deadline) + time.Second):
		g.err = fmt.Errorf("receiver did not finish")
	}
	s.Took = time.Since(start)
	s.Received, s.ReceivedSum = g.n, g.sum
	switch {
	case werr != nil:
		return s, fmt.Errorf("send to %s from %s: %w (sent %d of %d bytes)", ln.Addr(), from.Name, werr, n, size)
	case g.err != nil:
		return s, fmt.Errorf("receive in %s: %w (got %d of %d bytes)", to.Name, g.err, g.n, size)
	case g.n != size || g.sum != s.SentSum:
		return s, fmt.Errorf("receiver in %s got %d bytes with SHA-256 %x, sent %d with %x", to.Name, g.n, g.sum[:8], size, s.SentSum[:8])
	}
	return s, nil
}
