package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/weavelab/weave/mesh/handshake"
	"github.com/weavelab/weave/router/api"
)

// runCLI runs one command line with $WEAVE_RUN_DIR and $WEAVE_STATE_DIR in
// temp dirs (unless set by the test) and returns exit code and output.
func runCLI(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb strings.Builder
	code = run(args, &out, &errb)
	return code, out.String(), errb.String()
}

func tempDirs(t *testing.T) (runDir, stateDir string) {
	t.Helper()
	dir := t.TempDir()
	runDir, stateDir = filepath.Join(dir, "run"), filepath.Join(dir, "state")
	t.Setenv("WEAVE_RUN_DIR", runDir)
	t.Setenv("WEAVE_STATE_DIR", stateDir)
	t.Setenv("WEAVE_PASSWORD", "")
	return runDir, stateDir
}

// wantError checks for exit 1 with exactly one line on stderr containing
// want and nothing on stdout.
func wantError(t *testing.T, want string, args ...string) {
	t.Helper()
	code, out, errs := runCLI(t, args...)
	if code != 1 || out != "" || strings.Count(errs, "\n") != 1 || !strings.Contains(errs, want) {
		t.Errorf("weave %s: exit %d, stdout %q, stderr %q; want exit 1 and one line with %q",
			strings.Join(args, " "), code, out, errs, want)
	}
}

func TestNotRunning(t *testing.T) {
	runDir, _ := tempDirs(t)
	msg := fmt.Sprintf("weave is not running (no socket at %s/weave.sock): start it with 'weave launch'", runDir)
	for _, args := range [][]string{
		{"status"}, {"status", "peers", "--json"}, {"report"}, {"connect", "10.0.0.1"}, {"forget", "10.0.0.1"},
		{"attach", "10.2.1.1/24", "netns:c1"}, {"detach", "netns:c1"}, {"ps"}, {"expose", "10.2.1.254/24"},
		{"hide"}, {"stop"}, {"connect", "--replace"},
	} {
		code, out, errs := runCLI(t, args...)
		if code != 1 || out != "" || errs != msg+"\n" {
			t.Errorf("weave %s: exit %d, stdout %q, stderr %q; want exit 1, %q", strings.Join(args, " "), code, out, errs, msg)
		}
	}
}

func TestBadInput(t *testing.T) {
	runDir, stateDir := tempDirs(t)
	wantError(t, `unknown status section "bogus"`, "status", "bogus")
	wantError(t, `unknown status section "bogus": want one of peers, connections, targets`, "status", "bogus", "--json")
	wantError(t, "usage: weave dns-add [IP...] CONTAINER [-h FQDN] | IP... -h FQDN", "dns-add")
	wantError(t, "weave dns-add: addresses without a container need -h FQDN", "dns-add", "10.32.0.1")
	wantError(t, `weave dns-remove: "nope" is not an IP address`, "dns-remove", "nope", "c1")
	wantError(t, "usage: weave dns-lookup NAME", "dns-lookup")
	wantError(t, "usage: weave status", "status", "peers", "targets")
	wantError(t, `bad peer address "10.0.0.1:99999"`, "connect", "10.0.0.1:99999")
	wantError(t, `bad peer address "not_a_host"`, "connect", "10.0.0.1", "not_a_host")
	wantError(t, `bad peer address "1.2.3.999"`, "forget", "1.2.3.999")
	wantError(t, "usage: weave connect", "connect")
	wantError(t, "usage: weave forget", "forget")
	wantError(t, "usage: weave attach", "attach")
	wantError(t, "unknown flag: --bogus", "status", "--bogus")
	wantError(t, "unknown command", "frobnicate")

	// Bad launch input: an error and nothing started or written.
	wantError(t, "--port 0", "launch", "--port", "0")
	wantError(t, "--name", "launch", "--name", "nope")
	wantError(t, "--mtu 10", "launch", "--mtu", "10")
	wantError(t, "--log-level", "launch", "--log-level", "loud")
	wantError(t, `bad peer address "10.0.0.1:x"`, "launch", "10.0.0.1:x")
	wantError(t, "--password-file", "launch", "--password-file", filepath.Join(t.TempDir(), "missing"))
	wantError(t, "only one of --password and --password-file", "launch", "--password", "x", "--password-file", "/dev/null")
	wantError(t, "--ipalloc-range", "router", "--ipalloc-range", "10.0.0.0")
	wantError(t, "--port 0", "launch", "--password", "x", "--port", "0") // no warning first
	for _, d := range []string{runDir, stateDir} {
		if _, err := os.Stat(d); !os.IsNotExist(err) {
			t.Errorf("%s exists after bad launches (err %v)", d, err)
		}
	}
}

func TestHelpForEveryCommand(t *testing.T) {
	tempDirs(t)
	root := newRootCommand(nil, nil)
	for _, c := range root.Commands() {
		code, out, errs := runCLI(t, c.Name(), "--help")
		if code != 0 || !strings.Contains(out, "Usage:") {
			t.Errorf("weave %s --help: exit %d, stdout %q, stderr %q", c.Name(), code, out, errs)
		}
	}
}

func TestVersion(t *testing.T) {
	tempDirs(t)
	code, out, _ := runCLI(t, "version")
	if code != 0 || !strings.HasPrefix(out, "weave "+version+"\nbuilt with go") ||
		!strings.Contains(out, fmt.Sprintf("\nprotocols: handshake %d-%d, datagram 1\n", handshake.MinVersion, handshake.MaxVersion)) || strings.Contains(out, "router") {
		t.Errorf("version: exit %d, %q", code, out)
	}
}

// fakeDaemon answers the API on the run dir's socket like a router whose
// status is st and records connect requests.
func fakeDaemon(t *testing.T, runDir string, st api.Status) *[]api.ConnectRequest {
	t.Helper()
	if err := os.MkdirAll(runDir, 0o755); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("unix", filepath.Join(runDir, "weave.sock"))
	if err != nil {
		t.Fatal(err)
	}
	var connects []api.ConnectRequest
	mux := http.NewServeMux()
	reply := func(w http.ResponseWriter, v any) { json.NewEncoder(w).Encode(v) }
	mux.HandleFunc("GET /version", func(w http.ResponseWriter, r *http.Request) {
		reply(w, api.Version{Version: "fake", PID: 4242})
	})
	mux.HandleFunc("GET /status", func(w http.ResponseWriter, r *http.Request) { reply(w, st) })
	mux.HandleFunc("POST /connect", func(w http.ResponseWriter, r *http.Request) {
		var req api.ConnectRequest
		json.NewDecoder(r.Body).Decode(&req)
		connects = append(connects, req)
		reply(w, struct{}{})
	})
	mux.HandleFunc("POST /attach", func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusBadRequest)
		reply(w, api.Error{Message: "attach netns:c1: no such network namespace"})
	})
	srv := &http.Server{Handler: mux}
	done := make(chan struct{})
	go func() { defer close(done); srv.Serve(ln) }()
	t.Cleanup(func() { srv.Shutdown(context.Background()); <-done })
	return &connects
}

func TestAgainstFakeDaemon(t *testing.T) {
	runDir, _ := tempDirs(t)
	var st api.Status
	json.Unmarshal([]byte(`{"version":"fake","pid":4242,
		"peer":{"name":"0a:00:00:00:00:01","nickname":"h1","uid":1},
		"peers":[{"name":"0a:00:00:00:00:01","nickname":"h1","uid":1,"version":1,"conns":[]}],
		"connections":[],"targets":[{"addr":"10.0.0.2:6783"}]}`), &st)
	connects := fakeDaemon(t, runDir, st)

	wantError(t, "weave is already running (pid 4242)", "launch")
	wantError(t, "attach netns:c1: no such network namespace", "attach", "10.2.1.1/24", "netns:c1")

	code, out, errs := runCLI(t, "status")
	if code != 0 || !strings.Contains(out, "Name: 0a:00:00:00:00:01(h1)") || errs != "" {
		t.Errorf("status: %d %q %q", code, out, errs)
	}
	code, out, _ = runCLI(t, "status", "targets", "--json")
	var ts []api.Target
	if code != 0 || json.Unmarshal([]byte(out), &ts) != nil || len(ts) != 1 || ts[0].Addr != "10.0.0.2:6783" {
		t.Errorf("status targets --json: %d %q", code, out)
	}
	if code, _, errs := runCLI(t, "connect", "--replace", "10.0.0.3", "h4:7000"); code != 0 {
		t.Fatalf("connect: %d %q", code, errs)
	}
	want := api.ConnectRequest{Peers: []string{"10.0.0.3:6783", "h4:7000"}, Replace: true}
	if len(*connects) != 1 || !slices.Equal((*connects)[0].Peers, want.Peers) || !(*connects)[0].Replace {
		t.Errorf("connect requests %+v, want %+v", *connects, want)
	}
	code, out, _ = runCLI(t, "version")
	if code != 0 || !strings.Contains(out, "weave router fake (pid 4242)") {
		t.Errorf("version: %d %q", code, out)
	}
}

func TestRouterArgs(t *testing.T) {
	tempDirs(t)
	root := newRootCommand(nil, nil)
	launch, _, err := root.Find([]string{"launch"})
	if err != nil {
		t.Fatal(err)
	}
	fs := launch.Flags()
	if err := fs.Parse([]string{"--nickname", "n1", "--password", "secret", "--password-file", "/f",
		"--no-discovery", "--no-udp-offload", "--port", "7000", "--launch-timeout", "5s"}); err != nil {
		t.Fatal(err)
	}
	got := routerArgs(fs, []string{"10.0.0.1:6783"})
	want := []string{"router", "--nickname=n1", "--no-discovery=true", "--no-udp-offload=true", "--port=7000", "--", "10.0.0.1:6783"}
	if !slices.Equal(got, want) {
		t.Errorf("router args %q, want %q", got, want)
	}
	for _, a := range got {
		if strings.Contains(a, "secret") || strings.Contains(a, "password") {
			t.Errorf("password leaked into argv: %q", got)
		}
	}
}
