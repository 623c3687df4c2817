package daemon

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strconv"
	"sync"
)

// Log file rotation defaults: weave.log is renamed weave.log.1 when it
// would grow past 10 MiB, and three old files are kept.
const (
	DefaultLogMaxSize = 10 << 20
	DefaultLogKeep    = 3
)

// RotatingFile is an append-only log file that rotates by size: when a
// write would take it past maxSize, path.N-1 becomes path.N (the oldest,
// path.keep, is dropped), path becomes path.1, and a new path is started.
// Safe for concurrent use; a single write is never split across files.
type RotatingFile struct {
	mu      sync.Mutex
	path    string
	maxSize int64
	keep    int
	f       *os.File
	size    int64
	// onOpen is called with every file opened, e.g. to make it the
	// process's stderr so that a panic lands in the current file too.
	onOpen func(*os.File) error
}

// OpenRotating opens (appending, creating 0640) the log at path.
func OpenRotating(path string, maxSize int64, keep int, onOpen func(*os.File) error) (*RotatingFile, error) {
	r := &RotatingFile{path: path, maxSize: maxSize, keep: max(keep, 1), onOpen: onOpen}
	if err := r.openLocked(); err != nil {
		return nil, err
	}
	return r, nil
}

func (r *RotatingFile) openLocked() error {
	f, err := os.OpenFile(r.path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o640)
	if err != nil {
		return fmt.Errorf("log file: %w", err)
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return fmt.Errorf("log file: %w", err)
	}
	if r.onOpen != nil {
		if err := r.onOpen(f); err != nil {
			f.Close()
			return fmt.Errorf("log file: %w", err)
		}
	}
	r.f, r.size = f, st.Size()
	return nil
}

// Write appends p, rotating first when p would take the file past its
// size limit (a file holding nothing yet takes p whatever its size).
func (r *RotatingFile) Write(p []byte) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.f == nil {
		return 0, fs.ErrClosed
	}
	if r.size > 0 && r.size+int64(len(p)) > r.maxSize {
		if err := r.rotateLocked(); err != nil {
			return 0, err
		}
	}
	n, err := r.f.Write(p)
	r.size += int64(n)
	return n, err
}

func (r *RotatingFile) rotateLocked() error {
	r.f.Close()
	r.f = nil
	if err := shiftLogs(r.path, r.keep); err != nil {
		// Keep logging into the file we have rather than losing lines.
		if oerr := r.openLocked(); oerr != nil {
			return errors.Join(err, oerr)
		}
		r.size = 0 // do not try again at every write
		return nil
	}
	return r.openLocked()
}

// Close closes the current file.
func (r *RotatingFile) Close() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.f == nil {
		return nil
	}
	err := r.f.Close()
	r.f = nil
	return err
}

// shiftLogs renames path.keep-1 to path.keep, ..., path to path.1.
func shiftLogs(path string, keep int) error {
	for i := keep - 1; i >= 1; i-- {
		err := os.Rename(path+"."+strconv.Itoa(i), path+"."+strconv.Itoa(i+1))
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("rotate log: %w", err)
		}
	}
	if err := os.Rename(path, path+".1"); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("rotate log: %w", err)
	}
	return nil
}

// RotateIfLarger rotates the log at path when it holds maxSize or more,
// as `weave launch` does before it hands the file to a new router.
func RotateIfLarger(path string, maxSize int64, keep int) error {
	st, err := os.Stat(path)
	if err != nil || st.Size() < maxSize {
		return nil
	}
	return shiftLogs(path, max(keep, 1))
}
