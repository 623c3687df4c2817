package main

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

const (
	// weaveSubnet is outside weave's default --ipalloc-range
	// (10.32.0.0/12): a static address inside it must lie in the
	// attaching router's share of the range, which h2's would not.
	weaveSubnet   = "10.1.40"
	weaveCtrIf    = "ethwe" // the container end weave attach makes
	benchPassword = "weave-bench-password"
)

// buildWeave builds ./cmd/weave of the module we run in into dir.
func buildWeave(ctx context.Context, dir string) (string, error) {
	gomod, err := exec.CommandContext(ctx, "go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	mod := strings.TrimSpace(string(gomod))
	if mod == "" || mod == os.DevNull {
		return "", fmt.Errorf("not inside the weave module: run from the repository or pass -weave")
	}
	root := filepath.Dir(mod)
	bin := filepath.Join(dir, "weave")
	cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, "./cmd/weave")
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build ./cmd/weave in %s: %w: %s", root, err, lastLines(string(out), 10))
	}
	return bin, nil
}

// weaveHost is one host's router: the CLI run with the host's own run and
// state directories (fresh for each scenario).
type weaveHost struct {
	*host
	bin      string
	runDir   string
	stateDir string
	password string
}

func (w *weaveHost) env() []string {
	env := []string{"WEAVE_RUN_DIR=" + w.runDir, "WEAVE_STATE_DIR=" + w.stateDir}
	if w.password != "" {
		env = append(env, "WEAVE_PASSWORD="+w.password)
	}
	return env
}

// weave runs the CLI in the host's namespace.
func (w *weaveHost) weave(ctx context.Context, args ...string) (string, error) {
	args = w.pluginArgs(ctx, args)
	out, err := w.run(ctx, w.env(), append([]string{w.bin}, args...)...)
	if err != nil {
		return out, fmt.Errorf("%s: weave %s: %w", w.short, args[0], err)
	}
	return out, nil
}

// hasPluginFlags caches, per weave binary, whether its launch has the
// Docker plugin's flags.
var hasPluginFlags sync.Map // bin -> bool

// pluginArgs gives a launch, on a binary that has the Docker plugin, a
// plugin name of its own and --no-default-network: a bench leaves the
// machine's Engine without a "weave" network and routers on several
// bench hosts do not contend for one plugin socket.
func (w *weaveHost) pluginArgs(ctx context.Context, args []string) []string {
	if len(args) == 0 || args[0] != "launch" {
		return args
	}
	has, ok := hasPluginFlags.Load(w.bin)
	if !ok {
		h, err := launchHasFlag(ctx, w.bin, "--no-default-network")
		has = err == nil && h
		hasPluginFlags.Store(w.bin, has)
	}
	if !has.(bool) {
		return args
	}
	name := fmt.Sprintf("--plugin-name=weavebench-%d-%s", os.Getpid(), w.short)
	return append([]string{args[0], "--no-default-network", name}, args[1:]...)
}

// pid is the router's PID from its pid file, if that process lives in the
// host's namespace (so it is one we started); 0 otherwise.
func (w *weaveHost) pid() int {
	b, err := os.ReadFile(filepath.Join(w.runDir, "weave.pid"))
	if err != nil {
		return 0
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || !w.holds(pid) {
		return 0
	}
	return pid
}

// logTail is the end of the router's log, for error messages.
func (w *weaveHost) logTail(n int) string {
	b, err := os.ReadFile(filepath.Join(w.runDir, "weave.log"))
	if err != nil {
		return "(no weave.log)"
	}
	return lastLines(string(b), n)
}

// teardown resets the router (stop, then remove bridge, TAP and veths) and
// kills it by PID if it survived.
func (w *weaveHost) teardown() error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	pid := w.pid()
	_, err := w.weave(ctx, "reset")
	if pid != 0 && w.holds(pid) {
		w.log.Debug("router survived reset: killing it", "netns", w.name, "pid", pid)
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
	return err
}

// setupWeave launches a router on each host with flags (host 2 given host
// 1 as its peer), waits until both see an established connection, and
// attaches each container. With password, the network is encrypted, and
// both routers must report the suite enc wants. In scenario weave-fastdp
// it waits until the connection is on the fast path, where status says.
func setupWeave(ctx context.Context, l *lab, bin, scenario, password string, enc encryption, flags []string, undo *cleanups) (*endpoints, error) {
	var hosts [2]*weaveHost
	for i, h := range l.hosts {
		w := &weaveHost{host: h, bin: bin, password: password}
		for _, d := range []*string{&w.runDir, &w.stateDir} {
			dir, err := os.MkdirTemp(l.tmp, fmt.Sprintf("%s-%s-", scenario, h.short))
			if err != nil {
				return nil, fmt.Errorf("%s: %w", scenario, err)
			}
			*d = dir
		}
		hosts[i] = w
	}
	for i, w := range hosts {
		args := append([]string{"launch", "--nickname", w.short}, flags...)
		if i == 1 {
			args = append(args, hosts[0].ip)
		}
		undo.push("weave reset on "+w.short, w.teardown)
		if _, err := w.weave(ctx, args...); err != nil {
			return nil, fmt.Errorf("%w\nweave.log: %s", err, w.logTail(5))
		}
	}
	start := time.Now()
	for _, w := range hosts {
		if err := waitEstablished(ctx, w); err != nil {
			return nil, err
		}
	}
	var cipher string
	for _, w := range hosts {
		ci, err := connection(ctx, w)
		if err != nil {
			return nil, err
		}
		c := ci.Cipher
		if password != "" && (c == "" || enc.suite != "" && c != enc.suite) {
			return nil, fmt.Errorf("%s: %s's connection reports cipher %q, want %s", scenario, w.short, c, cmp.Or(enc.suite, "one"))
		}
		if password == "" && c != "" {
			return nil, fmt.Errorf("%s: %s's connection reports cipher %q without a password", scenario, w.short, c)
		}
		cipher = c
	}
	l.log.Info("weave connection established", "scenario", scenario, "cipher", cipher, "after", time.Since(start).Round(10*time.Millisecond))
	ep := &endpoints{dst: weaveSubnet + ".2", cipher: cipher, warmup: scenario == scenarioFastDP, diagnose: func() string {
		var b strings.Builder
		for _, w := range hosts {
			fmt.Fprintf(&b, "%s weave.log:\n%s\n", w.short, w.logTail(5))
		}
		return strings.TrimSpace(b.String())
	}}
	for i, w := range hosts {
		addr := fmt.Sprintf("%s.%d/24", weaveSubnet, i+1)
		if _, err := w.weave(ctx, "attach", addr, "netns:"+w.container.name); err != nil {
			return nil, err
		}
		if pid := w.pid(); pid != 0 {
			ep.routers = append(ep.routers, pid)
		}
	}
	mtu, err := linkMTU(ctx, l.hosts[0].container, weaveCtrIf)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", scenario, err)
	}
	ep.mtu = mtu
	if ep.path, err = waitPath(ctx, scenario, hosts); err != nil {
		return nil, err
	}
	return ep, nil
}

// waitPath returns the path (fastdp, sleeve) that both hosts' status
// reports for their connection, "" when status does not say (a weave
// before the fast path). In scenario weave-fastdp it first waits up to 30
// s for both to report the fast path.
func waitPath(ctx context.Context, scenario string, hosts [2]*weaveHost) (string, error) {
	var paths [2]string
	read := func() (bool, string) {
		for i, w := range hosts {
			ci, err := connection(ctx, w)
			if err != nil {
				return false, err.Error()
			}
			paths[i] = ci.Path
		}
		fast := paths[0] == pathFastDP && paths[1] == pathFastDP
		unknown := paths[0] == "" && paths[1] == ""
		return fast || unknown || scenario != scenarioFastDP, fmt.Sprintf("connection paths %s %q, %s %q, want %s",
			hosts[0].short, paths[0], hosts[1].short, paths[1], pathFastDP)
	}
	if err := poll(ctx, 30*time.Second, 250*time.Millisecond, read); err != nil {
		return "", fmt.Errorf("%s: waiting for the fast path: %w\nweave.log: %s", scenario, err, hosts[0].logTail(5))
	}
	if paths[0] != paths[1] {
		return paths[0] + "/" + paths[1], nil
	}
	return paths[0], nil
}

// pathFastDP is what status reports as the path of a connection on the
// kernel fast path.
const pathFastDP = "fastdp"

// connInfo is what the bench reads of a connection's status.
type connInfo struct {
	State  string `json:"state"`
	Cipher string `json:"cipher"` // data-plane cipher suite, "" when not encrypted
	Path   string `json:"path"`   // fastdp or sleeve; "" from a weave before the fast path
}

// connection is the host's established connection, from `weave status
// connections --json`.
func connection(ctx context.Context, w *weaveHost) (connInfo, error) {
	out, err := w.weave(ctx, "status", "connections", "--json")
	if err != nil {
		return connInfo{}, err
	}
	var conns []connInfo
	if err := json.Unmarshal([]byte(out), &conns); err != nil {
		return connInfo{}, fmt.Errorf("%s: weave status connections --json: %w: %q", w.short, err, lastLines(out, 3))
	}
	for _, c := range conns {
		if c.State == "established" {
			return c, nil
		}
	}
	return connInfo{}, fmt.Errorf("%s: no established connection in weave status connections", w.short)
}

// waitEstablished polls `weave status connections --json` until the host
// has an established connection.
func waitEstablished(ctx context.Context, w *weaveHost) error {
	return waitEstablishedN(ctx, w, 1)
}

// waitEstablishedN polls `weave status connections --json` until the host
// has at least n established connections.
func waitEstablishedN(ctx context.Context, w *weaveHost, n int) error {
	err := poll(ctx, 30*time.Second, 250*time.Millisecond, func() (bool, string) {
		out, err := w.weave(ctx, "status", "connections", "--json")
		if err != nil {
			return false, err.Error()
		}
		var conns []struct {
			Addr   string `json:"addr"`
			State  string `json:"state"`
			Reason string `json:"reason"`
		}
		if err := json.Unmarshal([]byte(out), &conns); err != nil {
			return false, fmt.Sprintf("weave status connections --json: %v: %q", err, lastLines(out, 3))
		}
		var states []string
		established := 0
		for _, c := range conns {
			if c.State == "established" {
				established++
			}
			s := c.Addr + " " + c.State
			if c.Reason != "" {
				s += " (" + c.Reason + ")"
			}
			states = append(states, s)
		}
		return established >= n, fmt.Sprintf("%d established connections, want %d: [%s]", established, n, strings.Join(states, "; "))
	})
	if err != nil {
		return fmt.Errorf("%s: waiting for weave connections: %w\nweave.log: %s", w.short, err, w.logTail(5))
	}
	return nil
}
