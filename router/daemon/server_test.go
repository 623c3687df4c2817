package daemon

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"go.uber.org/goleak"

	"github.com/weavelab/weave/router/api"
)

func TestMain(m *testing.M) {
	if os.Getenv(fakeRouterEnv) != "" {
		os.Exit(fakeRouterMain())
	}
	goleak.VerifyTestMain(m)
}

// fakeControl records calls and answers from its fields.
type fakeControl struct {
	mu      sync.Mutex
	calls   []string
	status  api.Status
	attach  []string
	ps      []api.Container
	failAll error
}

func (f *fakeControl) record(format string, args ...any) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, fmt.Sprintf(format, args...))
	return f.failAll
}

func (f *fakeControl) Calls() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.calls)
}

func (f *fakeControl) Status(ctx context.Context) (api.Status, error) {
	return f.status, f.record("status")
}
func (f *fakeControl) Report(ctx context.Context) (api.Report, error) {
	return api.Report{Status: f.status, Config: map[string]any{"port": 6783}}, f.record("report")
}
func (f *fakeControl) Connect(ctx context.Context, peers []string, replace bool) error {
	return f.record("connect %v %v", peers, replace)
}
func (f *fakeControl) Forget(ctx context.Context, peers []string) error {
	return f.record("forget %v", peers)
}
func (f *fakeControl) AttachIface(ctx context.Context, c, _ string, addrs []string, withoutDNS bool) ([]string, error) {
	return f.Attach(ctx, c, addrs, withoutDNS)
}

func (f *fakeControl) Attach(ctx context.Context, c string, addrs []string, withoutDNS bool) ([]string, error) {
	return f.attach, f.record("attach %s %v", c, addrs)
}
func (f *fakeControl) Detach(ctx context.Context, c string, addrs []string) error {
	return f.record("detach %s %v", c, addrs)
}
func (f *fakeControl) PS(ctx context.Context, cs []string) ([]api.Container, error) {
	return f.ps, f.record("ps %v", cs)
}
func (f *fakeControl) Expose(ctx context.Context, addrs []string) ([]string, error) {
	return addrs, f.record("expose %v", addrs)
}
func (f *fakeControl) Hide(ctx context.Context, addrs []string) error {
	return f.record("hide %v", addrs)
}

func (f *fakeControl) RmPeer(ctx context.Context, peers []string) ([]api.RmPeerResult, error) {
	return nil, f.record("rmpeer %v", peers)
}

func (f *fakeControl) RemoveNetworks(ctx context.Context) (api.RemoveNetworksResponse, error) {
	return api.RemoveNetworksResponse{Removed: []string{}}, nil
}

func (f *fakeControl) Leave(ctx context.Context) (api.LeaveResponse, error) {
	return api.LeaveResponse{}, f.record("leave")
}

func (f *fakeControl) DNSAdd(ctx context.Context, req api.DNSRequest) ([]api.DNSEntry, error) {
	return nil, f.record("dns-add %+v", req)
}

func (f *fakeControl) DNSRemove(ctx context.Context, req api.DNSRequest) ([]api.DNSEntry, error) {
	return nil, f.record("dns-remove %+v", req)
}

func (f *fakeControl) DNSLookup(ctx context.Context, name string) ([]string, error) {
	return nil, f.record("dns-lookup %s", name)
}

// startServer serves ctl on a socket in a temp dir until the test ends (or
// the API's stop, which is reported on the returned channel).
func startServer(t *testing.T, ctl Control) (*api.Client, string, <-chan struct{}) {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "weave.sock")
	ln, err := ListenSocket(sock)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	stopped := make(chan struct{})
	var once sync.Once
	stop := func() { once.Do(func() { close(stopped) }) }
	log := slog.New(slog.DiscardHandler)
	done := make(chan error, 1)
	go func() { done <- serveHTTP(ctx, ln, NewHandler(ctl, "9.9.9", stop, log), log) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
		os.Remove(sock)
	})
	return api.NewClient(sock), sock, stopped
}

func TestServerEndpoints(t *testing.T) {
	f := &fakeControl{
		status: sampleAPIStatus(),
		attach: []string{"10.2.1.4/24"},
		ps:     []api.Container{{ID: "netns:c1", MAC: "0a:58:00:00:00:01", Addrs: []string{"10.2.1.4/24"}}},
	}
	c, sock, _ := startServer(t, f)
	ctx := context.Background()

	fi, err := os.Stat(sock)
	if err != nil || fi.Mode().Perm() != 0o600 || fi.Mode()&os.ModeSocket == 0 {
		t.Fatalf("socket mode = %v, %v; want a 0600 socket", fi.Mode(), err)
	}
	if v, err := c.Version(ctx); err != nil || v.Version != "9.9.9" || v.PID != os.Getpid() {
		t.Errorf("version = %+v, %v", v, err)
	}
	st, err := c.Status(ctx)
	if err != nil || st.Peer != f.status.Peer || len(st.Connections) != 1 {
		t.Errorf("status = %+v, %v", st, err)
	}
	if err := c.Connect(ctx, []string{"10.0.0.1:6783"}, true); err != nil {
		t.Error(err)
	}
	if err := c.Forget(ctx, []string{"10.0.0.1:6783"}); err != nil {
		t.Error(err)
	}
	if got, err := c.Attach(ctx, "netns:c1", []string{"10.2.1.4/24"}); err != nil || !slices.Equal(got, f.attach) {
		t.Errorf("attach = %v, %v", got, err)
	}
	if err := c.Detach(ctx, "netns:c1", nil); err != nil {
		t.Error(err)
	}
	if got, err := c.PS(ctx, []string{"netns:c1", "pid:7"}); err != nil || len(got) != 1 || got[0].ID != "netns:c1" {
		t.Errorf("ps = %v, %v", got, err)
	}
	if got, err := c.Expose(ctx, []string{"10.2.1.254/24"}); err != nil || !slices.Equal(got, []string{"10.2.1.254/24"}) {
		t.Errorf("expose = %v, %v", got, err)
	}
	if err := c.Hide(ctx, nil); err != nil {
		t.Error(err)
	}
	raw, err := c.Report(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var rep api.Report
	if err := json.Unmarshal(raw, &rep); err != nil || rep.Status.Peer != f.status.Peer {
		t.Errorf("report = %s, %v", raw, err)
	}
	want := []string{
		"status",
		"connect [10.0.0.1:6783] true",
		"forget [10.0.0.1:6783]",
		"attach netns:c1 [10.2.1.4/24]",
		"detach netns:c1 []",
		"ps [netns:c1 pid:7]",
		"expose [10.2.1.254/24]",
		"hide []",
		"report",
	}
	if got := f.Calls(); !slices.Equal(got, want) {
		t.Errorf("calls:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

func TestServerStatusSections(t *testing.T) {
	f := &fakeControl{status: sampleAPIStatus()}
	_, sock, _ := startServer(t, f)
	hc := unixHTTP(sock)
	for _, s := range api.Sections {
		resp, err := hc.Get("http://weave/status/" + s)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		want := byte('[')
		if s == "ipam" || s == "dns" {
			want = '{'
		}
		if resp.StatusCode != 200 || !json.Valid(body) || body[0] != want {
			t.Errorf("/status/%s: %d %s", s, resp.StatusCode, body)
		}
	}
	resp, err := hc.Get("http://weave/status/bogus")
	if err != nil {
		t.Fatal(err)
	}
	var e api.Error
	json.NewDecoder(resp.Body).Decode(&e)
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound || !strings.Contains(e.Message, "unknown status section") {
		t.Errorf("/status/bogus: %d %q", resp.StatusCode, e.Message)
	}
}

func TestServerErrors(t *testing.T) {
	f := &fakeControl{failAll: errors.New("attach netns:c1: address 10.2.1.4/24\nalready used by c2")}
	c, sock, _ := startServer(t, f)
	ctx := context.Background()
	_, err := c.Attach(ctx, "netns:c1", []string{"10.2.1.4/24"})
	var re *api.RemoteError
	if !errors.As(err, &re) || re.StatusCode != http.StatusBadRequest {
		t.Fatalf("err = %v, want a 400 RemoteError", err)
	}
	if want := "attach netns:c1: address 10.2.1.4/24 already used by c2"; err.Error() != want {
		t.Errorf("err = %q, want one line %q", err, want)
	}

	hc := unixHTTP(sock)
	for _, tc := range []struct {
		method, path, body string
		code               int
	}{
		{"GET", "/nope", "", http.StatusNotFound},
		{"POST", "/connect", "{not json", http.StatusBadRequest},
		{"POST", "/connect", `{"peers":["a"],"extra":1}`, http.StatusBadRequest},
		{"GET", "/connect", "", http.StatusNotFound}, // wrong method: no such endpoint
	} {
		req, _ := http.NewRequest(tc.method, "http://weave"+tc.path, strings.NewReader(tc.body))
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != tc.code {
			t.Errorf("%s %s %q: %d, want %d", tc.method, tc.path, tc.body, resp.StatusCode, tc.code)
		}
	}
}

func TestServerStop(t *testing.T) {
	c, _, stopped := startServer(t, &fakeControl{})
	if err := c.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	<-stopped // the stop function ran
	if err := c.Stop(context.Background()); err != nil {
		t.Fatalf("second stop: %v", err) // still answering; stop runs once
	}
}

func unixHTTP(sock string) *http.Client {
	return &http.Client{Transport: &http.Transport{
		DisableKeepAlives: true,
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", sock)
		},
	}}
}

func sampleAPIStatus() api.Status {
	var st api.Status
	json.Unmarshal([]byte(`{
		"version": "9.9.9", "pid": 1,
		"peer": {"name": "0a:00:00:00:00:01", "nickname": "h1", "uid": 11},
		"peers": [{"name": "0a:00:00:00:00:01", "nickname": "h1", "uid": 11, "version": 1, "conns": []}],
		"connections": [{"peer": {"name": "0a:00:00:00:00:02", "nickname": "h2", "uid": 12},
			"addr": "10.0.0.2:6783", "outbound": true, "state": "established"}],
		"targets": [{"addr": "10.0.0.2:6783"}]
	}`), &st)
	return st
}
