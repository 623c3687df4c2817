package harness

import (
	"bytes"
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
	st, err := tcpSend(from, to, toIP, bytes.NewReader(data), int64(len(data)), timeout)
	return st.Took, err
}
