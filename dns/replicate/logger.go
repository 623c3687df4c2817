package replicate

import (
	"bytes"
	"context"
	"log"
	"log/slog"
)

// memberlistLogger returns a *log.Logger (what memberlist takes) that
// writes each line to l at debug level. memberlist tags lines "[DEBUG]",
// "[WARN]", "[ERR]"; the tag goes in the "memberlist" attribute. Its
// warnings and errors are routine over a churning mesh (a peer that just
// died fails its push/pull), so none of them is worth more than debug;
// what matters reaches the DNS layer as OnLeave and Merge errors.
func memberlistLogger(l *slog.Logger) *log.Logger {
	return log.New(logWriter{l}, "", 0)
}

type logWriter struct{ l *slog.Logger }

func (w logWriter) Write(p []byte) (int, error) {
	if !w.l.Enabled(context.Background(), slog.LevelDebug) {
		return len(p), nil
	}
	line := bytes.TrimRight(p, "\n")
	tag := ""
	if len(line) > 0 && line[0] == '[' {
		if i := bytes.IndexByte(line, ']'); i > 0 {
			tag = string(line[1:i])
			line = bytes.TrimLeft(line[i+1:], " ")
		}
	}
	line = bytes.TrimPrefix(line, []byte("memberlist: "))
	w.l.Debug(string(line), "memberlist", tag)
	return len(p), nil
}
