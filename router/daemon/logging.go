package daemon

import (
	"fmt"
	"io"
	"log/slog"
	"os"
)

// OpenLog opens (appending, creating) the log file in runDir.
func OpenLog(runDir string) (*os.File, error) {
	if err := os.MkdirAll(runDir, 0o755); err != nil {
		return nil, fmt.Errorf("run dir: %w", err)
	}
	f, err := os.OpenFile(RunPaths(runDir).Log, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o640)
	if err != nil {
		return nil, fmt.Errorf("log file: %w", err)
	}
	return f, nil
}

// NewLogger returns a text logger at level writing to every w.
func NewLogger(level slog.Level, w ...io.Writer) *slog.Logger {
	var out io.Writer = io.MultiWriter(w...)
	if len(w) == 1 {
		out = w[0]
	}
	return slog.New(slog.NewTextHandler(out, &slog.HandlerOptions{Level: level}))
}
