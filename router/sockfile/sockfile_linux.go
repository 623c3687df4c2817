// Package sockfile creates listening Unix sockets whose file is never
// reachable with a mode wider than asked, whatever the process umask: the
// API socket and the Docker API proxy's socket both need that.
package sockfile

import (
	"fmt"
	"io/fs"
	"net"
	"os"

	"golang.org/x/sys/unix"
)

// Listen creates a listening Unix socket at path whose inode is born
// with mode (further narrowed by the umask). Linux takes a socket file's
// mode at bind from the socket's own inode, so fchmod before bind sets it
// without touching the process-wide umask. The listener does not unlink
// path on Close: the caller owns the path.
func Listen(path string, mode fs.FileMode) (*net.UnixListener, error) {
	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("socket: %w", err)
	}
	f := os.NewFile(uintptr(fd), path)
	defer f.Close() // the listener holds its own descriptor
	if err := unix.Fchmod(fd, uint32(mode.Perm())); err != nil {
		return nil, fmt.Errorf("socket mode: %w", err)
	}
	if err := unix.Bind(fd, &unix.SockaddrUnix{Name: path}); err != nil {
		return nil, fmt.Errorf("bind: %w", err)
	}
	if err := unix.Listen(fd, unix.SOMAXCONN); err != nil {
		os.Remove(path)
		return nil, fmt.Errorf("listen: %w", err)
	}
	fl, err := net.FileListener(f)
	if err != nil {
		os.Remove(path)
		return nil, err
	}
	ln := fl.(*net.UnixListener)
	ln.SetUnlinkOnClose(false)
	return ln, nil
}
