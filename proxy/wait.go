package proxy

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// What `weave wait-iface` (the entrypoint the proxy gives containers) does
// before it execs the container's own command. It runs inside arbitrary
// containers, so it reads the network configuration and nothing else.

// WaitPollInterval is how often WaitIface looks at the interface.
const WaitPollInterval = 20 * time.Millisecond

// defaultPath is the search path when PATH is not set: the Engine's
// default for Linux containers.
const defaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// ErrNotFound is returned by LookPath when no executable file is found.
var ErrNotFound = errors.New("executable file not found")

// WaitIface blocks until the interface name exists, is up and has an IPv4
// address, or timeout passes (0 = no limit), or ctx ends.
func WaitIface(ctx context.Context, name string, timeout time.Duration) error {
	if timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, timeout)
		defer cancel()
	}
	tick := time.NewTicker(WaitPollInterval)
	defer tick.Stop()
	for {
		if ifaceReady(name) {
			return nil
		}
		select {
		case <-tick.C:
		case <-ctx.Done():
			if errors.Is(ctx.Err(), context.DeadlineExceeded) {
				return fmt.Errorf("interface %s is not up with an IPv4 address after %v", name, timeout)
			}
			return fmt.Errorf("interrupted while waiting for interface %s", name)
		}
	}
}

func ifaceReady(name string) bool {
	ifi, err := net.InterfaceByName(name)
	if err != nil || ifi.Flags&net.FlagUp == 0 {
		return false
	}
	addrs, err := ifi.Addrs()
	if err != nil {
		return false
	}
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok && n.IP.To4() != nil {
			return true
		}
	}
	return false
}

// LookPath finds file as execvp(3) does, with the PATH of env (KEY=VALUE
// strings; the Engine's default path when unset): a name with a slash is
// taken as it is, otherwise each directory of PATH in turn (an empty one
// meaning the working directory) until one holds an executable regular
// file. The error wraps ErrNotFound when there is none.
func LookPath(file string, env []string) (string, error) {
	if file == "" {
		return "", fmt.Errorf("exec %q: %w", file, ErrNotFound)
	}
	if strings.Contains(file, "/") {
		if err := executable(file); err != nil {
			return "", fmt.Errorf("exec %s: %w", file, err)
		}
		return file, nil
	}
	path, ok := envValue(env, "PATH")
	if !ok {
		path = defaultPath
	}
	for _, dir := range filepath.SplitList(path) {
		if dir == "" {
			dir = "."
		}
		p := dir + "/" + file
		if executable(p) == nil {
			return p, nil
		}
	}
	return "", fmt.Errorf("exec %s: %w in PATH %s", file, ErrNotFound, path)
}

func executable(path string) error {
	st, err := os.Stat(path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return ErrNotFound
		}
		return err
	}
	if st.IsDir() || st.Mode()&0o111 == 0 {
		return fmt.Errorf("%w (not an executable file)", fs.ErrPermission)
	}
	return nil
}
