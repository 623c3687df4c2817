package proxy

import (
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/weavelab/weave/router/sockfile"
)

// maxMode is the widest mode the proxy's socket ever gets: whoever may
// connect to it may do anything the Engine allows, so never others.
const maxMode fs.FileMode = 0o660

// socket is the proxy's listening Unix socket. Close removes its path if
// the path still names this socket; it may be called more than once (the
// http.Server closes it, and so does Proxy.Close).
type socket struct {
	*net.UnixListener
	path string
	info fs.FileInfo

	once sync.Once
	err  error
}

func (s *socket) Close() error {
	s.once.Do(func() {
		s.err = s.UnixListener.Close()
		if st, err := os.Lstat(s.path); err == nil && os.SameFile(st, s.info) {
			if err := os.Remove(s.path); err != nil && !errors.Is(err, fs.ErrNotExist) && s.err == nil {
				s.err = err
			}
		}
	})
	return s.err
}

// listenLike creates a Unix socket at path with the mode (at most 0660) and
// group of the socket at like. The socket is born with that mode (never
// wider, whatever the umask), in a private directory where it gets its
// group, and is renamed into place, so it is never reachable with a wider
// mode or another group. A
// stale socket at path is replaced; one that answers, or anything that is
// not a socket, is an error.
func listenLike(path, like string, log *slog.Logger) (*socket, error) {
	mode := fs.FileMode(0o600)
	gid := -1
	if st, err := os.Stat(like); err != nil {
		log.Warn("docker socket not found: the proxy socket is for its owner only", "addr", like, "err", err)
	} else {
		mode = st.Mode().Perm() & maxMode
		if sys, ok := st.Sys().(*syscall.Stat_t); ok {
			gid = int(sys.Gid)
		}
	}
	if err := clearStale(path); err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp(filepath.Dir(path), ".weave-proxy-")
	if err != nil {
		return nil, fmt.Errorf("socket %s: %w", path, err)
	}
	defer os.RemoveAll(dir)
	tmp := filepath.Join(dir, "s")
	// Born with the final mode (or narrower), so that no instant, not even
	// inside the private directory, has it wider.
	ln, err := sockfile.Listen(tmp, mode)
	if err != nil {
		return nil, fmt.Errorf("socket %s: %w", path, err)
	}
	fail := func(err error) (*socket, error) {
		ln.Close()
		return nil, fmt.Errorf("socket %s: %w", path, err)
	}
	if gid >= 0 {
		if err := os.Lchown(tmp, -1, gid); err != nil {
			// Group access would then go to our own group: drop it.
			log.Warn("cannot give the proxy socket the docker socket's group: it is for its owner only", "addr", path, "gid", gid, "err", err)
			mode &^= 0o070
		}
	}
	// Only ever narrows: it undoes the umask's cut, within mode.
	if err := os.Chmod(tmp, mode); err != nil {
		return fail(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fail(err)
	}
	info, err := os.Lstat(path)
	if err != nil {
		return fail(err)
	}
	return &socket{UnixListener: ln, path: path, info: info}, nil
}

// clearStale removes a socket at path that nobody serves.
func clearStale(path string) error {
	st, err := os.Lstat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("socket %s: %w", path, err)
	}
	if st.Mode().Type() != fs.ModeSocket {
		return fmt.Errorf("socket %s: exists and is not a socket", path)
	}
	if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
		c.Close()
		return fmt.Errorf("socket %s: in use (is another weave router running?)", path)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("socket %s: removing a stale one: %w", path, err)
	}
	return nil
}
