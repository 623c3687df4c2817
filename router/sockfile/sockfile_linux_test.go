package sockfile

import (
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

// TestSocketBornWithItsMode: under umask 0 the socket file is created with
// the mode asked for (bind alone would make it 0777, and a chmod after bind
// leaves a window in which anyone can connect).
func TestSocketBornWithItsMode(t *testing.T) {
	old := syscall.Umask(0) // process-wide: this test must not run in parallel
	t.Cleanup(func() { syscall.Umask(old) })
	for _, mode := range []fs.FileMode{0o600, 0o660} {
		path := filepath.Join(t.TempDir(), "s")
		ln, err := Listen(path, mode)
		if err != nil {
			t.Fatal(err)
		}
		st, err := os.Lstat(path)
		ln.Close()
		if err != nil || st.Mode().Perm() != mode || st.Mode().Type() != fs.ModeSocket {
			t.Fatalf("socket right after bind: %v, %v; want a %04o socket", st.Mode(), err, mode)
		}
		if _, err := os.Lstat(path); err != nil {
			t.Fatalf("Close unlinked the socket: %v", err)
		}
	}
}
