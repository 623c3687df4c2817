package harness

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/weavelab/weave/router/api"
	"github.com/weavelab/weave/router/daemon"
)

// Host is one machine of the test: a namespace on the LAN that runs one
// weave router with its own run and state directories.
type Host struct {
	Netns
	HostName string // short name given to AddHost, also the router's nickname
	IP       string // address on the LAN
	RunDir   string // $WEAVE_RUN_DIR
	StateDir string // $WEAVE_STATE_DIR
	// Password, when not empty, is passed as $WEAVE_PASSWORD to every
	// weave command run on the host. Set it before Launch.
	Password string
	// PeerName is what the last Launch printed.
	PeerName string
	// DockerHost, when not empty, is the host's own Docker Engine
	// (StartDockerd), passed as $DOCKER_HOST to every weave command.
	// Without one, launch gets a plugin name of the host's own and
	// --no-default-network, so that routers under test leave the
	// machine's Engine and each other's plugin sockets alone.
	DockerHost string

	lan *LAN
}

func (h *Host) env() []string {
	env := []string{"WEAVE_RUN_DIR=" + h.RunDir, "WEAVE_STATE_DIR=" + h.StateDir}
	if h.Password != "" {
		env = append(env, "WEAVE_PASSWORD="+h.Password)
	}
	if h.DockerHost != "" {
		env = append(env, "DOCKER_HOST="+h.DockerHost)
	}
	return env
}

// pluginArgs adds, to a launch or router command on a host without an
// Engine of its own, a plugin name unique to the host and
// --no-default-network, unless args set them.
func (h *Host) pluginArgs(args []string) []string {
	if h.DockerHost != "" || len(args) == 0 || (args[0] != "launch" && args[0] != "router") {
		return args
	}
	extra := []string{}
	if !slices.ContainsFunc(args, func(a string) bool { return strings.HasPrefix(a, "--plugin-name") }) {
		extra = append(extra, "--plugin-name="+h.PluginName())
	}
	if !slices.Contains(args, "--no-default-network") {
		extra = append(extra, "--no-default-network")
	}
	return append(append([]string{args[0]}, extra...), args[1:]...)
}

// Weave runs the weave CLI on the host and logs the command and its result.
func (h *Host) Weave(args ...string) Result {
	h.lan.t.Helper()
	r := h.weaveQuiet(context.Background(), args...)
	h.lan.t.Logf("%s: %s", h.HostName, r)
	return r
}

// WeaveCtx is Weave with a context.
func (h *Host) WeaveCtx(ctx context.Context, args ...string) Result {
	h.lan.t.Helper()
	r := h.weaveQuiet(ctx, args...)
	h.lan.t.Logf("%s: %s", h.HostName, r)
	return r
}

func (h *Host) weaveQuiet(ctx context.Context, args ...string) Result {
	return h.weaveWith(ctx, Binary(h.lan.t), args...)
}

func (h *Host) weaveWith(ctx context.Context, bin string, args ...string) Result {
	r := h.RunEnv(ctx, h.env(), append([]string{bin}, h.pluginArgs(args)...)...)
	r.Args = append([]string{"weave"}, args...)
	return r
}

// WeaveQuiet runs the weave CLI on the host without logging (for polls).
func (h *Host) WeaveQuiet(args ...string) Result {
	return h.weaveQuiet(context.Background(), args...)
}

// MustWeave runs the weave CLI and fails the test unless it exits 0; it
// returns the standard output.
func (h *Host) MustWeave(args ...string) string {
	h.lan.t.Helper()
	r := h.Weave(args...)
	if !r.OK() {
		h.lan.t.Fatalf("%s: weave %s: %v", h.HostName, strings.Join(args, " "), r.Err)
	}
	return r.Stdout
}

// Launch runs `weave launch` with args (adding --nickname HOSTNAME unless
// args set one) and records the peer name it prints.
func (h *Host) Launch(args ...string) string {
	h.lan.t.Helper()
	if !slices.ContainsFunc(args, func(a string) bool { return strings.HasPrefix(a, "--nickname") }) {
		args = append([]string{"--nickname", h.HostName}, args...)
	}
	out := strings.TrimSpace(h.MustWeave(append([]string{"launch"}, args...)...))
	if f := strings.Fields(out); len(f) > 0 {
		h.PeerName = f[len(f)-1]
	}
	return h.PeerName
}

// Stop runs `weave stop` and fails the test if it fails.
func (h *Host) Stop() {
	h.lan.t.Helper()
	h.MustWeave("stop")
}

// PID returns the pid in the router's pid file, or 0.
func (h *Host) PID() int {
	b, err := os.ReadFile(filepath.Join(h.RunDir, "weave.pid"))
	if err != nil {
		return 0
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		return 0
	}
	return pid
}

// inOurNetns reports whether pid lives in the host's namespace, i.e. is a
// process this test started there.
func (h *Host) inOurNetns(pid int) bool {
	return slices.Contains(netnsPIDs(h.Name), pid)
}

// Kill SIGKILLs the router (by its pid file, and only if that process
// runs in this host's namespace) and waits until it is gone, leaving its
// socket and pid file behind as a crash would.
func (h *Host) Kill() {
	h.lan.t.Helper()
	pid := h.PID()
	if pid == 0 || !h.inOurNetns(pid) {
		h.lan.t.Fatalf("%s: kill: no router running (pid file says %d)", h.HostName, pid)
	}
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		h.lan.t.Fatalf("%s: kill %d: %v", h.HostName, pid, err)
	}
	// The main thread turns zombie before the others have exited and let
	// go of the pid file's lock: wait for both.
	pidFile := filepath.Join(h.RunDir, "weave.pid")
	WaitFor(h.lan.t, 10*time.Second, func() (bool, string) {
		if !processGone(pid) {
			return false, fmt.Sprintf("pid %d still running", pid)
		}
		if held, _ := daemon.LockHolder(pidFile); held {
			return false, fmt.Sprintf("pid %d gone but its pid file is still locked", pid)
		}
		return true, ""
	})
	h.lan.t.Logf("%s: killed router pid %d", h.HostName, pid)
}

// stopQuietly is the cleanup's stop: weave stop, then SIGKILL whatever is
// left in the namespace.
func (h *Host) stopQuietly() {
	if pid := h.PID(); pid != 0 && h.inOurNetns(pid) {
		if bin, ok := builtBinary(); ok {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			h.weaveWith(ctx, bin, "stop")
			cancel()
		}
	}
	killNetns(h.Name)
}

// StatusJSON runs `weave status [section] --json` and decodes it into v.
func (h *Host) StatusJSON(section string, v any) error {
	args := []string{"status"}
	if section != "" {
		args = append(args, section)
	}
	r := h.weaveQuiet(context.Background(), append(args, "--json")...)
	if !r.OK() {
		return fmt.Errorf("%s: %v: %s", strings.Join(r.Args, " "), r.Err, strings.TrimSpace(r.Stderr))
	}
	if err := json.Unmarshal([]byte(r.Stdout), v); err != nil {
		return fmt.Errorf("%s: decode: %w: %q", strings.Join(r.Args, " "), err, r.Stdout)
	}
	return nil
}

// Status returns `weave status --json`.
func (h *Host) Status() (api.Status, error) {
	var st api.Status
	err := h.StatusJSON("", &st)
	return st, err
}

// Log returns the router's log file.
func (h *Host) Log() string {
	b, _ := os.ReadFile(filepath.Join(h.RunDir, "weave.log"))
	return string(b)
}

func (h *Host) dump() {
	t := h.lan.t
	log := strings.Split(strings.TrimRight(h.Log(), "\n"), "\n")
	if len(log) > 60 {
		log = log[len(log)-60:]
	}
	t.Logf("==== %s (%s) weave.log tail ====\n%s", h.HostName, h.IP, strings.Join(log, "\n"))
	bin, ok := builtBinary()
	if !ok {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, args := range [][]string{{"status"}, {"status", "connections"}} {
		r := h.weaveWith(ctx, bin, args...)
		t.Logf("==== %s ====\n%s", h.HostName, r)
	}
}
