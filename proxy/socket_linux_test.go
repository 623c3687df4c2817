package proxy

import (
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
)

// TestProxySocketNeverWiderThanFinal: under umask 0 the proxy's socket is
// born with its final mode (it used to be bound 0777 inside the private
// directory and chmod-ed after), and a watcher that looks into the private
// directories while the socket is made again and again never sees it wider
// than 0660.
func TestProxySocketNeverWiderThanFinal(t *testing.T) {
	old := syscall.Umask(0) // process-wide: this test must not run in parallel
	t.Cleanup(func() { syscall.Umask(old) })
	dir := socketDir(t)
	like := filepath.Join(dir, "engine.sock")
	if err := os.WriteFile(like, nil, 0o666); err != nil { // only its mode and group count
		t.Fatal(err)
	}
	path := filepath.Join(dir, "docker.sock")
	log := slog.New(slog.DiscardHandler)

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
			entries, _ := os.ReadDir(dir)
			for _, e := range entries {
				p := filepath.Join(dir, e.Name())
				if strings.HasPrefix(e.Name(), ".weave-proxy-") {
					p = filepath.Join(p, "s")
				} else if e.Name() != "docker.sock" {
					continue
				}
				if st, err := os.Lstat(p); err == nil && st.Mode().Perm()&^0o660 != 0 {
					wider.Store(p + " " + st.Mode().String())
				}
			}
		}
	}()
	for range 300 {
		s, err := listenLike(path, like, log)
		if err != nil {
			close(stop)
			wg.Wait()
			t.Fatal(err)
		}
		s.Close()
	}
	close(stop)
	wg.Wait()
	if w := wider.Load(); w != nil {
		t.Fatalf("proxy socket seen wider than 0660: %s", w)
	}
}
