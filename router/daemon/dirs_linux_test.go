package daemon

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// TestLaunchRefusesUnsafeRunDir: a run dir or state dir that exists but is
// a symlink, not a directory, owned by someone else, or writable by group
// or others makes launch, the foreground router and reset fail with one
// line naming the dir and the fix, before anything is created or removed.
// (They used to be used as found.)
func TestLaunchRefusesUnsafeRunDir(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("this test chowns directories: run it as root")
	}
	tests := []struct {
		name  string
		which string // "run" or "state"
		setup func(t *testing.T, dir string)
		want  string
	}{
		{"world-writable run dir", "run", func(t *testing.T, d string) { mkdir(t, d, 0o777) }, "chmod go-w"},
		{"group-writable run dir", "run", func(t *testing.T, d string) { mkdir(t, d, 0o775) }, "mode 0775"},
		{"sticky /tmp-like run dir", "run", func(t *testing.T, d string) { mkdir(t, d, 0o1777) }, "writable by group or others"},
		{"run dir owned by nobody", "run", func(t *testing.T, d string) {
			mkdir(t, d, 0o755)
			if err := os.Chown(d, 65534, 65534); err != nil {
				t.Fatal(err)
			}
		}, "owned by uid 65534"},
		{"run dir is a symlink", "run", func(t *testing.T, d string) {
			real := d + "-real"
			mkdir(t, real, 0o755)
			if err := os.Symlink(real, d); err != nil {
				t.Fatal(err)
			}
		}, "is a symlink"},
		{"run dir is a file", "run", func(t *testing.T, d string) {
			if err := os.WriteFile(d, nil, 0o600); err != nil {
				t.Fatal(err)
			}
		}, "not a directory"},
		{"world-writable state dir", "state", func(t *testing.T, d string) { mkdir(t, d, 0o777) }, "state dir"},
		{"state dir is a symlink", "state", func(t *testing.T, d string) {
			real := d + "-real"
			mkdir(t, real, 0o700)
			os.WriteFile(filepath.Join(real, "peer-name"), []byte("keep me\n"), 0o600)
			if err := os.Symlink(real, d); err != nil {
				t.Fatal(err)
			}
		}, "is a symlink"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := launchOpts(t, "ok")
			dir := o.RunDir
			if tt.which == "state" {
				dir = o.StateDir
			}
			tt.setup(t, dir)
			before := snapshot(t, filepath.Dir(dir))

			_, err := Launch(context.Background(), o)
			if err == nil {
				stopLaunched(t, o.RunDir)
				t.Fatal("launch accepted the unsafe dir")
			}
			if !errors.Is(err, ErrUnsafeDir) || !strings.Contains(err.Error(), dir) || !strings.Contains(err.Error(), tt.want) || strings.Contains(err.Error(), "\n") {
				t.Errorf("launch: %q; want one line naming %s and %q", err, dir, tt.want)
			}
			cfg := DefaultConfig()
			cfg.RunDir, cfg.StateDir, cfg.Bridge = o.RunDir, o.StateDir, "h14-none"
			if err := RunForeground(context.Background(), cfg, os.Stderr); !errors.Is(err, ErrUnsafeDir) {
				t.Errorf("router: %v, want %v", err, ErrUnsafeDir)
			}
			if err := Reset(context.Background(), cfg); !errors.Is(err, ErrUnsafeDir) {
				t.Errorf("reset: %v, want %v", err, ErrUnsafeDir)
			}
			if after := snapshot(t, filepath.Dir(dir)); !slices.Equal(before, after) {
				t.Errorf("something changed:\nbefore %q\nafter  %q", before, after)
			}
		})
	}
}

// TestCheckDirsAccepts: missing dirs and our own 0755/0700 dirs are fine.
func TestCheckDirsAccepts(t *testing.T) {
	base := t.TempDir()
	run, state := filepath.Join(base, "run"), filepath.Join(base, "state")
	if err := CheckDirs(run, state); err != nil {
		t.Fatalf("missing dirs: %v", err)
	}
	mkdir(t, run, 0o755)
	mkdir(t, state, 0o700)
	if err := CheckDirs(run, state); err != nil {
		t.Fatalf("own dirs: %v", err)
	}
}

func mkdir(t *testing.T, dir string, mode os.FileMode) {
	t.Helper()
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, mode); err != nil { // not narrowed by the umask
		t.Fatal(err)
	}
}

// snapshot lists every path under root with its mode.
func snapshot(t *testing.T, root string) []string {
	t.Helper()
	var out []string
	filepath.Walk(root, func(p string, info os.FileInfo, err error) error {
		if err == nil {
			out = append(out, p+" "+info.Mode().String())
		}
		return nil
	})
	return out
}
