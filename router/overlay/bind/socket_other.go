//go:build !linux

package bind

import (
	"errors"
	"net"
)

func tuneSocket(c *net.UDPConn, size int) error {
	return errors.Join(c.SetReadBuffer(size), c.SetWriteBuffer(size))
}
