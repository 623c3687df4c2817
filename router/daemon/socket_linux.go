package daemon

import (
	"fmt"
	"io/fs"
	"net"
	"os"

	"github.com/weavelab/weave/router/sockfile"
)

// socketMode is the API socket's mode: whoever may connect may stop the
// router and attach anything, so only its owner (root).
const socketMode fs.FileMode = 0o600

// ListenSocket serves the API on a Unix socket at path that is never
// reachable with a mode wider than 0600: the socket is created as
// path.new with that mode (not chmod-ed after bind, which would leave a
// window under a loose umask) and renamed into place. A socket already
// at path is replaced.
func ListenSocket(path string) (*net.UnixListener, error) {
	tmp := path + ".new"
	os.Remove(tmp)
	ln, err := sockfile.Listen(tmp, socketMode)
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		ln.Close()
		os.Remove(tmp)
		return nil, fmt.Errorf("socket: %w", err)
	}
	return ln, nil
}
