package harness

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"io"
	"net"
	"time"
)

// Listen opens a listener inside the namespace (see net.Listen).
func (n Netns) Listen(network, addr string) (net.Listener, error) {
	var ln net.Listener
	err := n.Do(func() error {
		var err error
		ln, err = net.Listen(network, addr)
		return err
	})
	return ln, err
}

// ListenPacket opens a packet socket inside the namespace (see
// net.ListenPacket).
func (n Netns) ListenPacket(network, addr string) (net.PacketConn, error) {
	var pc net.PacketConn
	err := n.Do(func() error {
		var err error
		pc, err = net.ListenPacket(network, addr)
		return err
	})
	return pc, err
}

// Dial connects from inside the namespace (see net.DialTimeout).
func (n Netns) Dial(network, addr string, timeout time.Duration) (net.Conn, error) {
	var c net.Conn
	err := n.Do(func() error {
		var err error
		c, err = net.DialTimeout(network, addr, timeout)
		return err
	})
	return c, err
}

// TCPTransfer sends data over one TCP connection from namespace from to a
// listener in namespace to on toIP, and checks that the receiver got
// exactly data (by SHA-256). It returns the time the transfer took.
func TCPTransfer(from, to Netns, toIP string, data []byte, timeout time.Duration) (time.Duration, error) {
	ln, err := to.Listen("tcp", net.JoinHostPort(toIP, "0"))
	if err != nil {
		return 0, fmt.Errorf("listen in %s: %w", to.Name, err)
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
		n, err := io.Copy(h, c)
		var g got
		g.n, g.err = n, err
		copy(g.sum[:], h.Sum(nil))
		gotc <- g
	}()
	start := time.Now()
	c, err := from.Dial("tcp", ln.Addr().String(), 10*time.Second)
	if err != nil {
		return 0, fmt.Errorf("dial %s from %s: %w", ln.Addr(), from.Name, err)
	}
	c.SetDeadline(deadline)
	_, werr := io.Copy(c, bytes.NewReader(data))
	c.(*net.TCPConn).CloseWrite()
	var g got
	select {
	case g = <-gotc:
	case <-time.After(time.Until(deadline) + time.Second):
		g.err = fmt.Errorf("receiver did not finish")
	}
	c.Close()
	took := time.Since(start)
	if werr != nil {
		return took, fmt.Errorf("send %d bytes %s -> %s: %w", len(data), from.Name, ln.Addr(), werr)
	}
	if g.err != nil {
		return took, fmt.Errorf("receive in %s: %w (got %d of %d bytes)", to.Name, g.err, g.n, len(data))
	}
	if want := sha256.Sum256(data); g.n != int64(len(data)) || g.sum != want {
		return took, fmt.Errorf("receiver in %s got %d bytes with another checksum (sent %d)", to.Name, g.n, len(data))
	}
	return took, nil
}
