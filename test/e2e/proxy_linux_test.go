package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/weavelab/weave/proxy"
	"github.com/weavelab/weave/test/harness"
)

// The Docker API proxy scenarios run the real docker CLI with DOCKER_HOST
// pointing at a router's proxy (the socket `weave env` names, in the host's
// run dir) and check what a user of plain Docker commands would see. The
// one Docker Engine of the machine serves every host; each router attaches
// only what was started through its own proxy. Every container carries the
// test's label (dockerLabel), by which its cleanup removes them by ID.

// engineSocket is the real Engine's socket, which the proxies forward to.
const engineSocket = "/var/run/docker.sock"

// proxyCmdTimeout bounds one docker command through a proxy; a run waits
// for the attach, which is quick, but the machine may be loaded.
const proxyCmdTimeout = 90 * time.Second

// dockerProxy is a host's Docker API proxy as the docker CLI reaches it.
type dockerProxy struct {
	h    *harness.Host
	sock string // path of the proxy's socket
}

// proxyOf runs `weave env` on h, checks that it points DOCKER_HOST at the
// run dir's docker.sock, and waits until the docker CLI gets an answer
// through it.
func proxyOf(t *testing.T, h *harness.Host) dockerProxy {
	t.Helper()
	out := strings.TrimSpace(h.MustWeave("env"))
	p := dockerProxy{h: h, sock: filepath.Join(h.RunDir, "docker.sock")}
	f := strings.Fields(out)
	if len(f) != 3 || f[0] != "export" || f[1] != "DOCKER_HOST=unix://"+p.sock || !strings.HasPrefix(f[2], "ORIG_DOCKER_HOST=") {
		t.Fatalf("%s: weave env printed %q: want export DOCKER_HOST=unix://%s ORIG_DOCKER_HOST=...", h.HostName, out, p.sock)
	}
	harness.WaitFor(t, reachTimeout, func() (bool, string) {
		r := p.docker(context.Background(), "version", "--format", "{{.Server.APIVersion}}")
		return r.OK() && strings.TrimSpace(r.Stdout) != "", r.String()
	})
	return p
}

// dockerEnv runs the docker CLI with env added to the test's environment
// (at most proxyCmdTimeout unless ctx has a deadline).
func dockerEnv(ctx context.Context, env []string, args ...string) harness.Result {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, proxyCmdTimeout)
		defer cancel()
	}
	cmd := exec.CommandContext(ctx, "docker", args...)
	cmd.Env = append(os.Environ(), env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	r := harness.Result{Args: append([]string{"docker"}, args...), Stdout: stdout.String(), Stderr: stderr.String(), ExitCode: -1}
	if cmd.ProcessState != nil {
		r.ExitCode = cmd.ProcessState.ExitCode()
	}
	if err != nil {
		r.Err = fmt.Errorf("%s: %w", strings.Join(r.Args, " "), err)
	}
	return r
}

func (p dockerProxy) env() []string { return []string{"DOCKER_HOST=unix://" + p.sock} }

// docker runs the docker CLI through the proxy.
func (p dockerProxy) docker(ctx context.Context, args ...string) harness.Result {
	return dockerEnv(ctx, p.env(), args...)
}

// mustDocker runs the docker CLI through the proxy, logs it and fails the
// test unless it exits 0; it returns the standard output trimmed.
func (p dockerProxy) mustDocker(t *testing.T, args ...string) string {
	t.Helper()
	start := time.Now()
	r := p.docker(context.Background(), args...)
	t.Logf("%s via proxy (%v): %s", p.h.HostName, time.Since(start).Round(time.Millisecond), r)
	if !r.OK() {
		t.Fatalf("%s: %v", p.h.HostName, r.Err)
	}
	return strings.TrimSpace(r.Stdout)
}

// run runs `docker run -d --label LABEL ARGS...` through the proxy and
// returns the container's full ID.
func (p dockerProxy) run(t *testing.T, label string, args ...string) string {
	t.Helper()
	id := p.mustDocker(t, append([]string{"run", "-d", "--label", label}, args...)...)
	if !isFullID(id) {
		t.Fatalf("docker run -d printed %q: want a 64-hex container ID", id)
	}
	return id
}

// plainDocker runs the docker CLI on the Engine's own socket.
func plainDocker(ctx context.Context, args ...string) harness.Result {
	return dockerEnv(ctx, []string{"DOCKER_HOST=unix://" + engineSocket}, args...)
}

// inspected is what the scenarios read of `docker inspect`.
type inspected struct {
	ID     string
	Name   string
	Config struct {
		Hostname   string
		Domainname string
		Entrypoint []string
		Cmd        []string
		Labels     map[string]string
	}
	HostConfig struct {
		DNS       []string `json:"Dns"`
		DNSSearch []string `json:"DnsSearch"`
	}
	Mounts []mount
	State  struct {
		Running bool
	}
}

// inspect runs `docker inspect ID` with run (through a proxy or not) and
// returns its raw JSON and the decoded container.
func inspect(t *testing.T, run func(context.Context, ...string) harness.Result, id string) (string, inspected) {
	t.Helper()
	r := run(context.Background(), "inspect", "--type", "container", id)
	if !r.OK() {
		t.Fatalf("%s", r)
	}
	var cs []inspected
	if err := json.Unmarshal([]byte(r.Stdout), &cs); err != nil || len(cs) != 1 {
		t.Fatalf("docker inspect %s: %v: %q", id, err, r.Stdout)
	}
	return r.Stdout, cs[0]
}

type mount struct {
	Source      string
	Destination string
	RW          bool
}

// managed says what c lacks of the proxy's rewrite of a create request:
// the wait binary as the entrypoint and bound read-only, weaveDNS as the
// resolver, the managed label; "" when it has it all.
func managed(c inspected) string {
	var bad []string
	if len(c.Config.Entrypoint) < 5 || c.Config.Entrypoint[0] != proxy.WaitPath || c.Config.Entrypoint[1] != "wait-iface" {
		bad = append(bad, fmt.Sprintf("entrypoint %q, want %s wait-iface ... first", c.Config.Entrypoint, proxy.WaitPath))
	}
	if !slices.ContainsFunc(c.Mounts, func(m mount) bool { return m.Destination == proxy.WaitPath && !m.RW }) {
		bad = append(bad, fmt.Sprintf("mounts %+v: want %s read-only", c.Mounts, proxy.WaitPath))
	}
	if !slices.Equal(c.HostConfig.DNS, []string{dnsServer}) || len(c.HostConfig.DNSSearch) == 0 || c.HostConfig.DNSSearch[0] != "weave.local" {
		bad = append(bad, fmt.Sprintf("dns %q search %q, want [%s] and weave.local first", c.HostConfig.DNS, c.HostConfig.DNSSearch, dnsServer))
	}
	if c.Config.Labels[proxy.ManagedLabel] == "" {
		bad = append(bad, fmt.Sprintf("labels %v: want %s", c.Config.Labels, proxy.ManagedLabel))
	}
	return strings.Join(bad, "; ")
}

// bgCmd is a command the test runs in the background, whose standard
// output and error it reads while it runs.
type bgCmd struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	mu    sync.Mutex
	out   bytes.Buffer // stdout and stderr, guarded by mu
	done  chan struct{}
	err   error // set before done is closed
}

func (b *bgCmd) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.out.Write(p)
}

// output is what the command wrote so far.
func (b *bgCmd) output() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.out.String()
}

// startBG starts name ARGS... with env added to ours and a standard input
// that stays open until the command ends; t.Cleanup kills it (by its own
// PID) if it still runs.
func startBG(t *testing.T, env []string, name string, args ...string) *bgCmd {
	t.Helper()
	b := &bgCmd{done: make(chan struct{})}
	b.cmd = exec.Command(name, args...)
	b.cmd.Env = append(os.Environ(), env...)
	b.cmd.Stdout, b.cmd.Stderr = b, b
	var err error
	if b.stdin, err = b.cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	if err := b.cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	go func() {
		b.err = b.cmd.Wait()
		close(b.done)
	}()
	t.Cleanup(func() {
		b.stdin.Close()
		select {
		case <-b.done:
		default:
			_ = b.cmd.Process.Kill()
			<-b.done
		}
	})
	return b
}

// wait waits up to timeout for the command to exit and reports whether it
// did.
func (b *bgCmd) wait(timeout time.Duration) bool {
	select {
	case <-b.done:
		return true
	case <-time.After(timeout):
		return false
	}
}

// exited reports whether the command has ended.
func (b *bgCmd) exited() bool {
	select {
	case <-b.done:
		return true
	default:
		return false
	}
}

// exitCode is the command's exit status once it has ended.
func (b *bgCmd) exitCode() int { return b.cmd.ProcessState.ExitCode() }

// waitOutput waits until the command has written want.
func (b *bgCmd) waitOutput(t *testing.T, what, want string) {
	t.Helper()
	harness.WaitFor(t, reachTimeout, func() (bool, string) {
		out := b.output()
		return strings.Contains(out, want), fmt.Sprintf("%s wrote %q, want %q in it", what, out, want)
	})
}

// waitLookup waits until `weave dns-lookup name` on h answers want (sorted;
// none for an unknown name) and returns how long that took.
func waitLookup(t *testing.T, h *harness.Host, name string, want ...string) time.Duration {
	t.Helper()
	start := time.Now()
	slices.Sort(want)
	harness.WaitFor(t, convergeTimeout, func() (bool, string) {
		got, err := lookup(h, name)
		if err != nil {
			return false, err.Error()
		}
		return slices.Equal(got, want), fmt.Sprintf("%s: weave dns-lookup %s = %v, want %v", h.HostName, name, got, want)
	})
	return time.Since(start)
}

// firstLineFrom dials addr from namespace n and returns the first line the
// peer sends (the db's greeting).
func firstLineFrom(n harness.Netns, addr string) (string, error) {
	c, err := n.Dial("tcp", addr, 3*time.Second)
	if err != nil {
		return "", err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(3 * time.Second))
	return bufio.NewReader(c).ReadString('\n')
}

// TestProxyWebDB: a db started with a plain `docker run` through h1's
// proxy, with no weave flags, gets an address of the default range and the
// name db-ID.weave.local, which resolves on h2; a web started through h2's
// proxy reaches the db by that name across hosts, as a namespace on h2
// sees through the web. Then a container whose very first action is to
// connect to the db by name succeeds on its first try, 20 times in a row:
// its process starts only once ethwe is up and weaveDNS answers, also
// while `weave ps` polls the router.
func TestProxyWebDB(t *testing.T) {
	t.Parallel()
	l := harness.New(t)
	img := harness.DockerImage(t)
	label := dockerLabel(t, l)
	h1, h2 := meshedPair(t, l)
	p1, p2 := proxyOf(t, h1), proxyOf(t, h2)

	dbName, webName := "db-"+l.ID(), "web-"+l.ID()
	dbFQDN := dbName + ".weave.local"
	db := p1.run(t, label, "--name", dbName, img, "db")
	// The proxy answers the start only once the container is attached.
	dbIP := containerAddr(t, h1, db)
	raw, c := inspect(t, p1.docker, db)
	if why := managed(c); why != "" {
		t.Errorf("db as the proxy created it: %s", why)
	}
	if c.Config.Hostname != dbName || c.Config.Domainname != "weave.local" {
		t.Errorf("db hostname %q domain %q: want %q, weave.local", c.Config.Hostname, c.Config.Domainname, dbName)
	}
	// The wait binary, then the image's entrypoint; the user's command.
	if ep := c.Config.Entrypoint; len(ep) == 0 || ep[len(ep)-1] != "/weavetest" || !slices.Equal(c.Config.Cmd, []string{"db"}) {
		t.Errorf("db entrypoint %q command %q: want the image's entrypoint after the wait binary's, and the user's command", ep, c.Config.Cmd)
	}
	if rawPlain, _ := inspect(t, plainDocker, db); rawPlain != raw {
		t.Errorf("docker inspect through the proxy differs from the Engine's own answer:\nproxy:  %s\nengine: %s", raw, rawPlain)
	}
	t.Logf("%s resolves on h2 after %v", dbFQDN, waitLookup(t, h2, dbFQDN, dbIP.String()).Round(time.Millisecond))
	if got, err := lookup(h1, dbFQDN); err != nil || !slices.Equal(got, []string{dbIP.String()}) {
		t.Errorf("h1: weave dns-lookup %s = %v, %v; want [%s]", dbFQDN, got, err, dbIP)
	}

	web := p2.run(t, label, "--name", webName, img, "web", "-db", dbFQDN+":7000")
	webIP := containerAddr(t, h2, web)
	if webIP == dbIP {
		t.Fatalf("db and web both got %s", dbIP)
	}
	client := l.AddContainer(h2, "client")
	client.Attach()
	greeting := fmt.Sprintf("db %s %s\n", dbName, dbIP)
	waitGet(t, client.Netns, "http://"+webIP.String()+"/", "web "+webName+"\n")
	waitGet(t, client.Netns, "http://"+webIP.String()+"/db", greeting)

	t.Run("first connection by name succeeds 20 times in a row", func(t *testing.T) {
		// Meanwhile `weave ps` runs in a loop on h2, as monitoring
		// would: each one reconciles the router's table with the
		// kernel, which must not take a container whose entrypoint is
		// exec'ing its command for one that is gone.
		ctx, cancel := context.WithCancel(context.Background())
		var wg sync.WaitGroup
		var polls int
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				h2.WeaveQuiet("ps")
				polls++
			}
		}()
		defer func() {
			cancel()
			wg.Wait()
			t.Logf("%d weave ps on h2 meanwhile", polls)
		}()
		const n = 20
		var took []time.Duration
		failed := 0
		for i := range n {
			start := time.Now()
			cid := filepath.Join(t.TempDir(), "cid")
			r := p2.docker(context.Background(), "run", "--rm", "--cidfile", cid, "--label", label, img, "probe", dbFQDN+":7000")
			took = append(took, time.Since(start))
			if !r.OK() || r.Stdout != greeting {
				// What h2's router did with that container, for the
				// diagnosis.
				id, _ := os.ReadFile(cid)
				var lines []string
				for _, line := range strings.Split(h2.Log(), "\n") {
					if len(id) > 0 && strings.Contains(line, string(id)) {
						lines = append(lines, line)
					}
				}
				t.Logf("run %d: container %s started at %s; h2's log of it:\n%s", i+1, id, start.UTC().Format(time.StampMicro), strings.Join(lines, "\n"))
				failed++
				t.Errorf("run %d: %s: want exit 0 and %q", i+1, r, greeting)
			}
		}
		slices.Sort(took)
		t.Logf("%d of %d first tries failed; docker run --rm ... probe took %v median, %v max", failed, n, took[n/2].Round(time.Millisecond), took[n-1].Round(time.Millisecond))
	})
}

// TestProxyDockerCLI: the interactive and streaming commands work through
// the proxy as they do on the Engine's socket: `docker run -it` with a
// terminal (script gives it one), `docker exec`, `docker logs -f` (which
// ends when the container stops) and `docker events` (following, and with
// --until).
func TestProxyDockerCLI(t *testing.T) {
	t.Parallel()
	l := harness.New(t)
	img := harness.DockerImage(t)
	label := dockerLabel(t, l)
	h := l.AddHost("h1")
	h.Launch()
	p := proxyOf(t, h)

	dbName := "db-" + l.ID()
	dbFQDN := dbName + ".weave.local"
	db := p.run(t, label, "--name", dbName, img, "db")
	dbIP := containerAddr(t, h, db)
	waitLookup(t, h, dbFQDN, dbIP.String())
	greeting := fmt.Sprintf("db %s %s", dbName, dbIP)

	t.Run("run -it", func(t *testing.T) {
		if _, err := exec.LookPath("script"); err != nil {
			t.Fatalf("this test needs script (util-linux, bsdutils) for a terminal: %v", err)
		}
		cmd := fmt.Sprintf("docker run -it --rm --label %s %s probe %s:7000", label, img, dbFQDN)
		b := startBG(t, p.env(), "script", "-qec", cmd, "/dev/null")
		if !b.wait(proxyCmdTimeout) {
			t.Fatalf("script -qec %q: still running after %v; wrote %q", cmd, proxyCmdTimeout, b.output())
		}
		out := b.output()
		t.Logf("script -qec %q: exit %d, wrote %q", cmd, b.exitCode(), out)
		if b.exitCode() != 0 || !strings.Contains(out, greeting+"\r\n") {
			t.Errorf("docker run -it: exit %d, wrote %q: want exit 0 and %q from the terminal", b.exitCode(), out, greeting+"\r\n")
		}
	})

	t.Run("exec", func(t *testing.T) {
		out := p.mustDocker(t, "exec", db, "/weavetest", "probe", dbFQDN+":7000")
		if out != greeting {
			t.Errorf("docker exec probe printed %q, want %q", out, greeting)
		}
		// And with its standard input attached, which hijacks the
		// connection both ways.
		r := p.docker(context.Background(), "exec", "-i", db, "/weavetest", "probe", "127.0.0.1:7000")
		if !r.OK() || strings.TrimSpace(r.Stdout) != greeting {
			t.Errorf("%s: want exit 0 and %q", r, greeting)
		}
	})

	t.Run("logs -f", func(t *testing.T) {
		// The image has no command that prints and keeps running: the
		// container's terminal echoes what docker attach types into it,
		// and that goes to its log.
		tty := p.run(t, label, "-i", "-t", "--name", "tty-"+l.ID(), img, "sleep")
		logs := startBG(t, p.env(), "docker", "logs", "-f", tty)
		att := startBG(t, p.env(), "script", "-qec", "docker attach "+tty, "/dev/null")
		line := "hello-" + l.ID()
		if _, err := io.WriteString(att.stdin, line+"\r"); err != nil {
			t.Fatalf("typing into docker attach: %v", err)
		}
		logs.waitOutput(t, "docker logs -f", line)
		if logs.exited() {
			t.Fatalf("docker logs -f ended while the container runs: exit %d, wrote %q", logs.exitCode(), logs.output())
		}
		p.mustDocker(t, "stop", "-t", "5", tty)
		if !logs.wait(reachTimeout) {
			t.Fatalf("docker logs -f still running %v after the container stopped; wrote %q", reachTimeout, logs.output())
		}
		if logs.exitCode() != 0 {
			t.Errorf("docker logs -f: exit %d, wrote %q", logs.exitCode(), logs.output())
		}
		if !att.wait(reachTimeout) {
			t.Errorf("docker attach still running %v after the container stopped; wrote %q", reachTimeout, att.output())
		}
	})

	t.Run("events", func(t *testing.T) {
		name := "ev-" + l.ID()
		since := strconv.FormatInt(time.Now().Add(-time.Second).Unix(), 10)
		format := "{{.Action}} {{.Actor.ID}}"
		ev := startBG(t, p.env(), "docker", "events", "--since", since, "--filter", "container="+name, "--filter", "event=start", "--format", format)
		id := p.run(t, label, "--name", name, img, "sleep")
		ev.waitOutput(t, "docker events", "start "+id+"\n")
		if ev.exited() {
			t.Fatalf("docker events ended: exit %d, wrote %q", ev.exitCode(), ev.output())
		}
		until := strconv.FormatInt(time.Now().Add(time.Second).Unix(), 10)
		out := p.mustDocker(t, "events", "--since", since, "--until", until, "--filter", "container="+name, "--format", format)
		if !strings.Contains(out+"\n", "start "+id+"\n") {
			t.Errorf("docker events --since --until printed %q, want the start of %s", out, id)
		}
	})
}

// TestProxyWeaveCIDR: WEAVE_CIDR=none leaves a container alone (the
// Engine runs what was asked: no ethwe, no weave entrypoint, no name);
// WEAVE_CIDR=net:CIDR allocates in that subnet; `docker restart` keeps the
// address and the name (the router re-attaches it), and the container is
// reachable again from h2; the Engine's own socket works beside the proxy
// and does not attach.
func TestProxyWeaveCIDR(t *testing.T) {
	t.Parallel()
	l := harness.New(t)
	img := harness.DockerImage(t)
	label := dockerLabel(t, l)
	h1, h2 := meshedPair(t, l)
	p1 := proxyOf(t, h1)

	noneName := "none-" + l.ID()
	none := p1.run(t, label, "-e", "WEAVE_CIDR=none", "--name", noneName, img, "sleep")
	subName := "sub-" + l.ID()
	sub := p1.run(t, label, "-e", "WEAVE_CIDR=net:10.32.8.0/24", "--name", subName, img, "db")

	t.Run("none", func(t *testing.T) {
		_, c := inspect(t, p1.docker, none)
		if managed(c) == "" || slices.Contains(c.Config.Entrypoint, proxy.WaitPath) || c.Config.Hostname == noneName {
			t.Errorf("WEAVE_CIDR=none container rewritten: entrypoint %q, hostname %q, dns %q, mounts %+v",
				c.Config.Entrypoint, c.Config.Hostname, c.HostConfig.DNS, c.Mounts)
		}
		r := p1.docker(context.Background(), "exec", none, "/weavetest", "wait-iface", "-name", "ethwe", "-timeout", "1s", "--", "/weavetest", "sleep")
		if r.OK() || !strings.Contains(r.Stderr, "interface ethwe not up") {
			t.Errorf("%s: want it to fail, ethwe missing", r)
		}
		ps, err := weavePS(h1)
		if err != nil {
			t.Fatal(err)
		}
		if slices.ContainsFunc(ps, func(e psEntry) bool { return e.ID == none[:12] }) {
			t.Errorf("weave ps on h1 = %+v: lists the WEAVE_CIDR=none container %s", ps, none[:12])
		}
		if got, err := lookup(h1, noneName+".weave.local"); err != nil || len(got) != 0 {
			t.Errorf("weave dns-lookup %s.weave.local = %v, %v: want no such name", noneName, got, err)
		}
	})

	var subIP netip.Addr
	t.Run("net:CIDR", func(t *testing.T) {
		ps, err := weavePS(h1, sub)
		if err != nil {
			t.Fatal(err)
		}
		want := netip.MustParsePrefix("10.32.8.0/24")
		if len(ps) != 1 || ps[0].ID != sub[:12] || len(ps[0].Addrs) != 1 || ps[0].Addrs[0].Bits() != 24 || !want.Contains(ps[0].Addrs[0].Addr()) {
			t.Fatalf("weave ps %s = %+v: want one address/24 in %s", sub[:12], ps, want)
		}
		subIP = ps[0].Addrs[0].Addr()
		// From inside: ethwe is there and the container reaches itself
		// by its name.
		out := p1.mustDocker(t, "exec", sub, "/weavetest", "wait-iface", "-name", "ethwe", "-timeout", "5s", "--",
			"/weavetest", "probe", subName+".weave.local:7000")
		if want := fmt.Sprintf("db %s %s", subName, subIP); out != want {
			t.Errorf("probe of itself by name printed %q, want %q", out, want)
		}
		waitLookup(t, h2, subName+".weave.local", subIP.String())
	})
	if t.Failed() {
		t.FailNow()
	}

	t.Run("restart keeps the address", func(t *testing.T) {
		// In the same subnet: weave keeps subnets apart.
		client := l.AddContainer(h2, "client")
		client.Attach("net:10.32.8.0/24")
		want := fmt.Sprintf("db %s %s\n", subName, subIP)
		addr := net.JoinHostPort(subIP.String(), "7000")
		harness.WaitFor(t, reachTimeout, func() (bool, string) {
			got, err := firstLineFrom(client.Netns, addr)
			return got == want, fmt.Sprintf("from %s: %s said %q, %v; want %q", client.Ref(), addr, got, err, want)
		})
		before := ipamStatus(t, h1)
		start := time.Now()
		p1.mustDocker(t, "restart", "-t", "5", sub)
		harness.WaitFor(t, reachTimeout, func() (bool, string) {
			ps, err := weavePS(h1, sub)
			if err != nil {
				return false, err.Error()
			}
			return len(ps) == 1 && len(ps[0].Addrs) == 1 && ps[0].Addrs[0] == netip.PrefixFrom(subIP, 24),
				fmt.Sprintf("weave ps %s after restart = %+v, want %s/24", sub[:12], ps, subIP)
		})
		t.Logf("re-attached %v after docker restart began", time.Since(start).Round(time.Millisecond))
		harness.WaitFor(t, reachTimeout, func() (bool, string) {
			got, err := firstLineFrom(client.Netns, addr)
			return got == want, fmt.Sprintf("after restart, from %s: %s said %q, %v; want %q", client.Ref(), addr, got, err, want)
		})
		waitLookup(t, h2, subName+".weave.local", subIP.String())
		if after := ipamStatus(t, h1); after.Allocated != before.Allocated || after.Held != 0 {
			t.Errorf("h1 ipam after restart: allocated %d held %d; before allocated %d: want the same, none held",
				after.Allocated, after.Held, before.Allocated)
		}
	})

	t.Run("engine socket beside the proxy", func(t *testing.T) {
		r := plainDocker(context.Background(), "ps", "-q", "--no-trunc", "--filter", "label="+label)
		if !r.OK() {
			t.Fatalf("%s", r)
		}
		for _, id := range []string{none, sub} {
			if !slices.Contains(strings.Fields(r.Stdout), id) {
				t.Errorf("%s: want running %s listed", r, id[:12])
			}
		}
		r = plainDocker(context.Background(), "run", "-d", "--label", label, "--name", "plain-"+l.ID(), img, "sleep")
		plain := strings.TrimSpace(r.Stdout)
		if !r.OK() || !isFullID(plain) {
			t.Fatalf("%s: want a container ID", r)
		}
		_, c := inspect(t, plainDocker, plain)
		if !c.State.Running || slices.Contains(c.Config.Entrypoint, proxy.WaitPath) {
			t.Errorf("container run on the Engine's socket: running %v, entrypoint %q: want it running as the image says", c.State.Running, c.Config.Entrypoint)
		}
		if ps, err := weavePS(h1); err != nil || slices.ContainsFunc(ps, func(e psEntry) bool { return e.ID == plain[:12] }) {
			t.Errorf("weave ps on h1 = %+v, %v: want the plain container %s not attached", ps, err, plain[:12])
		}
	})
}

// TestProxyBadInput: a WEAVE_CIDR the proxy cannot honour fails `docker
// run` with an error that says so and leaves no container running and no
// address allocated: malformed (refused at create) or outside the range
// (refused by the attach at start, after which the proxy kills the
// container). The proxy's socket is never more open than the Engine's,
// and the router listens on no TCP port for Docker; a router whose
// DOCKER_HOST is tcp:// serves no proxy at all.
func TestProxyBadInput(t *testing.T) {
	t.Parallel()
	l := harness.New(t)
	img := harness.DockerImage(t)
	label := dockerLabel(t, l)
	h := l.AddHost("h1")
	h.Launch()
	p := proxyOf(t, h)
	before := ipamStatus(t, h)

	for i, tc := range []struct {
		name, cidr string
		mention    []string
	}{
		{"prefix length 33", "net:10.32.0.0/33", []string{"WEAVE_CIDR", "10.32.0.0/33"}},
		{"not an address", "bogus", []string{"WEAVE_CIDR", "bogus"}},
		{"subnet outside the range", "net:10.99.0.0/24", []string{"10.99.0.0/24"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			name := fmt.Sprintf("bad%d-%s", i, l.ID())
			start := time.Now()
			r := p.docker(context.Background(), "run", "-d", "--label", label, "--name", name, "-e", "WEAVE_CIDR="+tc.cidr, img, "sleep")
			t.Logf("failed after %v: %s", time.Since(start).Round(time.Millisecond), r)
			if r.OK() {
				t.Errorf("docker run with WEAVE_CIDR=%s succeeded", tc.cidr)
			}
			for _, m := range tc.mention {
				if !strings.Contains(r.Stderr, m) {
					t.Errorf("docker run with WEAVE_CIDR=%s: stderr %q does not mention %q", tc.cidr, r.Stderr, m)
				}
			}
			if !strings.Contains(r.Stderr, "WEAVE_CIDR") {
				t.Logf("note: the error does not name WEAVE_CIDR")
			}
			running := plainDocker(context.Background(), "ps", "-q", "--no-trunc", "--filter", "name=^/"+name+"$")
			if !running.OK() || strings.TrimSpace(running.Stdout) != "" {
				t.Errorf("%s: want no container %s running", running, name)
			}
			all := plainDocker(context.Background(), "ps", "-a", "--format", "{{.ID}} {{.Status}}", "--filter", "name=^/"+name+"$")
			t.Logf("left behind (not running): %q", strings.TrimSpace(all.Stdout))
		})
	}
	if ps, err := weavePS(h); err != nil || len(ps) != 0 {
		t.Errorf("weave ps = %+v, %v: want nothing attached", ps, err)
	}
	if after := ipamStatus(t, h); after.Allocated != before.Allocated || after.Held != 0 {
		t.Errorf("ipam after the bad runs: allocated %d held %d, before %d: want nothing allocated or held", after.Allocated, after.Held, before.Allocated)
	}

	t.Run("socket no wider than the engine's", func(t *testing.T) {
		st, err := os.Lstat(p.sock)
		if err != nil {
			t.Fatal(err)
		}
		eng, err := os.Stat(engineSocket)
		if err != nil {
			t.Fatal(err)
		}
		mode, engMode := st.Mode().Perm(), eng.Mode().Perm()
		gid, engGID := st.Sys().(*syscall.Stat_t).Gid, eng.Sys().(*syscall.Stat_t).Gid
		t.Logf("%s: %v gid %d; %s: %v gid %d", p.sock, st.Mode(), gid, engineSocket, eng.Mode(), engGID)
		if st.Mode().Type() != fs.ModeSocket {
			t.Errorf("%s is %v, not a socket", p.sock, st.Mode().Type())
		}
		if mode&^engMode != 0 || mode&^0o660 != 0 {
			t.Errorf("%s has mode %v: want no bit beyond the engine's %v, nor beyond 0660", p.sock, mode, engMode)
		}
		if gid != engGID {
			t.Errorf("%s has group %d, the engine's socket %d", p.sock, gid, engGID)
		}
	})

	t.Run("no TCP listener for docker", func(t *testing.T) {
		// The router's own TCP ports: the mesh, metrics, weaveDNS.
		r := h.Run(context.Background(), "ss", "-ltnH")
		if !r.OK() {
			t.Fatalf("%s", r)
		}
		for _, line := range strings.Split(strings.TrimSpace(r.Stdout), "\n") {
			f := strings.Fields(line)
			if len(f) < 4 {
				continue
			}
			ap, err := netip.ParseAddrPort(strings.Replace(f[3], "*:", "0.0.0.0:", 1))
			if err != nil {
				t.Errorf("ss line %q: %v", line, err)
				continue
			}
			if !slices.Contains([]uint16{6783, 6782, 53}, ap.Port()) {
				t.Errorf("%s listens on TCP %s: want only the mesh (6783), metrics (6782) and weaveDNS (53)", h.HostName, ap)
			}
		}
	})

	t.Run("tcp upstream refused", func(t *testing.T) {
		h2 := l.AddHost("h2")
		env := []string{"WEAVE_RUN_DIR=" + h2.RunDir, "WEAVE_STATE_DIR=" + h2.StateDir, "DOCKER_HOST=tcp://127.0.0.1:2375"}
		r := h2.RunEnv(context.Background(), env, harness.Binary(t), "launch", "--nickname", h2.HostName)
		t.Logf("launch with DOCKER_HOST=tcp://127.0.0.1:2375: %s", r)
		if !r.OK() {
			t.Fatalf("launch: %v", r.Err)
		}
		sock := filepath.Join(h2.RunDir, "docker.sock")
		if _, err := os.Lstat(sock); err == nil {
			t.Errorf("%s exists: want no proxy in front of a tcp:// engine", sock)
		}
		harness.WaitFor(t, reachTimeout, func() (bool, string) {
			log := h2.Log()
			return strings.Contains(log, "docker api proxy") && strings.Contains(log, "unix://"),
				"h2's log does not say why it serves no proxy"
		})
	})
}
