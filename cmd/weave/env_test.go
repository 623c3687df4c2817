package main

import (
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestEnvNeedsAProxy: weave env prints the export line only when something
// answers on the proxy's socket; otherwise it fails and prints nothing for
// eval to run, also for a socket file left by a killed router.
func TestEnvNeedsAProxy(t *testing.T) {
	runDir, _ := tempDirs(t)
	t.Setenv("DOCKER_HOST", "unix:///var/run/docker.sock")
	sock := filepath.Join(runDir, "docker.sock")
	wantError(t, "no Docker API proxy answers on "+sock+" (is the router running, launched without --no-proxy and --no-docker?)", "env")

	if err := os.MkdirAll(runDir, 0o755); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	code, out, errs := runCLI(t, "env")
	want := "export DOCKER_HOST=unix://" + sock + " ORIG_DOCKER_HOST=unix:///var/run/docker.sock\n"
	if code != 0 || out != want || errs != "" {
		t.Errorf("weave env with a proxy: exit %d, stdout %q, stderr %q; want %q", code, out, errs, want)
	}

	// Closing a Go unix listener removes its file; leave one behind as a
	// killed router would.
	ln.(*net.UnixListener).SetUnlinkOnClose(false)
	ln.Close()
	if _, err := os.Stat(sock); err != nil {
		t.Fatal(err)
	}
	wantError(t, "no Docker API proxy answers on "+sock+" (is the router running?)", "env")

	// --restore needs no router.
	t.Setenv("ORIG_DOCKER_HOST", "unix:///var/run/docker.sock")
	if code, out, _ := runCLI(t, "env", "--restore"); code != 0 || !strings.HasPrefix(out, "export DOCKER_HOST=unix:///var/run/docker.sock;") {
		t.Errorf("weave env --restore: exit %d, stdout %q", code, out)
	}
}
