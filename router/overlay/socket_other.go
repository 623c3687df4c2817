//go:build !linux

package overlay

import (
	"errors"
	"net"
)

func tuneSocket(c *net.UDPConn, size int) error {
	return errors.Join(c.SetReadBuffer(size), c.SetWriteBuffer(size))
}
