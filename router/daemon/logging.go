package daemon

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"

	"golang.org/x/sys/unix"
)

// OpenLog opens (appending, creating) the log file in runDir, first
// rotating it when it has reached DefaultLogMaxSize: a launch hands this
// file to the router as its stdout and stderr.
func OpenLog(runDir string) (*os.File, error) {
	if err := os.MkdirAll(runDir, 0o755); err != nil {
		return nil, fmt.Errorf("run dir: %w", err)
	}
	path := RunPaths(runDir).Log
	if err := RotateIfLarger(path, DefaultLogMaxSize, DefaultLogKeep); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o640)
	if err != nil {
		return nil, fmt.Errorf("log file: %w", err)
	}
	return f, nil
}

// openDaemonLog opens the router's rotating log file in runDir. When the
// router's stdio is that file (a launched router), every file it opens
// becomes its stdout and stderr too, so that what the runtime writes there
// (a panic) lands in the current file; it reports whether that is so.
func openDaemonLog(runDir string, stderr *os.File) (*RotatingFile, bool, error) {
	if err := os.MkdirAll(runDir, 0o755); err != nil {
		return nil, false, fmt.Errorf("run dir: %w", err)
	}
	path := RunPaths(runDir).Log
	launched, stdoutToo := sameFile(stderr, path), sameFile(os.Stdout, path)
	var onOpen func(*os.File) error
	if launched {
		onOpen = func(f *os.File) error {
			if err := unix.Dup2(int(f.Fd()), int(stderr.Fd())); err != nil {
				return err
			}
			if stdoutToo {
				return unix.Dup2(int(f.Fd()), int(os.Stdout.Fd()))
			}
			return nil
		}
	}
	f, err := OpenRotating(path, DefaultLogMaxSize, DefaultLogKeep, onOpen)
	return f, launched, err
}

// NewLogger returns the daemon's logger: text at level to every w, with
// repeated records rate-limited (DefaultRateLimit).
func NewLogger(level slog.Level, w ...io.Writer) *slog.Logger {
	var out io.Writer = io.MultiWriter(w...)
	if len(w) == 1 {
		out = w[0]
	}
	return slog.New(NewRateLimitHandler(slog.NewTextHandler(out, &slog.HandlerOptions{Level: level}), DefaultRateLimit()))
}

// flushLog writes the rate limiter's pending summaries.
func flushLog(log *slog.Logger) {
	if h, ok := log.Handler().(*RateLimitHandler); ok {
		h.Flush(context.Background())
	}
}
