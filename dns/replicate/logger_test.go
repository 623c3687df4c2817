package replicate

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
)

func TestMemberlistLogger(t *testing.T) {
	for _, tc := range []struct {
		level slog.Level
		line  string
		want  string
	}{
		{slog.LevelDebug, "[WARN] memberlist: Was able to connect to x\n", `level=DEBUG msg="Was able to connect to x" memberlist=WARN`},
		{slog.LevelDebug, "[ERR] memberlist: Failed to send: boom", `msg="Failed to send: boom" memberlist=ERR`},
		{slog.LevelDebug, "untagged line", `msg="untagged line" memberlist=""`},
		{slog.LevelInfo, "[ERR] memberlist: hidden above debug", ""},
	} {
		t.Run(tc.line, func(t *testing.T) {
			var buf bytes.Buffer
			l := slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{
				Level: tc.level,
				ReplaceAttr: func(_ []string, a slog.Attr) slog.Attr {
					if a.Key == slog.TimeKey {
						return slog.Attr{}
					}
					return a
				},
			}))
			memberlistLogger(l).Print(tc.line)
			got := strings.TrimSpace(buf.String())
			if tc.want == "" && got != "" || !strings.Contains(got, tc.want) {
				t.Fatalf("logged %q, want %q", got, tc.want)
			}
		})
	}
}
