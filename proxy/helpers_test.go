package proxy

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
)

// socketDir returns a short temporary directory (Unix socket paths are
// limited to 107 bytes; t.TempDir's can be longer).
func socketDir(t testing.TB) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "wproxy")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

// fakeEngine is a Docker Engine on a Unix socket that records requests
// and answers create, start, inspect, images and kill, a slow stream
// (/slow) and an echoing attach.
type fakeEngine struct {
	t    testing.TB
	path string
	srv  *http.Server
	wg   sync.WaitGroup

	// release lets /slow finish after its first chunk.
	release chan struct{}

	mu          sync.Mutex
	images      map[string]imageConfig
	containers  map[string]*fakeContainer
	requests    []string // "METHOD PATH"
	creates     [][]byte // raw create bodies
	killed      []string
	startStatus int
}

type fakeContainer struct {
	ID, Name string
	Body     map[string]any
}

var versioned = regexp.MustCompile(`^(/v[0-9.]+)?(/.*)$`)

func newFakeEngine(t testing.TB) *fakeEngine {
	t.Helper()
	fe := &fakeEngine{
		t:           t,
		path:        filepath.Join(socketDir(t), "engine.sock"),
		release:     make(chan struct{}),
		images:      map[string]imageConfig{},
		containers:  map[string]*fakeContainer{},
		startStatus: http.StatusNoContent,
	}
	ln, err := net.Listen("unix", fe.path)
	if err != nil {
		t.Fatal(err)
	}
	os.Chmod(fe.path, 0o660)
	fe.srv = &http.Server{Handler: http.HandlerFunc(fe.serve)}
	fe.wg.Add(1)
	go func() {
		defer fe.wg.Done()
		fe.srv.Serve(ln)
	}()
	t.Cleanup(func() {
		fe.srv.Close()
		fe.wg.Wait()
	})
	return fe
}

func (fe *fakeEngine) addImage(name string, img imageConfig) {
	fe.mu.Lock()
	defer fe.mu.Unlock()
	fe.images[name] = img
}

func (fe *fakeEngine) container(idOrName string) *fakeContainer {
	fe.mu.Lock()
	defer fe.mu.Unlock()
	return fe.containers[idOrName]
}

func (fe *fakeEngine) saw(req string) bool {
	fe.mu.Lock()
	defer fe.mu.Unlock()
	for _, r := range fe.requests {
		if r == req {
			return true
		}
	}
	return false
}

func (fe *fakeEngine) answer(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

func (fe *fakeEngine) serve(w http.ResponseWriter, r *http.Request) {
	m := versioned.FindStringSubmatch(r.URL.Path)
	path := m[2]
	fe.mu.Lock()
	fe.requests = append(fe.requests, r.Method+" "+path)
	fe.mu.Unlock()
	parts := strings.Split(strings.Trim(path, "/"), "/")
	switch {
	case path == "/_ping":
		io.WriteString(w, "OK")
	case r.Method == http.MethodGet && parts[0] == "images" && parts[len(parts)-1] == "json":
		name := strings.Join(parts[1:len(parts)-1], "/")
		fe.mu.Lock()
		img, ok := fe.images[name]
		fe.mu.Unlock()
		if !ok {
			fe.answer(w, http.StatusNotFound, map[string]string{"message": "No such image: " + name})
			return
		}
		fe.answer(w, http.StatusOK, map[string]any{"Id": "sha256:0", "Config": img})
	case r.Method == http.MethodPost && path == "/containers/create":
		raw, _ := io.ReadAll(r.Body)
		var body map[string]any
		if err := json.Unmarshal(raw, &body); err != nil {
			fe.answer(w, http.StatusBadRequest, map[string]string{"message": err.Error()})
			return
		}
		fe.mu.Lock()
		n := len(fe.creates)
		fe.creates = append(fe.creates, raw)
		c := &fakeContainer{ID: fmt.Sprintf("%064x", n+0xc0ffee), Name: r.URL.Query().Get("name"), Body: body}
		fe.containers[c.ID] = c
		if c.Name != "" {
			fe.containers[c.Name] = c
		}
		fe.mu.Unlock()
		fe.answer(w, http.StatusCreated, map[string]any{"Id": c.ID, "Warnings": []string{}})
	case len(parts) == 3 && parts[0] == "containers":
		c := fe.container(parts[1])
		if c == nil {
			fe.answer(w, http.StatusNotFound, map[string]string{"message": "No such container: " + parts[1]})
			return
		}
		switch {
		case r.Method == http.MethodGet && parts[2] == "json":
			cfg := map[string]any{}
			for k, v := range c.Body {
				if k != "HostConfig" {
					cfg[k] = v
				}
			}
			fe.answer(w, http.StatusOK, map[string]any{"Id": c.ID, "Name": "/" + c.Name, "Config": cfg, "HostConfig": c.Body["HostConfig"]})
		case r.Method == http.MethodPost && parts[2] == "start":
			fe.mu.Lock()
			status := fe.startStatus
			fe.mu.Unlock()
			w.WriteHeader(status)
		case r.Method == http.MethodPost && parts[2] == "kill":
			fe.mu.Lock()
			fe.killed = append(fe.killed, c.ID)
			fe.mu.Unlock()
			w.WriteHeader(http.StatusNoContent)
		case r.Method == http.MethodPost && parts[2] == "restart":
			w.WriteHeader(http.StatusNoContent)
		case r.Method == http.MethodPost && parts[2] == "attach":
			fe.echo(w, r)
		default:
			http.NotFound(w, r)
		}
	case path == "/slow":
		w.Header().Set("Content-Type", "text/plain")
		io.WriteString(w, "first\n")
		w.(http.Flusher).Flush()
		select {
		case <-fe.release:
		case <-r.Context().Done():
			return
		}
		for i := range 3 {
			fmt.Fprintf(w, "chunk %d\n", i)
			w.(http.Flusher).Flush()
		}
	default:
		http.NotFound(w, r)
	}
}

// echo hijacks the connection as the Engine's attach does (101 with
// Upgrade, a raw stream without), echoes what it reads, and at the
// client's half-close writes "bye\n" and closes.
func (fe *fakeEngine) echo(w http.ResponseWriter, r *http.Request) {
	conn, brw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		fe.t.Errorf("fake engine: hijack: %v", err)
		return
	}
	defer conn.Close()
	if r.Header.Get("Upgrade") == "tcp" {
		brw.WriteString("HTTP/1.1 101 UPGRADED\r\nContent-Type: application/vnd.docker.raw-stream\r\nConnection: Upgrade\r\nUpgrade: tcp\r\n\r\n")
	} else {
		brw.WriteString("HTTP/1.1 200 OK\r\nContent-Type: application/vnd.docker.raw-stream\r\n\r\n")
	}
	brw.Flush()
	buf := make([]byte, 512)
	for {
		n, err := brw.Read(buf)
		if n > 0 {
			conn.Write(buf[:n])
		}
		if err != nil {
			break
		}
	}
	io.WriteString(conn, "bye\n")
}

// fakeAttacher records Attach calls.
type fakeAttacher struct {
	mu    sync.Mutex
	calls []attachCall
	err   error
	// hook, if set, runs in Attach (the real engine test makes ethwe).
	hook func(ctx context.Context, id string) error
}

type attachCall struct {
	ID    string
	Addrs []string
}

var _ Attacher = (*fakeAttacher)(nil)

func (a *fakeAttacher) Attach(ctx context.Context, id string, addrs []string) ([]string, error) {
	a.mu.Lock()
	a.calls = append(a.calls, attachCall{ID: id, Addrs: addrs})
	err, hook := a.err, a.hook
	a.mu.Unlock()
	if err != nil {
		return nil, err
	}
	if hook != nil {
		if err := hook(ctx, id); err != nil {
			return nil, err
		}
	}
	return []string{"10.32.0.1/12"}, nil
}

func (a *fakeAttacher) reset() {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.calls = nil
}

func (a *fakeAttacher) Calls() []attachCall {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]attachCall(nil), a.calls...)
}

// testProxy is a Proxy serving in the background, closed at cleanup.
type testProxy struct {
	*Proxy
	socket   string
	attacher *fakeAttacher
	client   *http.Client
}

func startProxy(t testing.TB, upstream string, mod ...func(*Config)) *testProxy {
	t.Helper()
	dir := socketDir(t)
	wait := filepath.Join(dir, "weave")
	if err := os.WriteFile(wait, []byte("#!/bin/false\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	att := &fakeAttacher{}
	cfg := Config{
		Socket:     filepath.Join(dir, "docker.sock"),
		Upstream:   upstream,
		WaitBinary: wait,
		Domain:     "weave.local.",
		DNSAddr:    netip.MustParseAddr("169.254.53.53"),
		Attacher:   att,
		Logger:     slog.New(slog.NewTextHandler(newTestWriter(t), &slog.HandlerOptions{Level: slog.LevelDebug})),
	}
	for _, f := range mod {
		f(&cfg)
	}
	p, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Listen(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- p.Serve(context.Background()) }()
	tp := &testProxy{Proxy: p, socket: cfg.Socket, attacher: att, client: unixClient(cfg.Socket)}
	t.Cleanup(func() {
		tp.client.CloseIdleConnections()
		if err := p.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Serve: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Errorf("Serve did not return after Close")
		}
	})
	return tp
}

func unixClient(path string) *http.Client {
	return &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", path)
		},
	}}
}

// do sends a request through the proxy and returns status and body.
func (tp *testProxy) do(t testing.TB, method, path, body string) (int, string) {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, "http://docker"+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := tp.client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: reading: %v", method, path, err)
	}
	return resp.StatusCode, string(b)
}

// testWriter sends log lines to the test log until the test ends.
type testWriter struct {
	t    testing.TB
	mu   sync.Mutex
	done bool
}

func newTestWriter(t testing.TB) *testWriter {
	w := &testWriter{t: t}
	t.Cleanup(func() {
		w.mu.Lock()
		w.done = true
		w.mu.Unlock()
	})
	return w
}

func (w *testWriter) Write(b []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.done {
		w.t.Log(strings.TrimRight(string(b), "\n"))
	}
	return len(b), nil
}

// rawRequest writes req on a new connection to the proxy and reads the
// answer's head; the caller owns the connection.
func rawRequest(t testing.TB, socket, req string) (*net.UnixConn, *bufio.Reader, *http.Response) {
	t.Helper()
	c, err := net.Dial("unix", socket)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, req); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("reading the answer: %v", err)
	}
	return c.(*net.UnixConn), br, resp
}

func isClosed(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed)
}
