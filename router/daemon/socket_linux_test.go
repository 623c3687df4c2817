package daemon

import (
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
)

// looseUmask sets the process umask to 0 for the test (the umask is
// process-wide, so such tests must not run in parallel).
func looseUmask(t testing.TB) {
	t.Helper()
	old := syscall.Umask(0)
	t.Cleanup(func() { syscall.Umask(old) })
}

// TestAPISocketNeverWiderThan0600: under umask 0 the API socket is born
// 0600 (bind used to create it 0777 and chmod it after, leaving a window in
// which anyone could connect), and a watcher polling both names while the
// socket is made again and again never sees it wider.
func TestAPISocketNeverWiderThan0600(t *testing.T) {
	looseUmask(t)
	dir := t.TempDir()
	path := filepath.Join(dir, "weave.sock")

	var wider atomic.Value
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			for _, p := range []string{path + ".new", path} {
				if st, err := os.Lstat(p); err == nil && st.Mode().Perm()&^0o600 != 0 {
					wider.Store(p + " " + st.Mode().String())
				}
			}
		}
	}()
	for range 300 {
		ln, err := ListenSocket(path)
		if err != nil {
			close(stop)
			wg.Wait()
			t.Fatal(err)
		}
		ln.Close()
		os.Remove(path)
	}
	close(stop)
	wg.Wait()
	if w := wider.Load(); w != nil {
		t.Fatalf("socket seen wider than 0600: %s", w)
	}
	ln, err := ListenSocket(path)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	if st, err := os.Lstat(path); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("final socket: %v, %v", st.Mode(), err)
	}
}
