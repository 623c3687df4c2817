package daemon

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// ErrRunning is returned (wrapped) when another daemon holds the pid lock.
var ErrRunning = errors.New("weave is already running")

// RunningError says which process holds the lock.
type RunningError struct{ PID int }

func (e *RunningError) Error() string {
	if e.PID > 0 {
		return fmt.Sprintf("%s (pid %d)", ErrRunning, e.PID)
	}
	return ErrRunning.Error()
}

func (e *RunningError) Unwrap() error { return ErrRunning }

// PIDLock is the daemon's claim on its run dir: an exclusive flock on
// weave.pid, held for the daemon's lifetime. The kernel drops it when the
// process dies, so a killed daemon never blocks the next one; the file's
// content (the pid) is only for people and error messages.
type PIDLock struct {
	f    *os.File
	path string
}

// AcquirePIDLock takes the lock on path and writes our pid into it. It
// fails with a *RunningError when another process holds it.
func AcquirePIDLock(path string) (*PIDLock, error) {
	for range 10 {
		f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
		if err != nil {
			return nil, fmt.Errorf("pid file: %w", err)
		}
		if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
			f.Close()
			if errors.Is(err, unix.EWOULDBLOCK) {
				return nil, &RunningError{PID: readPID(path)}
			}
			return nil, fmt.Errorf("lock %s: %w", path, err)
		}
		// The previous holder may have unlinked the file between our open
		// and our flock; then we hold a lock on a dead inode. Retry.
		if !sameFile(f, path) {
			f.Close()
			continue
		}
		if err := f.Truncate(0); err != nil {
			f.Close()
			return nil, fmt.Errorf("pid file: %w", err)
		}
		if _, err := f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0); err != nil {
			f.Close()
			return nil, fmt.Errorf("pid file: %w", err)
		}
		return &PIDLock{f: f, path: path}, nil
	}
	return nil, fmt.Errorf("lock %s: file keeps being replaced", path)
}

// Release removes the pid file and drops the lock. Idempotent.
func (l *PIDLock) Release() {
	if l == nil || l.f == nil {
		return
	}
	os.Remove(l.path)
	l.f.Close()
	l.f = nil
}

func sameFile(f *os.File, path string) bool {
	var a, b unix.Stat_t
	if unix.Fstat(int(f.Fd()), &a) != nil || unix.Stat(path, &b) != nil {
		return false
	}
	return a.Dev == b.Dev && a.Ino == b.Ino
}

// readPID returns the pid written in path, 0 if none.
func readPID(path string) int {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	n, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	return n
}

// LockHolder reports whether a daemon holds the lock on path and its pid.
// It does not create path.
func LockHolder(path string) (held bool, pid int) {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return false, 0
	}
	defer f.Close()
	if err := unix.Flock(int(f.Fd()), unix.LOCK_SH|unix.LOCK_NB); err != nil {
		return errors.Is(err, unix.EWOULDBLOCK), readPID(path)
	}
	unix.Flock(int(f.Fd()), unix.LOCK_UN)
	return false, 0
}

// WaitUnlocked waits until no process holds the lock on path, polling, or
// until ctx ends.
func WaitUnlocked(ctx context.Context, path string) error {
	t := time.NewTicker(20 * time.Millisecond)
	defer t.Stop()
	for {
		held, pid := LockHolder(path)
		if !held {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("weave (pid %d) still running: %w", pid, ctx.Err())
		case <-t.C:
		}
	}
}
