package api

import (
	"context"
	"errors"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
)

func TestClientNotRunning(t *testing.T) {
	dir := t.TempDir()
	sock := filepath.Join(dir, "weave.sock")
	c := NewClient(sock)
	_, err := c.Status(context.Background())
	if !errors.Is(err, ErrNotRunning) {
		t.Fatalf("no socket: err = %v, want ErrNotRunning", err)
	}
	want := "weave is not running (no socket at " + sock + "): start it with 'weave launch'"
	if err.Error() != want {
		t.Errorf("no socket: err = %q, want %q", err, want)
	}

	// A socket file whose listener is gone, as a killed daemon leaves it.
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: sock, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	ln.SetUnlinkOnClose(false)
	ln.Close()
	err = c.Connect(context.Background(), []string{"10.0.0.1:6783"}, false)
	if !errors.Is(err, ErrNotRunning) || !strings.Contains(err.Error(), "stale socket") {
		t.Fatalf("stale socket: err = %v, want ErrNotRunning mentioning the stale socket", err)
	}
}

// serve runs h on a Unix socket in a temp dir and returns a client for it.
func serve(t *testing.T, h http.Handler) *Client {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "weave.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: h}
	done := make(chan struct{})
	go func() { defer close(done); srv.Serve(ln) }()
	t.Cleanup(func() { srv.Close(); <-done })
	return NewClient(sock)
}

func TestClientErrors(t *testing.T) {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /connect", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusBadRequest)
		w.Write([]byte(`{"error":"bad peer address \"x:y\": port must be 1-65535"}`))
	})
	mux.HandleFunc("GET /status", func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "boom\nsecond line", http.StatusInternalServerError)
	})
	mux.HandleFunc("GET /version", func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte(`{"version":"1.0","pid":7}`))
	})
	c := serve(t, mux)
	ctx := context.Background()

	err := c.Connect(ctx, []string{"x:y"}, false)
	var re *RemoteError
	if !errors.As(err, &re) || re.StatusCode != http.StatusBadRequest {
		t.Fatalf("connect: err = %#v, want RemoteError 400", err)
	}
	if want := `bad peer address "x:y": port must be 1-65535`; err.Error() != want {
		t.Errorf("connect: err = %q, want %q", err, want)
	}

	_, err = c.Status(ctx)
	if !errors.As(err, &re) || re.StatusCode != 500 || err.Error() != "weave: boom" {
		t.Errorf("status: err = %v, want one-line RemoteError 500", err)
	}

	v, err := c.Version(ctx)
	if err != nil || v.Version != "1.0" || v.PID != 7 {
		t.Errorf("version = %+v, %v", v, err)
	}

	_, err = c.Report(ctx) // not served: the mux's 404
	if !errors.As(err, &re) || re.StatusCode != http.StatusNotFound {
		t.Errorf("report: err = %v, want 404", err)
	}
}
