package proxy

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestStartAttaches(t *testing.T) {
	fe := newFakeEngine(t)
	fe.addImage("busybox", imageConfig{Cmd: []string{"sh"}})
	tp := startProxy(t, "unix://"+fe.path)

	create := func(t *testing.T, name, env string) string {
		t.Helper()
		body := `{"Image":"busybox"` + env + `}`
		status, out := tp.do(t, http.MethodPost, "/v1.41/containers/create?name="+name, body)
		if status != http.StatusCreated {
			t.Fatalf("create: %d %s", status, out)
		}
		var c struct{ Id string }
		json.Unmarshal([]byte(out), &c)
		return c.Id
	}

	t.Run("managed", func(t *testing.T) {
		tp.attacher.reset()
		id := create(t, "web", `,"Env":["WEAVE_CIDR=net:10.2.0.0/16 ip:10.3.1.4/24"]`)
		// By name, as `docker start web` does.
		status, out := tp.do(t, http.MethodPost, "/v1.41/containers/web/start", "")
		if status != http.StatusNoContent {
			t.Fatalf("start: %d %s", status, out)
		}
		want := []attachCall{{ID: id, Addrs: []string{"net:10.2.0.0/16", "ip:10.3.1.4/24"}}}
		if got := tp.attacher.Calls(); !reflect.DeepEqual(got, want) {
			t.Errorf("attach calls %+v, want %+v", got, want)
		}
	})
	t.Run("default addresses", func(t *testing.T) {
		tp.attacher.reset()
		id := create(t, "db", "")
		if status, out := tp.do(t, http.MethodPost, "/containers/"+id+"/start", ""); status != http.StatusNoContent {
			t.Fatalf("start: %d %s", status, out)
		}
		if got := tp.attacher.Calls(); len(got) != 1 || got[0].ID != id || len(got[0].Addrs) != 0 {
			t.Errorf("attach calls %+v, want one for %s with no addresses", got, id)
		}
	})
	t.Run("unmanaged", func(t *testing.T) {
		tp.attacher.reset()
		id := create(t, "plain", `,"Env":["WEAVE_CIDR=none"]`)
		if status, out := tp.do(t, http.MethodPost, "/v1.41/containers/"+id+"/start", ""); status != http.StatusNoContent {
			t.Fatalf("start: %d %s", status, out)
		}
		if got := tp.attacher.Calls(); len(got) != 0 {
			t.Errorf("attach calls %+v, want none", got)
		}
	})
	t.Run("engine refuses start", func(t *testing.T) {
		tp.attacher.reset()
		if status, _ := tp.do(t, http.MethodPost, "/v1.41/containers/nosuch/start", ""); status != http.StatusNotFound {
			t.Fatalf("start: %d, want the Engine's 404", status)
		}
		if got := tp.attacher.Calls(); len(got) != 0 {
			t.Errorf("attach calls %+v, want none", got)
		}
	})
	t.Run("already running", func(t *testing.T) {
		tp.attacher.mu.Lock()
		tp.attacher.calls = nil
		tp.attacher.err = errors.New("already attached with 10.32.0.1/12")
		tp.attacher.mu.Unlock()
		id := create(t, "running", "")
		fe.mu.Lock()
		fe.startStatus = http.StatusNotModified
		fe.mu.Unlock()
		defer func() {
			fe.mu.Lock()
			fe.startStatus = http.StatusNoContent
			fe.mu.Unlock()
			tp.attacher.mu.Lock()
			tp.attacher.err = nil
			tp.attacher.mu.Unlock()
		}()
		if status, _ := tp.do(t, http.MethodPost, "/v1.41/containers/running/start", ""); status != http.StatusNotModified {
			t.Fatalf("start: %d, want the Engine's 304 (a failed attach of a running container is only logged)", status)
		}
		if got := tp.attacher.Calls(); len(got) != 1 || got[0].ID != id {
			t.Errorf("attach calls %+v, want one for %s (it may be waiting for ethwe)", got, id)
		}
		fe.mu.Lock()
		killed := fe.killed
		fe.mu.Unlock()
		if reflectContains(killed, id) {
			t.Errorf("a running container was killed")
		}
	})
	t.Run("attach fails: killed, error answered", func(t *testing.T) {
		id := create(t, "doomed", `,"Env":["WEAVE_CIDR=10.2.1.4/24"]`)
		tp.attacher.mu.Lock()
		tp.attacher.calls = nil
		// As the daemon words it: by ID.
		tp.attacher.err = errors.New("attach " + id + ": address 10.2.1.4/24 already used by c2")
		tp.attacher.mu.Unlock()
		defer func() {
			tp.attacher.mu.Lock()
			tp.attacher.err = nil
			tp.attacher.mu.Unlock()
		}()
		status, out := tp.do(t, http.MethodPost, "/v1.41/containers/doomed/start", "")
		if status != http.StatusInternalServerError {
			t.Fatalf("start: %d %s, want 500", status, out)
		}
		var m struct{ Message string }
		json.Unmarshal([]byte(out), &m)
		if want := "weave: attach doomed: address 10.2.1.4/24 already used by c2"; m.Message != want {
			t.Errorf("message %q, want %q", m.Message, want)
		}
		fe.mu.Lock()
		killed := fe.killed
		fe.mu.Unlock()
		if !reflectContains(killed, id) {
			t.Errorf("killed %q, want %s", killed, id)
		}
	})
	t.Run("restart forwarded", func(t *testing.T) {
		tp.attacher.reset()
		if status, out := tp.do(t, http.MethodPost, "/v1.41/containers/web/restart?t=1", ""); status != http.StatusNoContent {
			t.Fatalf("restart: %d %s", status, out)
		}
		if !fe.saw("POST /containers/web/restart") {
			t.Error("the Engine did not get the restart")
		}
		if got := tp.attacher.Calls(); len(got) != 0 {
			t.Errorf("attach calls %+v, want none (restarts are the router's)", got)
		}
	})
	t.Run("inspect is the Engine's answer", func(t *testing.T) {
		status, out := tp.do(t, http.MethodGet, "/v1.41/containers/web/json", "")
		if status != http.StatusOK || !strings.Contains(out, `"/.weave/weave"`) {
			t.Fatalf("inspect: %d %s", status, out)
		}
	})
}

func reflectContains(s []string, v string) bool {
	for _, e := range s {
		if e == v {
			return true
		}
	}
	return false
}

// TestStreaming: a response body reaches the client as the Engine writes
// it, not when it ends.
func TestStreaming(t *testing.T) {
	fe := newFakeEngine(t)
	tp := startProxy(t, "unix://"+fe.path)
	resp, err := tp.client.Get("http://docker/v1.41/slow")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	br := bufio.NewReader(resp.Body)
	got := make(chan string, 1)
	go func() {
		line, _ := br.ReadString('\n')
		got <- line
	}()
	select {
	case line := <-got:
		if line != "first\n" {
			t.Fatalf("first line %q", line)
		}
	case <-time.After(5 * time.Second):
		close(fe.release)
		t.Fatal("the first chunk did not arrive while the Engine held the stream open")
	}
	close(fe.release)
	rest, err := io.ReadAll(br)
	if err != nil {
		t.Fatal(err)
	}
	if want := "chunk 0\nchunk 1\nchunk 2\n"; string(rest) != want {
		t.Errorf("rest %q, want %q", rest, want)
	}
}

// TestHijack: attach through the proxy, with Upgrade (the CLI today) and
// without (old API versions): bytes flow both ways while the stream is
// open, and the client's half-close reaches the Engine without cutting
// the Engine's answer to it.
func TestHijack(t *testing.T) {
	fe := newFakeEngine(t)
	fe.addImage("busybox", imageConfig{Cmd: []string{"sh"}})
	tp := startProxy(t, "unix://"+fe.path)
	if status, out := tp.do(t, http.MethodPost, "/v1.41/containers/create?name=c", `{"Image":"busybox","Env":["WEAVE_CIDR=none"]}`); status != http.StatusCreated {
		t.Fatalf("create: %d %s", status, out)
	}
	for _, tt := range []struct {
		name, headers string
		wantStatus    int
	}{
		{name: "upgrade", headers: "Connection: Upgrade\r\nUpgrade: tcp\r\n", wantStatus: http.StatusSwitchingProtocols},
		{name: "raw stream", headers: "", wantStatus: http.StatusOK},
	} {
		t.Run(tt.name, func(t *testing.T) {
			req := "POST /v1.41/containers/c/attach?stream=1&stdin=1&stdout=1 HTTP/1.1\r\nHost: docker\r\nContent-Type: text/plain\r\n" + tt.headers + "\r\n"
			conn, br, resp := rawRequest(t, tp.socket, req)
			if resp.StatusCode != tt.wantStatus {
				t.Fatalf("status %d, want %d", resp.StatusCode, tt.wantStatus)
			}
			if ct := resp.Header.Get("Content-Type"); ct != "application/vnd.docker.raw-stream" {
				t.Errorf("Content-Type %q", ct)
			}
			for _, msg := range []string{"hello\n", "again\n"} {
				io.WriteString(conn, msg)
				buf := make([]byte, len(msg))
				if _, err := io.ReadFull(br, buf); err != nil || string(buf) != msg {
					t.Fatalf("echo: %q %v, want %q", buf, err, msg)
				}
			}
			if err := conn.CloseWrite(); err != nil {
				t.Fatal(err)
			}
			rest, err := io.ReadAll(br)
			if err != nil {
				t.Fatal(err)
			}
			if string(rest) != "bye\n" {
				t.Errorf("after half-close got %q, want %q", rest, "bye\n")
			}
		})
	}
	t.Run("engine error is an ordinary answer", func(t *testing.T) {
		req := "POST /v1.41/containers/nosuch/attach?stream=1 HTTP/1.1\r\nHost: docker\r\nConnection: Upgrade\r\nUpgrade: tcp\r\n\r\n"
		_, _, resp := rawRequest(t, tp.socket, req)
		if resp.StatusCode != http.StatusNotFound {
			t.Fatalf("status %d, want 404", resp.StatusCode)
		}
		body, _ := io.ReadAll(resp.Body)
		if !strings.Contains(string(body), "No such container") {
			t.Errorf("body %q", body)
		}
	})
}

// TestCloseCutsStreams: Close returns while a hijacked stream and a long
// response are open, and cuts them.
func TestCloseCutsStreams(t *testing.T) {
	fe := newFakeEngine(t)
	fe.addImage("busybox", imageConfig{Cmd: []string{"sh"}})
	tp := startProxy(t, "unix://"+fe.path)
	tp.do(t, http.MethodPost, "/v1.41/containers/create?name=c", `{"Image":"busybox"}`)
	conn, br, resp := rawRequest(t, tp.socket, "POST /containers/c/attach HTTP/1.1\r\nHost: docker\r\nConnection: Upgrade\r\nUpgrade: tcp\r\n\r\n")
	if resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("status %d", resp.StatusCode)
	}
	slow, err := tp.client.Get("http://docker/slow")
	if err != nil {
		t.Fatal(err)
	}
	defer slow.Body.Close()
	done := make(chan error, 1)
	go func() { done <- tp.Close() }()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Close: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Close blocked on open streams")
	}
	conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := br.ReadByte(); !isClosed(err) {
		t.Errorf("hijacked stream after Close: %v, want EOF", err)
	}
	if _, err := os.Lstat(tp.socket); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("socket after Close: %v, want it gone", err)
	}
	if _, err := io.ReadAll(slow.Body); err == nil {
		t.Errorf("long response ended cleanly after Close, want it cut")
	}
}

func TestSocketMode(t *testing.T) {
	tests := []struct {
		upstream, want fs.FileMode
	}{
		{0o660, 0o660},
		{0o666, 0o660},
		{0o777, 0o660},
		{0o600, 0o600},
		{0o640, 0o640},
	}
	for _, tt := range tests {
		t.Run(tt.upstream.String(), func(t *testing.T) {
			fe := newFakeEngine(t)
			if err := os.Chmod(fe.path, tt.upstream); err != nil {
				t.Fatal(err)
			}
			gid := 4242
			if err := os.Lchown(fe.path, -1, gid); err != nil {
				gid = os.Getgid() // not root: the group stays ours
			}
			tp := startProxy(t, "unix://"+fe.path)
			st, err := os.Lstat(tp.socket)
			if err != nil {
				t.Fatal(err)
			}
			if st.Mode().Type() != fs.ModeSocket {
				t.Fatalf("%s is %v, not a socket", tp.socket, st.Mode())
			}
			if got := st.Mode().Perm(); got != tt.want {
				t.Errorf("mode %v, want %v", got, tt.want)
			}
			if got := int(st.Sys().(*syscall.Stat_t).Gid); got != gid {
				t.Errorf("group %d, want the Engine socket's %d", got, gid)
			}
			// Nothing else is left in the directory (the private one it
			// was made in).
			entries, _ := os.ReadDir(filepath.Dir(tp.socket))
			for _, e := range entries {
				if strings.HasPrefix(e.Name(), ".weave-proxy-") {
					t.Errorf("left behind: %s", e.Name())
				}
			}
		})
	}
}

func TestListenRefuses(t *testing.T) {
	fe := newFakeEngine(t)
	t.Run("socket in use", func(t *testing.T) {
		tp := startProxy(t, "unix://"+fe.path)
		p, err := New(Config{Socket: tp.socket, Upstream: "unix://" + fe.path, WaitBinary: tp.cfg.WaitBinary, Attacher: &fakeAttacher{}})
		if err != nil {
			t.Fatal(err)
		}
		defer p.Close()
		if err := p.Listen(); err == nil || !strings.Contains(err.Error(), "in use") {
			t.Errorf("second Listen: %v, want in use", err)
		}
	})
	t.Run("stale socket replaced, regular file refused", func(t *testing.T) {
		dir := socketDir(t)
		wait := filepath.Join(dir, "weave")
		os.WriteFile(wait, nil, 0o755)
		stale := filepath.Join(dir, "docker.sock")
		p1, err := New(Config{Socket: stale, Upstream: "unix://" + fe.path, WaitBinary: wait, Attacher: &fakeAttacher{}})
		if err != nil {
			t.Fatal(err)
		}
		if err := p1.Listen(); err != nil {
			t.Fatal(err)
		}
		// Leave the socket file behind as a crashed router would.
		p1.ln.UnixListener.Close()
		p2, err := New(Config{Socket: stale, Upstream: "unix://" + fe.path, WaitBinary: wait, Attacher: &fakeAttacher{}})
		if err != nil {
			t.Fatal(err)
		}
		if err := p2.Listen(); err != nil {
			t.Errorf("Listen over a stale socket: %v", err)
		}
		p2.Close()
		p1.Close()
		file := filepath.Join(dir, "file")
		os.WriteFile(file, nil, 0o600)
		p3, _ := New(Config{Socket: file, Upstream: "unix://" + fe.path, WaitBinary: wait, Attacher: &fakeAttacher{}})
		if err := p3.Listen(); err == nil || !strings.Contains(err.Error(), "not a socket") {
			t.Errorf("Listen over a file: %v, want not a socket", err)
		}
		p3.Close()
	})
}

func TestNewRefuses(t *testing.T) {
	dir := socketDir(t)
	wait := filepath.Join(dir, "weave")
	os.WriteFile(wait, nil, 0o755)
	sock := filepath.Join(dir, "docker.sock")
	tests := []struct {
		name string
		cfg  Config
		want string
	}{
		{"tcp upstream", Config{Socket: sock, Upstream: "tcp://127.0.0.1:2375", WaitBinary: wait, Attacher: &fakeAttacher{}}, "only unix:// is supported"},
		{"ssh upstream", Config{Socket: sock, Upstream: "ssh://host", WaitBinary: wait, Attacher: &fakeAttacher{}}, "only unix:// is supported"},
		{"relative upstream", Config{Socket: sock, Upstream: "unix://docker.sock", WaitBinary: wait, Attacher: &fakeAttacher{}}, "not an absolute"},
		{"upstream is the proxy", Config{Socket: sock, Upstream: "unix://" + sock, WaitBinary: wait, Attacher: &fakeAttacher{}}, "the proxy's own socket"},
		{"no wait binary", Config{Socket: sock, Attacher: &fakeAttacher{}}, "wait binary"},
		{"missing wait binary", Config{Socket: sock, WaitBinary: filepath.Join(dir, "nosuch"), Attacher: &fakeAttacher{}}, "no such file"},
		{"no attacher", Config{Socket: sock, WaitBinary: wait}, "no attacher"},
		{"no socket", Config{WaitBinary: wait, Attacher: &fakeAttacher{}}, "no socket"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := New(tt.cfg)
			if err == nil {
				p.Close()
				t.Fatalf("New succeeded, want an error with %q", tt.want)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("New: %v, want %q", err, tt.want)
			}
		})
	}
}

// TestServeStopsWithContext: Serve returns nil when its context ends.
func TestServeStopsWithContext(t *testing.T) {
	fe := newFakeEngine(t)
	tp := startProxy(t, "unix://"+fe.path)
	p, err := New(Config{Socket: tp.socket + "2", Upstream: "unix://" + fe.path, WaitBinary: tp.cfg.WaitBinary, Attacher: &fakeAttacher{}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Serve(ctx) }()
	deadline := time.Now().Add(5 * time.Second)
	for {
		if _, err := os.Stat(tp.socket + "2"); err == nil || time.Now().After(deadline) {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	c := unixClient(tp.socket + "2")
	resp, err := c.Get("http://docker/_ping")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	c.CloseIdleConnections()
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Serve: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Serve did not return")
	}
}
