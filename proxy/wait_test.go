package proxy

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestLookPath(t *testing.T) {
	dir := t.TempDir()
	bin1 := filepath.Join(dir, "bin1")
	bin2 := filepath.Join(dir, "bin2")
	for _, d := range []string{bin1, bin2} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	write := func(path string, mode fs.FileMode) {
		if err := os.WriteFile(path, []byte("#!/bin/sh\n"), mode); err != nil {
			t.Fatal(err)
		}
	}
	write(filepath.Join(bin1, "noexec"), 0o644) // skipped, as execvp does
	write(filepath.Join(bin2, "noexec"), 0o755)
	write(filepath.Join(bin2, "prog"), 0o755)
	write(filepath.Join(bin1, "prog"), 0o755) // first in PATH wins
	os.Mkdir(filepath.Join(bin1, "isdir"), 0o755)
	write(filepath.Join(dir, "plain"), 0o644)

	path := "PATH=" + bin1 + ":" + bin2
	tests := []struct {
		file    string
		env     []string
		want    string
		wantErr error
	}{
		{file: "prog", env: []string{path}, want: bin1 + "/prog"},
		{file: "noexec", env: []string{path}, want: bin2 + "/noexec"},
		{file: "prog", env: []string{"PATH=/nonexistent:" + bin2}, want: bin2 + "/prog"},
		{file: "prog", env: []string{"PATH=" + bin2, path}, want: bin1 + "/prog"}, // the last PATH counts
		{file: "nosuch", env: []string{path}, wantErr: ErrNotFound},
		{file: "isdir", env: []string{path}, wantErr: ErrNotFound},
		{file: "prog", env: []string{"PATH="}, wantErr: ErrNotFound}, // "" is the working directory
		{file: bin2 + "/prog", env: nil, want: bin2 + "/prog"},       // a full path, PATH unused
		{file: dir + "/nosuch", env: []string{path}, wantErr: ErrNotFound},
		{file: dir + "/plain", env: []string{path}, wantErr: fs.ErrPermission},
		{file: "", env: []string{path}, wantErr: ErrNotFound},
		{file: "sh", env: nil, want: "/bin/sh"}, // PATH unset: the Engine's default path
	}
	for _, tt := range tests {
		t.Run(tt.file+" "+strings.Join(tt.env, " "), func(t *testing.T) {
			got, err := LookPath(tt.file, tt.env)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("LookPath = %q, %v; want an error wrapping %v", got, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if tt.file == "sh" {
				// /usr/bin/sh or /bin/sh, whichever the default path has first.
				if !strings.HasSuffix(got, "/sh") {
					t.Errorf("LookPath = %q", got)
				}
				return
			}
			if got != tt.want {
				t.Errorf("LookPath = %q, want %q", got, tt.want)
			}
		})
	}
	t.Run("working directory", func(t *testing.T) {
		t.Chdir(bin2)
		got, err := LookPath("prog", []string{"PATH=/nonexistent::"})
		if err != nil || got != "./prog" {
			t.Errorf("LookPath = %q, %v; want ./prog", got, err)
		}
	})
}

func TestWaitIface(t *testing.T) {
	// lo is up with 127.0.0.1 in every namespace the tests run in.
	if err := WaitIface(context.Background(), "lo", time.Second); err != nil {
		t.Errorf("WaitIface(lo): %v", err)
	}
	start := time.Now()
	err := WaitIface(context.Background(), "nosuch0", 100*time.Millisecond)
	if err == nil || !strings.Contains(err.Error(), "not up with an IPv4 address after 100ms") {
		t.Errorf("WaitIface(nosuch0): %v", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("timeout took %v", d)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := WaitIface(ctx, "nosuch0", 0); err == nil || !strings.Contains(err.Error(), "interrupted") {
		t.Errorf("WaitIface(cancelled): %v", err)
	}
}
