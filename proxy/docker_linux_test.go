package proxy_test

import (
	"bufio"
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

	"github.com/weavelab/weave/proxy"
	"github.com/weavelab/weave/test/harness"
)

// TestDockerCLI runs the real docker CLI against the proxy in front of
// the real Engine. The Attacher is a fake that records its calls and, in
// place of the router, gives the container an "ethwe" (a veth pair inside
// the container's own namespace) with an address, which lets the wait
// binary exec the container's command.
func TestDockerCLI(t *testing.T) {
	const engine = "/var/run/docker.sock"
	if _, err := os.Stat(engine); err != nil {
		t.Fatalf("this test needs the Docker Engine at %s: %v", engine, err)
	}
	image := harness.DockerImage(t)
	weave := harness.Binary(t)
	if out, err := exec.Command(weave, "wait-iface", "--help").CombinedOutput(); err != nil || !strings.Contains(string(out), "wait-iface") {
		t.Fatalf("%s has no wait-iface command (register a.waitIfaceCommand() in cmd/weave/commands.go): %v %s", weave, err, out)
	}
	tp := startRealProxy(t, "unix://"+engine, weave)
	var next atomic.Uint32
	tp.attacher.hook = func(ctx context.Context, id string) error {
		return fakeEthwe(ctx, id, netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 99, 0, byte(2 + next.Add(1))}), 24))
	}
	proxied := func(ctx context.Context, args ...string) harness.Result {
		cmd := exec.CommandContext(ctx, "docker", args...)
		cmd.Env = append(os.Environ(), "DOCKER_HOST=unix://"+tp.socket)
		return runCmd(cmd)
	}
	prefix := fmt.Sprintf("wp-%d-", os.Getpid())
	t.Cleanup(func() {
		ids := harness.Docker(context.Background(), "ps", "-aq", "--filter", "name="+prefix)
		for _, id := range strings.Fields(ids.Stdout) {
			harness.Docker(context.Background(), "rm", "-f", id)
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	mustRun := func(t *testing.T, args ...string) string {
		t.Helper()
		r := proxied(ctx, args...)
		if !r.OK() {
			t.Fatalf("%v\n%s", r.Err, r.Stderr)
		}
		return strings.TrimSpace(r.Stdout)
	}

	t.Run("version", func(t *testing.T) {
		out := mustRun(t, "version", "--format", "{{.Server.APIVersion}}")
		if out == "" {
			t.Error("no server API version through the proxy")
		}
	})

	db := prefix + "db"
	var dbID, dbIP string
	t.Run("run -d: rewritten and attached", func(t *testing.T) {
		tp.attacher.reset()
		dbID = mustRun(t, "run", "-d", "--name", db, "-e", "WEAVE_CIDR=net:10.2.0.0/16 ip:10.3.1.4/24", image, "db")
		want := []attachCall{{ID: dbID, Addrs: []string{"net:10.2.0.0/16", "ip:10.3.1.4/24"}}}
		if got := tp.attacher.Calls(); !reflect.DeepEqual(got, want) {
			t.Fatalf("attach calls %+v, want %+v", got, want)
		}
		out := mustRun(t, "inspect", "--format",
			`{{json .Config.Entrypoint}} {{json .Config.Cmd}} {{.Config.Hostname}} {{.Config.Domainname}} {{json .HostConfig.Dns}} {{json .HostConfig.DnsSearch}} {{index .Config.Labels "`+proxy.ManagedLabel+`"}}`, db)
		want2 := `["/.weave/weave","wait-iface","--iface","ethwe","--","/weavetest"] ["db"] ` + db + ` weave.local ["169.254.53.53"] ["weave.local"] 1`
		if out != want2 {
			t.Errorf("inspect through the proxy:\n got %s\nwant %s", out, want2)
		}
		dbIP = mustRun(t, "inspect", "--format", "{{.NetworkSettings.IPAddress}}", db)
	})
	if dbIP == "" {
		t.Fatal("no db container")
	}
	dbAddr := net.JoinHostPort(dbIP, "7000")

	t.Run("run --rm attached output", func(t *testing.T) {
		tp.attacher.reset()
		out := mustRun(t, "run", "--rm", "--name", prefix+"probe", image, "probe", dbAddr)
		if !strings.HasPrefix(out, "db "+db+" ") {
			t.Errorf("probe printed %q, want the db's hello naming %s", out, db)
		}
		if got := tp.attacher.Calls(); len(got) != 1 || len(got[0].Addrs) != 0 {
			t.Errorf("attach calls %+v, want one with default addresses", got)
		}
	})

	t.Run("read-only rootfs, another user, init", func(t *testing.T) {
		out := mustRun(t, "run", "--rm", "--read-only", "--user", "1000:1000", "--init", "--name", prefix+"ro", image, "probe", dbAddr)
		if !strings.HasPrefix(out, "db "+db+" ") {
			t.Errorf("probe printed %q", out)
		}
	})

	t.Run("exec", func(t *testing.T) {
		out := mustRun(t, "exec", db, "/weavetest", "probe", "127.0.0.1:7000")
		if !strings.HasPrefix(out, "db "+db+" ") {
			t.Errorf("exec printed %q", out)
		}
	})

	t.Run("run -it and exec -it with a terminal", func(t *testing.T) {
		script, err := exec.LookPath("script")
		if err != nil {
			t.Fatalf("this test needs script(1) (util-linux) for a terminal: %v", err)
		}
		for _, args := range [][]string{
			{"run", "-it", "--rm", "--name", prefix + "tty", image, "probe", dbAddr},
			{"exec", "-it", db, "/weavetest", "probe", "127.0.0.1:7000"},
		} {
			cmd := exec.CommandContext(ctx, script, "-qec", "docker "+shellJoin(args), "/dev/null")
			cmd.Env = append(os.Environ(), "DOCKER_HOST=unix://"+tp.socket)
			r := runCmd(cmd)
			if !r.OK() || !strings.Contains(r.Stdout, "db "+db+" ") {
				t.Errorf("docker %s: %v\nstdout %q\nstderr %s", strings.Join(args[:2], " "), r.Err, r.Stdout, r.Stderr)
			}
		}
	})

	t.Run("run -i: output after stdin's end", func(t *testing.T) {
		// The CLI half-closes the attach stream when stdin ends; the
		// output that follows must still arrive.
		cmd := exec.CommandContext(ctx, "docker", "run", "-i", "--rm", "--name", prefix+"stdin", image, "probe", dbAddr)
		cmd.Env = append(os.Environ(), "DOCKER_HOST=unix://"+tp.socket)
		cmd.Stdin = strings.NewReader("ignored\n")
		r := runCmd(cmd)
		if !r.OK() || !strings.HasPrefix(r.Stdout, "db "+db+" ") {
			t.Errorf("%v: stdout %q stderr %s", r.Err, r.Stdout, r.Stderr)
		}
	})

	t.Run("events stream live", func(t *testing.T) {
		name := prefix + "ev"
		cctx, ccancel := context.WithTimeout(ctx, 30*time.Second)
		defer ccancel()
		cmd := exec.CommandContext(cctx, "docker", "events", "--format", "{{.Action}}", "--filter", "container="+name)
		cmd.Env = append(os.Environ(), "DOCKER_HOST=unix://"+tp.socket)
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		defer func() {
			ccancel()
			cmd.Wait()
		}()
		lines := make(chan string)
		go func() {
			defer close(lines)
			sc := bufio.NewScanner(out)
			for sc.Scan() {
				lines <- sc.Text()
			}
		}()
		// The CLI subscribes asynchronously: create until it sees one.
		deadline := time.After(20 * time.Second)
		for i := 0; ; i++ {
			harness.Docker(ctx, "rm", "-f", name)
			mustRun(t, "create", "--name", name, "-e", "WEAVE_CIDR=none", image, "sleep")
			select {
			case l := <-lines:
				if l != "create" && l != "destroy" {
					t.Errorf("event %q", l)
				}
				return
			case <-time.After(time.Second):
			case <-deadline:
				t.Fatal("no event arrived through the proxy while the stream was open")
			}
		}
	})

	t.Run("stop a container still waiting for ethwe", func(t *testing.T) {
		tp.attacher.mu.Lock()
		hook := tp.attacher.hook
		tp.attacher.hook = nil // attached, says the fake, but no ethwe
		tp.attacher.mu.Unlock()
		defer func() {
			tp.attacher.mu.Lock()
			tp.attacher.hook = hook
			tp.attacher.mu.Unlock()
		}()
		name := prefix + "waiting"
		mustRun(t, "run", "-d", "--name", name, image, "sleep")
		start := time.Now()
		mustRun(t, "stop", "-t", "30", name)
		if d := time.Since(start); d > 10*time.Second {
			t.Errorf("docker stop took %v: the wait binary (pid 1) ignored SIGTERM", d)
		}
		if code := mustRun(t, "inspect", "--format", "{{.State.ExitCode}}", name); code != "1" {
			t.Errorf("exit code %s, want 1 (interrupted while waiting)", code)
		}
	})

	t.Run("build", func(t *testing.T) {
		dir := t.TempDir()
		if err := os.WriteFile(dir+"/Dockerfile", []byte("FROM "+image+"\nLABEL works.weave.proxy.test=1\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		tag := "weave-test/proxybuild:" + strconv.Itoa(os.Getpid())
		t.Cleanup(func() { harness.Docker(context.Background(), "rmi", "-f", tag) })
		mustRun(t, "build", "-q", "-t", tag, dir)
		if out := mustRun(t, "image", "inspect", "--format", `{{index .Config.Labels "works.weave.proxy.test"}}`, tag); out != "1" {
			t.Errorf("built image label %q", out)
		}
	})

	t.Run("logs", func(t *testing.T) {
		r := proxied(ctx, "logs", db)
		if !r.OK() {
			t.Errorf("%v\n%s", r.Err, r.Stderr)
		}
	})

	t.Run("WEAVE_CIDR=none", func(t *testing.T) {
		tp.attacher.reset()
		name := prefix + "none"
		mustRun(t, "create", "--name", name, "-e", "WEAVE_CIDR=none", image, "probe", dbAddr)
		out := mustRun(t, "inspect", "--format", `{{json .Config.Entrypoint}} {{json .HostConfig.Dns}} {{.Config.Domainname}}`, name)
		if out != `["/weavetest"] []` {
			t.Errorf("inspect: %s, want it untouched", out)
		}
		out = mustRun(t, "start", "-a", name)
		if !strings.HasPrefix(out, "db ") {
			t.Errorf("start -a printed %q", out)
		}
		if got := tp.attacher.Calls(); len(got) != 0 {
			t.Errorf("attach calls %+v, want none", got)
		}
	})

	t.Run("malformed WEAVE_CIDR", func(t *testing.T) {
		name := prefix + "bad"
		r := proxied(ctx, "run", "--rm", "--name", name, "-e", "WEAVE_CIDR=10.2.1.4", image, "sleep")
		if r.OK() || !strings.Contains(r.Stderr, `malformed CIDR`) {
			t.Errorf("run: %v, stderr %q; want a malformed CIDR error", r.Err, r.Stderr)
		}
		if ps := harness.Docker(ctx, "ps", "-aq", "--filter", "name=^/"+name+"$"); strings.TrimSpace(ps.Stdout) != "" {
			t.Errorf("a container was created: %s", ps.Stdout)
		}
	})

	t.Run("attach fails: error and no container left running", func(t *testing.T) {
		tp.attacher.mu.Lock()
		tp.attacher.err = fmt.Errorf("address 10.2.1.4/24 already used by c2")
		tp.attacher.mu.Unlock()
		defer func() {
			tp.attacher.mu.Lock()
			tp.attacher.err = nil
			tp.attacher.mu.Unlock()
		}()
		name := prefix + "fail"
		r := proxied(ctx, "run", "-d", "--name", name, image, "sleep")
		if r.OK() || !strings.Contains(r.Stderr, "weave: attach "+name+": address 10.2.1.4/24 already used by c2") {
			t.Errorf("run: %v, stderr %q", r.Err, r.Stderr)
		}
		if st := harness.Docker(ctx, "inspect", "--format", "{{.State.Running}}", name); strings.TrimSpace(st.Stdout) != "false" {
			t.Errorf("container running: %q %s", st.Stdout, st.Stderr)
		}
	})

	t.Run("plain socket still works", func(t *testing.T) {
		if r := harness.Docker(ctx, "inspect", "--format", "{{.Id}}", db); strings.TrimSpace(r.Stdout) != dbID {
			t.Errorf("docker inspect on the Engine's own socket: %q %v", r.Stdout, r.Err)
		}
	})
}

// fakeEthwe stands in for the router's attach: it gives the container's
// namespace an interface ethwe (one end of a veth pair that stays inside
// it), up, with addr.
func fakeEthwe(ctx context.Context, id string, addr netip.Prefix) error {
	r := harness.Docker(ctx, "inspect", "--format", "{{.State.Pid}}", id)
	if !r.OK() {
		return fmt.Errorf("inspect: %v %s", r.Err, r.Stderr)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(r.Stdout))
	if err != nil || pid <= 0 {
		return fmt.Errorf("container %s has no pid (%q)", id, r.Stdout)
	}
	ns, err := netns.GetFromPid(pid)
	if err != nil {
		return err
	}
	defer ns.Close()
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		return err
	}
	defer h.Close()
	if err := h.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "ethwe"}, PeerName: "ethwep"}); err != nil {
		return fmt.Errorf("add ethwe: %w", err)
	}
	link, err := h.LinkByName("ethwe")
	if err != nil {
		return err
	}
	ipn := &net.IPNet{IP: addr.Addr().AsSlice(), Mask: net.CIDRMask(addr.Bits(), 32)}
	if err := h.AddrAdd(link, &netlink.Addr{IPNet: ipn}); err != nil {
		return err
	}
	return h.LinkSetUp(link)
}

func runCmd(cmd *exec.Cmd) harness.Result {
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	r := harness.Result{Args: cmd.Args, Stdout: stdout.String(), Stderr: stderr.String(), ExitCode: -1}
	if cmd.ProcessState != nil {
		r.ExitCode = cmd.ProcessState.ExitCode()
	}
	if err != nil {
		r.Err = fmt.Errorf("%s: %w", strings.Join(cmd.Args, " "), err)
	}
	return r
}

func shellJoin(args []string) string {
	q := make([]string, len(args))
	for i, a := range args {
		q[i] = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
	}
	return strings.Join(q, " ")
}

// recorder is an Attacher that records its calls, fails with err when set,
// and otherwise runs hook.
type recorder struct {
	mu    sync.Mutex
	calls []attachCall
	err   error
	hook  func(ctx context.Context, id string) error
}

type attachCall struct {
	ID    string
	Addrs []string
}

var _ proxy.Attacher = (*recorder)(nil)

func (a *recorder) Attach(ctx context.Context, id string, addrs []string) ([]string, error) {
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

func (a *recorder) reset() {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.calls = nil
}

func (a *recorder) Calls() []attachCall {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]attachCall(nil), a.calls...)
}

type realProxy struct {
	socket   string
	attacher *recorder
}

// startRealProxy serves a proxy in front of upstream until the test ends.
func startRealProxy(t *testing.T, upstream, waitBinary string) *realProxy {
	t.Helper()
	dir, err := os.MkdirTemp("", "wproxy")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	tp := &realProxy{socket: filepath.Join(dir, "docker.sock"), attacher: &recorder{}}
	p, err := proxy.New(proxy.Config{
		Socket:     tp.socket,
		Upstream:   upstream,
		WaitBinary: waitBinary,
		Domain:     "weave.local.",
		DNSAddr:    netip.MustParseAddr("169.254.53.53"),
		Attacher:   tp.attacher,
		Logger:     slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Listen(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- p.Serve(context.Background()) }()
	t.Cleanup(func() {
		p.Close()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return tp
}
