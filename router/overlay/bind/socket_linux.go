package bind

import (
	"errors"
	"fmt"
	"net"

	"golang.org/x/sys/unix"
)

// tuneSocket asks for large socket buffers (SO_RCVBUFFORCE/SO_SNDBUFFORCE
// when we may exceed the sysctl limits, as root; the plain options
// otherwise) and lets the kernel fragment datagrams larger than the path
// MTU (IP_PMTUDISC_DONT), so an oversized frame without DF still arrives.
func tuneSocket(c *net.UDPConn, size int) error {
	rc, err := c.SyscallConn()
	if err != nil {
		return fmt.Errorf("raw socket: %w", err)
	}
	var errs []error
	err = rc.Control(func(fd uintptr) {
		s := int(fd)
		if e := unix.SetsockoptInt(s, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, size); e != nil {
			if e := unix.SetsockoptInt(s, unix.SOL_SOCKET, unix.SO_RCVBUF, size); e != nil {
				errs = append(errs, fmt.Errorf("SO_RCVBUF: %w", e))
			}
		}
		if e := unix.SetsockoptInt(s, unix.SOL_SOCKET, unix.SO_SNDBUFFORCE, size); e != nil {
			if e := unix.SetsockoptInt(s, unix.SOL_SOCKET, unix.SO_SNDBUF, size); e != nil {
				errs = append(errs, fmt.Errorf("SO_SNDBUF: %w", e))
			}
		}
		if e := unix.SetsockoptInt(s, unix.IPPROTO_IP, unix.IP_MTU_DISCOVER, unix.IP_PMTUDISC_DONT); e != nil {
			errs = append(errs, fmt.Errorf("IP_MTU_DISCOVER: %w", e))
		}
	})
	if err != nil {
		return fmt.Errorf("raw socket: %w", err)
	}
	return errors.Join(errs...)
}
