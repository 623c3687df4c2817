package harness

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestDockerImage builds the test image and checks its programs on
// Docker's default bridge (local to this machine): probe reads db's
// greeting, web answers / and relays /db (502 when the db is down),
// wait-iface execs its command once the interface is up and gives up on
// one that never comes, and each server exits 0 promptly on docker stop.
func TestDockerImage(t *testing.T) {
	img := DockerImage(t)
	if again := DockerImage(t); again != img {
		t.Fatalf("second DockerImage = %s, first %s", again, img)
	}
	if !strings.HasPrefix(img, ImageRepo+":") {
		t.Fatalf("image %q not in %s", img, ImageRepo)
	}
	ctx := context.Background()

	start := func(args ...string) (id, ip string) {
		t.Helper()
		id = MustDocker(t, append([]string{"run", "-d", img}, args...)...)
		t.Cleanup(func() { RemoveContainer(t, id) })
		ip = MustDocker(t, "inspect", "--format", "{{.NetworkSettings.IPAddress}}", id)
		if ip == "" {
			t.Fatalf("container %s has no address on the default bridge", id[:12])
		}
		return id, ip
	}
	probe := func(addr, want string) {
		t.Helper()
		WaitFor(t, 20*time.Second, func() (bool, string) {
			r := Docker(ctx, "run", "--rm", img, "probe", addr)
			got := strings.TrimSpace(r.Stdout)
			return r.OK() && got == want, fmt.Sprintf("want %q; %s", want, r)
		})
	}
	get := func(url string) (int, string) {
		t.Helper()
		c := http.Client{Timeout: 5 * time.Second}
		var code int
		var body string
		WaitFor(t, 20*time.Second, func() (bool, string) {
			resp, err := c.Get(url)
			if err != nil {
				return false, err.Error()
			}
			defer resp.Body.Close()
			b, err := io.ReadAll(resp.Body)
			if err != nil {
				return false, err.Error()
			}
			code, body = resp.StatusCode, string(b)
			return true, ""
		})
		return code, body
	}

	dbID, dbIP := start("db")
	greeting := fmt.Sprintf("db %s %s", dbID[:12], dbIP)
	probe(dbIP+":7000", greeting)
	if r := Docker(ctx, "run", "--rm", img, "probe", "127.0.0.1:1"); r.OK() || r.ExitCode != 1 {
		t.Errorf("probe of a closed port should exit 1: %s", r)
	}

	webID, webIP := start("web", "-db", dbIP+":7000")
	if code, body := get("http://" + webIP + "/"); code != 200 || body != "web "+webID[:12]+"\n" {
		t.Errorf("GET / = %d %q", code, body)
	}
	if code, body := get("http://" + webIP + "/db"); code != 200 || body != greeting+"\n" {
		t.Errorf("GET /db = %d %q, want %q", code, body, greeting)
	}
	_, badIP := start("web", "-listen", ":8080", "-db", "127.0.0.1:1")
	if code, body := get("http://" + badIP + ":8080/db"); code != http.StatusBadGateway || !strings.Contains(body, "refused") {
		t.Errorf("GET /db with the db down = %d %q, want 502 connection refused", code, body)
	}

	waitID, waitIP := start("wait-iface", "-name", "eth0", "--", "/weavetest", "db", "-listen", ":7001")
	probe(waitIP+":7001", "db "+waitID[:12]+" "+waitIP)
	r := Docker(ctx, "run", "--rm", img, "wait-iface", "-name", "nosuch0", "-timeout", "300ms", "--", "/weavetest", "sleep")
	if r.ExitCode != 1 || !strings.Contains(r.Stderr, "interface nosuch0 not up after 300ms") {
		t.Errorf("wait-iface for a missing interface: %s", r)
	}

	sleepID, _ := start("sleep")
	for _, id := range []string{dbID, webID, sleepID} {
		// Without a SIGTERM handler pid 1 ignores the signal and docker
		// kills it after the timeout: exit code 137, not 0. The time it
		// takes is not asserted (a loaded machine stretches it).
		MustDocker(t, "stop", "-t", "60", id)
		if code := MustDocker(t, "inspect", "--format", "{{.State.ExitCode}}", id); code != "0" {
			t.Errorf("container %s exited %s after SIGTERM, want 0 (137 means SIGTERM was not handled)", id[:12], code)
		}
	}
}
