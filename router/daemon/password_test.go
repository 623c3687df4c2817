package daemon

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestPasswordFileWorldReadable: a --password-file that other users may
// read or write, or that is not a regular file, is refused with one line
// saying what to do (it used to be read silently); one its group may read
// is accepted with a warning; 0600 is accepted quietly.
func TestPasswordFileWorldReadable(t *testing.T) {
	dir := t.TempDir()
	file := func(mode os.FileMode) string {
		p := filepath.Join(dir, "pw-"+mode.String())
		if err := os.WriteFile(p, []byte("s3cret\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, mode); err != nil {
			t.Fatal(err)
		}
		return p
	}
	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		path    string
		wantErr string // "" for accepted
		warn    bool
	}{
		{"owner only", file(0o600), "", false},
		{"owner read-only", file(0o400), "", false},
		{"group-readable", file(0o640), "", true},
		{"world-readable", file(0o644), "chmod 600", false},
		{"world-writable", file(0o602), "readable or writable by other users (mode 0602)", false},
		{"world-everything", file(0o777), "chmod 600", false},
		{"fifo", fifo, "not a regular file", false},
		{"directory", dir, "not a regular file", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var warnings []string
			src := PasswordSource{File: tt.path, Warn: func(m string) { warnings = append(warnings, m) }}
			done := make(chan struct{})
			var got []byte
			var err error
			go func() {
				defer close(done)
				got, err = src.Password()
			}()
			select {
			case <-done:
			case <-time.After(5 * time.Second):
				t.Fatal("Password blocked (on a FIFO?)")
			}
			if tt.wantErr == "" {
				if err != nil || string(got) != "s3cret" {
					t.Fatalf("got %q, %v; want the password", got, err)
				}
			} else {
				if err == nil || !errors.Is(err, ErrBadConfig) || !strings.Contains(err.Error(), tt.wantErr) ||
					!strings.Contains(err.Error(), tt.path) || strings.Contains(err.Error(), "\n") {
					t.Fatalf("got %q, %v; want one line with %q and the path", got, err, tt.wantErr)
				}
			}
			if (len(warnings) > 0) != tt.warn || (tt.warn && !strings.Contains(warnings[0], "chmod 600")) {
				t.Errorf("warnings %q, want warning=%v", warnings, tt.warn)
			}
		})
	}
}
