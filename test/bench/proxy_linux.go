package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"time"

	vnetns "github.com/vishvananda/netns"
)

// The proxy scenario's lab: a host namespace h1 with a weave router and a
// listener namespace attached to it (an allocated address), on the
// machine's one Docker Engine. The probe is the e2e tests' image
// (test/images/weavetest, FROM scratch): `weavetest probe HOST:PORT` dials
// once and prints the first line the listener sends. The baseline's
// listener is on Docker's bridge in the machine's own namespace (the only
// place a container on that bridge reaches without help); it listens on
// an ephemeral port of the bridge's address for the length of the
// scenario.
const (
	// proxyImageRepo is harness.ImageRepo: the image is built the same
	// way and tagged by the same hash, so the tests and the bench share it.
	proxyImageRepo = "weave-test/weavetest"
	// proxyRunTimeout bounds one start of the probe container.
	proxyRunTimeout = 60 * time.Second
	// proxyGreeting is what the listeners send; the probe prints it.
	proxyGreeting = "weave-bench"
)

// runProxy measures, cfg.proxyRuns times each and interleaved, the time
// from the start of the CLI to the listener's accept of the probe's
// connection, for docker run through the proxy, plain docker run on
// Docker's bridge, and weave run. It fills res.Proxy.
func runProxy(ctx context.Context, cfg config, log *slog.Logger, tmp, bin string, res *result) error {
	undo := newCleanups(log)
	defer undo.run()
	p := &proxyResult{Runs: cfg.proxyRuns}
	res.Proxy = p
	img, err := buildProbeImage(ctx, tmp)
	if err != nil {
		return fmt.Errorf("probe image: %w", err)
	}
	p.Image = img
	label := fmt.Sprintf("weave-bench=wb%d", os.Getpid())

	pl := &lab{prefix: fmt.Sprintf("wb%d-p", os.Getpid()), tmp: tmp, log: log}
	hns, err := pl.addNetns(ctx, "h1", undo)
	if err != nil {
		return err
	}
	lis, err := pl.addNetns(ctx, "lis", undo)
	if err != nil {
		return err
	}
	w := &weaveHost{host: &host{netns: hns, short: "h1"}, bin: bin}
	for _, dir := range []*string{&w.runDir, &w.stateDir} {
		if *dir, err = os.MkdirTemp(tmp, "proxy-h1-"); err != nil {
			return err
		}
	}
	undo.push("weave reset on "+w.short, w.teardown)
	if _, err := w.weave(ctx, "launch", "--nickname", w.short); err != nil {
		return fmt.Errorf("%w\nweave.log: %s", err, w.logTail(5))
	}
	// Before the router's reset: its containers go first.
	undo.push("remove the probe containers", func() error { return removeLabelled(label) })
	out, err := w.weave(ctx, "attach", "netns:"+lis.name)
	if err != nil {
		return fmt.Errorf("%w\nweave.log: %s", err, w.logTail(5))
	}
	lisIP := strings.TrimSpace(out)
	if net.ParseIP(lisIP) == nil {
		return fmt.Errorf("weave attach printed %q, want one address", out)
	}
	proxyEnv := []string{"DOCKER_HOST=unix://" + filepath.Join(w.runDir, "docker.sock")}
	if err := poll(ctx, 30*time.Second, 100*time.Millisecond, func() (bool, string) {
		_, err := dockerCLI(ctx, proxyEnv, "version", "--format", "{{.Server.APIVersion}}")
		return err == nil, fmt.Sprintf("the proxy does not answer: %v", err)
	}); err != nil {
		return fmt.Errorf("%w\nweave.log: %s", err, w.logTail(5))
	}

	weaveLn, err := lis.listen("tcp", net.JoinHostPort(lisIP, "0"))
	if err != nil {
		return err
	}
	weaveAcc := serveAccepts(weaveLn, undo)
	bridgeIP, err := dockerBridgeIP(ctx)
	if err != nil {
		return err
	}
	bridgeLn, err := net.Listen("tcp", net.JoinHostPort(bridgeIP, "0"))
	if err != nil {
		return fmt.Errorf("listen on Docker's bridge: %w", err)
	}
	bridgeAcc := serveAccepts(bridgeLn, undo)
	log.Info("proxy: lab ready", "image", img, "weave_listener", weaveLn.Addr(), "bridge_listener", bridgeLn.Addr())

	probe := func(env []string, addr net.Addr) func() error {
		return func() error {
			out, err := dockerCLI(ctx, env, "run", "--rm", "--label", label, img, "probe", addr.String())
			if err == nil && strings.TrimSpace(out) != proxyGreeting {
				err = fmt.Errorf("probe printed %q, want %q", out, proxyGreeting)
			}
			return err
		}
	}
	weaveRun := func() error {
		// No --rm: weave run removes a container it could not attach
		// (the probe ended first), and the bench waits for the probe
		// before it removes the container.
		out, err := w.cli(ctx, "run", "--label", label, img, "probe", weaveLn.Addr().String())
		if err != nil {
			return err
		}
		id := strings.TrimSpace(out)
		code, err := dockerCLI(ctx, nil, "wait", id)
		if _, rerr := dockerCLI(ctx, nil, "rm", "-f", "-v", id); err == nil {
			err = rerr
		}
		if err == nil && strings.TrimSpace(code) != "0" {
			err = fmt.Errorf("the probe exited %s", strings.TrimSpace(code))
		}
		return err
	}
	paths := []struct {
		name  string
		acc   *accepts
		start func() error
	}{
		{proxyPathProxy, weaveAcc, probe(proxyEnv, weaveLn.Addr())},
		{proxyPathDocker, bridgeAcc, probe(nil, bridgeLn.Addr())},
		{proxyPathWeaveRun, weaveAcc, weaveRun},
	}
	// One unmeasured run of each warms the image and the Engine.
	for _, path := range paths[:2] {
		if err := path.start(); err != nil {
			return fmt.Errorf("warm-up, %s: %w\nweave.log: %s", path.name, err, w.logTail(5))
		}
	}
	reached := make([][]time.Duration, len(paths))
	misses := make([]string, len(paths))
	for i := range cfg.proxyRuns {
		for k := range paths {
			j := (i + k) % len(paths) // which goes first rotates
			path := paths[j]
			if ctx.Err() != nil {
				return context.Cause(ctx)
			}
			d, ok, err := path.acc.time(path.start)
			switch {
			case ok:
				reached[j] = append(reached[j], d)
			case misses[j] == "":
				misses[j] = fmt.Sprintf("run %d: no connection", i+1)
				if err != nil {
					misses[j] += ": " + lastLines(err.Error(), 1)
				}
			}
			if err != nil && path.name != proxyPathWeaveRun {
				log.Warn("proxy: run failed", "path", path.name, "run", i+1, "err", err)
			}
		}
	}
	p.Rows = nil
	for j, path := range paths {
		p.Rows = append(p.Rows, summarizeProxy(path.name, reached[j], misses[j]))
	}
	p.setRatio()
	if bad := p.missing(); len(bad) > 0 {
		return fmt.Errorf("%s\nweave.log: %s", strings.Join(bad, "\n"), w.logTail(5))
	}
	return nil
}

// cli runs the weave CLI in our own namespace against w's router (it
// talks to the router's socket and runs the docker CLI; `ip netns exec`
// would add its own setup to every figure) and returns its standard
// output.
func (w *weaveHost) cli(ctx context.Context, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, proxyRunTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, w.bin, args...)
	cmd.Env = append(os.Environ(), w.env()...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		return out.String(), fmt.Errorf("weave %s: %w: %s", args[0], err, strings.TrimSpace(errb.String()))
	}
	return out.String(), nil
}

// dockerCLI runs the docker CLI with env added to ours and returns its
// standard output; the error carries its standard error.
func dockerCLI(ctx context.Context, env []string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, proxyRunTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "docker", args...)
	cmd.Env = append(os.Environ(), env...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		return out.String(), fmt.Errorf("docker %s: %w: %s", args[0], err, strings.TrimSpace(errb.String()))
	}
	return out.String(), nil
}

// accepts records when a listener accepted each connection; it answers
// every connection with proxyGreeting and closes it.
type accepts struct {
	at chan time.Time
}

// serveAccepts serves ln until the cleanup closes it (and waits for its
// goroutine).
func serveAccepts(ln net.Listener, undo *cleanups) *accepts {
	a := &accepts{at: make(chan time.Time, 64)}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				if errors.Is(err, net.ErrClosed) {
					return
				}
				time.Sleep(10 * time.Millisecond) // out of descriptors, say
				continue
			}
			now := time.Now()
			c.SetWriteDeadline(now.Add(time.Second))
			io.WriteString(c, proxyGreeting+"\n")
			c.Close()
			select {
			case a.at <- now:
			default:
			}
		}
	}()
	undo.push("close listener "+ln.Addr().String(), func() error {
		err := ln.Close()
		wg.Wait()
		return err
	})
	return a
}

// time runs start (a CLI, to its exit) and returns how long after its
// start the listener accepted a connection, and whether it did. When
// start succeeded (the probe got its line) the accept has happened: its
// time is waited for, briefly.
func (a *accepts) time(start func() error) (time.Duration, bool, error) {
	for len(a.at) > 0 {
		<-a.at
	}
	t0 := time.Now()
	err := start()
	wait := time.Duration(0)
	if err == nil {
		wait = time.Second
	}
	select {
	case at := <-a.at:
		return at.Sub(t0), true, err
	case <-time.After(wait):
		return 0, false, err
	}
}

// listen opens a listener inside the namespace, from a thread that enters
// it and is never used again (a socket keeps its namespace).
func (n netns) listen(network, addr string) (net.Listener, error) {
	type result struct {
		ln  net.Listener
		err error
	}
	c := make(chan result, 1)
	go func() {
		// No UnlockOSThread: the thread ends with the goroutine, so no
		// other goroutine ever runs in the namespace.
		runtime.LockOSThread()
		h, err := vnetns.GetFromName(n.name)
		if err != nil {
			c <- result{err: fmt.Errorf("open netns %s: %w", n.name, err)}
			return
		}
		defer h.Close()
		if err := vnetns.Set(h); err != nil {
			c <- result{err: fmt.Errorf("enter netns %s: %w", n.name, err)}
			return
		}
		ln, err := net.Listen(network, addr)
		if err != nil {
			err = fmt.Errorf("listen in %s: %w", n.name, err)
		}
		c <- result{ln, err}
	}()
	r := <-c
	return r.ln, r.err
}

// dockerBridgeIP is the IPv4 address of Docker's default bridge in the
// machine's namespace.
func dockerBridgeIP(ctx context.Context) (string, error) {
	name := "docker0"
	if out, err := dockerCLI(ctx, nil, "network", "inspect", "bridge", "--format", `{{index .Options "com.docker.network.bridge.name"}}`); err == nil {
		if s := strings.TrimSpace(out); s != "" && s != "<no value>" {
			name = s
		}
	}
	ifi, err := net.InterfaceByName(name)
	if err != nil {
		return "", fmt.Errorf("Docker's bridge %s (the baseline's network): %w", name, err)
	}
	addrs, err := ifi.Addrs()
	if err != nil {
		return "", fmt.Errorf("Docker's bridge %s: %w", name, err)
	}
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok && n.IP.To4() != nil {
			return n.IP.String(), nil
		}
	}
	return "", fmt.Errorf("Docker's bridge %s has no IPv4 address", name)
}

// buildProbeImage builds test/images/weavetest as a static binary and,
// unless the Engine has it, an image FROM scratch holding it, tagged by
// the binary's hash as harness.DockerImage does.
func buildProbeImage(ctx context.Context, tmp string) (string, error) {
	gomod, err := exec.CommandContext(ctx, "go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	mod := strings.TrimSpace(string(gomod))
	if mod == "" || mod == os.DevNull {
		return "", errors.New("not inside the weave module: run from the repository")
	}
	dir, err := os.MkdirTemp(tmp, "weavetest-image-")
	if err != nil {
		return "", err
	}
	bin := filepath.Join(dir, "weavetest")
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-o", bin, "./test/images/weavetest")
	cmd.Dir = filepath.Dir(mod)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build ./test/images/weavetest: %w: %s", err, lastLines(string(out), 10))
	}
	b, err := os.ReadFile(bin)
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256(b)
	ref := proxyImageRepo + ":" + hex.EncodeToString(sum[:])[:16]
	if _, err := dockerCLI(ctx, nil, "image", "inspect", "--format", "{{.Id}}", ref); err == nil {
		return ref, nil
	}
	dockerfile := "FROM scratch\nCOPY weavetest /weavetest\nENTRYPOINT [\"/weavetest\"]\n"
	if err := os.WriteFile(filepath.Join(dir, "Dockerfile"), []byte(dockerfile), 0o644); err != nil {
		return "", err
	}
	if _, err := dockerCLI(ctx, nil, "build", "-q", "-t", ref, dir); err != nil {
		return "", err
	}
	return ref, nil
}

// removeLabelled force-removes, by ID, every container that carries
// label (all started by this run of the bench).
func removeLabelled(label string) error {
	ctx := context.Background()
	out, err := dockerCLI(ctx, nil, "ps", "-a", "-q", "--no-trunc", "--filter", "label="+label)
	if err != nil {
		return err
	}
	var errs []error
	for _, id := range strings.Fields(out) {
		if _, err := dockerCLI(ctx, nil, "rm", "-f", "-v", id); err != nil && !strings.Contains(err.Error(), "No such container") {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
