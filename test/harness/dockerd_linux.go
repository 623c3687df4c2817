package harness

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Dockerd is a Docker Engine of a host's own, running in the host's network
// namespace (a network driver's interfaces must be made in the Engine's
// namespace). It has its own data root, exec root, pid file, socket and an
// empty config file, all under one temporary directory, and no bridge
// network, iptables rules or masquerading, so that it leaves the machine's
// Engine alone.
type Dockerd struct {
	// Host is its address for the docker CLI and the router (DOCKER_HOST).
	Host string
	dir  string
	t    testing.TB
	cmd  *exec.Cmd
	done chan struct{}
}

// dockerdStartTimeout bounds the wait for a new Engine to answer.
const dockerdStartTimeout = 60 * time.Second

// StartDockerd starts an Engine in h's namespace with nsenter --net (not
// ip netns exec, which remounts /sys and hides the cgroups), waits until it
// answers, and points h's weave commands at it ($DOCKER_HOST). The test's
// cleanup removes its containers, stops it by its PID (SIGTERM, then
// SIGKILL) and removes its directory; on failure it logs the Engine's log.
func (h *Host) StartDockerd() *Dockerd {
	t := h.lan.t
	t.Helper()
	if _, err := exec.LookPath("dockerd"); err != nil {
		t.Fatalf("the plugin tests need dockerd in PATH: %v", err)
	}
	dir, err := os.MkdirTemp("", "h8-"+h.HostName+"-dockerd-")
	if err != nil {
		t.Fatal(err)
	}
	conf := filepath.Join(dir, "daemon.json")
	if err := os.WriteFile(conf, []byte("{}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	logf, err := os.Create(filepath.Join(dir, "dockerd.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	d := &Dockerd{Host: "unix://" + filepath.Join(dir, "docker.sock"), dir: dir, t: t, done: make(chan struct{})}
	d.cmd = exec.Command("nsenter", "--net=/var/run/netns/"+h.Name, "dockerd",
		"--data-root", filepath.Join(dir, "data"),
		"--exec-root", filepath.Join(dir, "exec"),
		"--pidfile", filepath.Join(dir, "docker.pid"),
		"-H", d.Host,
		"--config-file", conf,
		"--bridge=none", "--iptables=false", "--ip-masq=false",
		// vfs: no overlay mounts to leak if a test is killed.
		"--storage-driver=vfs")
	d.cmd.Stdout, d.cmd.Stderr = logf, logf
	if err := d.cmd.Start(); err != nil {
		os.RemoveAll(dir)
		t.Fatalf("start dockerd in %s: %v", h.Name, err)
	}
	go func() {
		d.cmd.Wait()
		close(d.done)
	}()
	t.Cleanup(d.stop)
	deadline := time.Now().Add(dockerdStartTimeout)
	for {
		r := d.Docker(context.Background(), "version", "--format", "{{.Server.Version}}")
		if r.OK() {
			break
		}
		select {
		case <-d.done:
			t.Fatalf("dockerd in %s exited: %s", h.Name, d.logTail(30))
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("dockerd in %s does not answer after %s: %s\n%s", h.Name, dockerdStartTimeout, r, d.logTail(30))
		}
		time.Sleep(200 * time.Millisecond)
	}
	h.DockerHost = d.Host
	return d
}

// Docker runs the docker CLI against the Engine (at most DefaultTimeout
// unless ctx has a deadline).
func (d *Dockerd) Docker(ctx context.Context, args ...string) Result {
	r := Docker(ctx, append([]string{"-H", d.Host}, args...)...)
	r.Args = append([]string{"docker"}, args...)
	return r
}

// MustDocker is Docker that logs the command and fails the test unless it
// exits 0; it returns the standard output trimmed.
func (d *Dockerd) MustDocker(args ...string) string {
	d.t.Helper()
	r := d.Docker(context.Background(), args...)
	if !r.OK() {
		d.t.Fatalf("%s", r)
	}
	d.t.Logf("%s", r)
	return strings.TrimSpace(r.Stdout)
}

// LoadImage copies image ref from the machine's Engine into this one
// (docker save | docker load).
func (d *Dockerd) LoadImage(ref string) {
	d.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), DefaultTimeout)
	defer cancel()
	save := exec.CommandContext(ctx, "docker", "save", ref)
	load := exec.CommandContext(ctx, "docker", "-H", d.Host, "load", "-q")
	pipe, err := save.StdoutPipe()
	if err != nil {
		d.t.Fatal(err)
	}
	load.Stdin = pipe
	var serr, lerr bytes.Buffer
	save.Stderr, load.Stderr = &serr, &lerr
	if err := save.Start(); err != nil {
		d.t.Fatalf("docker save %s: %v", ref, err)
	}
	lout, loadErr := load.Output()
	saveErr := save.Wait()
	if err := errors.Join(saveErr, loadErr); err != nil {
		d.t.Fatalf("docker save %s | docker load: %v: %s %s", ref, err, serr.String(), lerr.String())
	}
	d.t.Logf("%s: %s", d.Host, strings.TrimSpace(string(lout)))
}

func (d *Dockerd) logTail(n int) string {
	b, _ := os.ReadFile(filepath.Join(d.dir, "dockerd.log"))
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// stop removes the Engine's containers (so that their shims end), stops
// dockerd by its PID and removes its directory.
func (d *Dockerd) stop() {
	t := d.t
	if d.t.Failed() {
		t.Logf("==== dockerd %s log tail ====\n%s", d.Host, d.logTail(40))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if r := d.Docker(ctx, "ps", "-aq"); r.OK() {
		if ids := strings.Fields(r.Stdout); len(ids) > 0 {
			if r := d.Docker(ctx, append([]string{"rm", "-f"}, ids...)...); !r.OK() {
				t.Logf("cleanup: %s", r)
			}
		}
	}
	_ = d.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-d.done:
	case <-time.After(20 * time.Second):
		t.Logf("cleanup: dockerd %d did not stop on SIGTERM; killing it", d.cmd.Process.Pid)
		_ = d.cmd.Process.Kill()
		<-d.done
	}
	if err := os.RemoveAll(d.dir); err != nil {
		t.Logf("cleanup: %v", err)
	}
}

// PluginName is the Docker plugin name the harness gives h's router
// unless a test names another: unique to the host, since the Engine's
// plugin directory is the machine's.
func (h *Host) PluginName() string { return "weave-" + h.Name }

// PluginSocket is the socket of PluginName.
func (h *Host) PluginSocket() string {
	return filepath.Join("/run/docker/plugins", h.PluginName()+".sock")
}

// String names the Engine in messages.
func (d *Dockerd) String() string { return fmt.Sprintf("dockerd(%s)", d.Host) }
