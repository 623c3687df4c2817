package daemon

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"syscall"
)

// ErrUnsafeDir is wrapped by the errors of CheckDirs.
var ErrUnsafeDir = errors.New("unsafe directory")

// DirError says why a run or state dir is refused.
type DirError struct {
	What string // "run dir" or "state dir"
	Env  string // the variable that names it
	Path string
	Why  string // what is wrong and what to do about it
}

func (e *DirError) Error() string {
	return fmt.Sprintf("%s %s ($%s): %s", e.What, e.Path, e.Env, e.Why)
}

func (e *DirError) Unwrap() error { return ErrUnsafeDir }

// CheckDirs refuses a run dir or state dir that exists but that someone
// other than us could have prepared: it must be a directory (not a
// symlink, which could point the socket, the pid file or `weave reset`'s
// deletions anywhere), owned by our effective user (root), and not
// writable by its group or others (who could swap the socket or the pid
// file, or plant state). A dir that does not exist is fine: it is created
// 0755 (run) or 0700 (state). CheckDirs changes nothing; the launch, the
// router and reset call it before they touch either dir.
func CheckDirs(runDir, stateDir string) error {
	if err := checkOwnDir("run dir", EnvRunDir, runDir); err != nil {
		return err
	}
	return checkOwnDir("state dir", EnvStateDir, stateDir)
}

func checkOwnDir(what, env, dir string) error {
	bad := func(format string, args ...any) error {
		return &DirError{What: what, Env: env, Path: dir, Why: fmt.Sprintf(format, args...)}
	}
	st, err := os.Lstat(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return bad("%v", err)
	}
	switch {
	case st.Mode()&fs.ModeSymlink != 0:
		return bad("is a symlink; point $%s at a real directory", env)
	case !st.IsDir():
		return bad("exists and is not a directory")
	}
	if sys, ok := st.Sys().(*syscall.Stat_t); ok && int(sys.Uid) != os.Geteuid() {
		return bad("owned by uid %d, not by us (uid %d); chown %d %s", sys.Uid, os.Geteuid(), os.Geteuid(), dir)
	}
	if perm := st.Mode().Perm(); perm&0o022 != 0 {
		return bad("writable by group or others (mode %04o); chmod go-w %s", perm, dir)
	}
	return nil
}
