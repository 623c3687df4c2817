package daemon

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/weavelab/weave/router/api"
)

// PasswordFD is the descriptor on which a launched router finds the
// password (the first of exec.Cmd.ExtraFiles).
const PasswordFD = 3

// LaunchOptions say how to start a background router.
type LaunchOptions struct {
	Exe      string   // the weave binary, usually os.Executable()
	Args     []string // arguments after the binary: "router", flags, "--", peers
	Password []byte   // handed over a pipe, never in argv or the environment
	RunDir   string
	StateDir string
	Timeout  time.Duration // how long to wait for the socket to answer
}

// CheckNotRunning returns a *RunningError when a daemon answers on the
// socket in runDir or holds its pid lock (it may still be starting). A
// stale socket or pid file left by a killed daemon is not an error: the
// next daemon replaces them.
func CheckNotRunning(ctx context.Context, runDir string) error {
	p := RunPaths(runDir)
	if v, err := api.NewClient(p.Socket).Version(ctx); err == nil {
		return &RunningError{PID: v.PID}
	}
	if held, pid := LockHolder(p.PID); held {
		return &RunningError{PID: pid}
	}
	return nil
}

// Launch starts `weave router ...` as a detached process (own session,
// stdio to the log file) and waits until it answers on its socket. It
// returns the daemon's status. If the router exits or does not answer in
// time, the error carries the last lines it logged.
func Launch(ctx context.Context, o LaunchOptions) (api.Status, error) {
	if err := CheckDirs(o.RunDir, o.StateDir); err != nil {
		return api.Status{}, err
	}
	if err := CheckNotRunning(ctx, o.RunDir); err != nil {
		return api.Status{}, err
	}
	logf, err := OpenLog(o.RunDir)
	if err != nil {
		return api.Status{}, err
	}
	defer logf.Close()
	start, _ := logf.Seek(0, io.SeekEnd)

	closeOnExecInherited()
	cmd := exec.Command(o.Exe, o.Args...)
	cmd.Dir = "/"   // do not pin the caller's working directory
	cmd.Stdin = nil // /dev/null
	cmd.Stdout = logf
	cmd.Stderr = logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	cmd.Env = append(filterEnv(os.Environ(), EnvPassword, EnvRunDir, EnvStateDir),
		EnvRunDir+"="+o.RunDir, EnvStateDir+"="+o.StateDir)
	var pw *os.File
	if o.Password != nil {
		r, w, err := os.Pipe()
		if err != nil {
			return api.Status{}, fmt.Errorf("password pipe: %w", err)
		}
		defer r.Close()
		pw = w
		cmd.ExtraFiles = []*os.File{r}
		// After the subcommand, before any "--" that ends the flags.
		cmd.Args = slices.Insert(cmd.Args, min(2, len(cmd.Args)), fmt.Sprintf("--password-fd=%d", PasswordFD))
	}
	if err := cmd.Start(); err != nil {
		if pw != nil {
			pw.Close()
		}
		return api.Status{}, fmt.Errorf("start weave router: %w", err)
	}
	if pw != nil {
		// The password is far smaller than a pipe's buffer, so this does
		// not block even if the child never reads.
		_, werr := pw.Write(o.Password)
		pw.Close()
		if werr != nil {
			cmd.Process.Kill()
			cmd.Wait()
			return api.Status{}, fmt.Errorf("hand password to weave router: %w", werr)
		}
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()

	client := api.NewClient(RunPaths(o.RunDir).Socket)
	timeout := o.Timeout
	if timeout <= 0 {
		timeout = 30 * time.Second
	}
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case err := <-exited:
			// The router's last line is its error (see cmd/weave's main).
			return api.Status{}, fmt.Errorf("weave router exited (%v): %s (log: %s)", err, logTail(logf.Name(), start, 1), logf.Name())
		case <-deadline.C:
			cmd.Process.Signal(syscall.SIGTERM)
			return api.Status{}, fmt.Errorf("weave router (pid %d) did not answer on %s within %s, stopped it; last log lines: %s",
				cmd.Process.Pid, client.Socket(), timeout, logTail(logf.Name(), start, 3))
		case <-ctx.Done():
			cmd.Process.Signal(syscall.SIGTERM)
			return api.Status{}, fmt.Errorf("launch: %w", ctx.Err())
		case <-tick.C:
		}
		pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		st, err := client.Status(pctx)
		cancel()
		if err == nil {
			if st.PID != cmd.Process.Pid {
				// Another launch won the race; ours will exit.
				return api.Status{}, &RunningError{PID: st.PID}
			}
			// The goroutine in cmd.Wait stays until the router exits or
			// this process does, which is right after.
			return st, nil
		}
		if !errors.Is(err, api.ErrNotRunning) {
			var re *api.RemoteError
			if errors.As(err, &re) {
				return api.Status{}, fmt.Errorf("weave router started but status failed: %w", err)
			}
		}
	}
}

// closeOnExecInherited marks every descriptor above stderr close-on-exec,
// so that the daemon does not keep open the pipes this process inherited
// (a test harness waiting for EOF on them would hang). Go opens its own
// files close-on-exec already; ExtraFiles are passed explicitly.
func closeOnExecInherited() {
	entries, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return
	}
	for _, e := range entries {
		if fd, err := strconv.Atoi(e.Name()); err == nil && fd > 2 {
			syscall.CloseOnExec(fd)
		}
	}
}

// filterEnv returns env without the given variables.
func filterEnv(env []string, drop ...string) []string {
	out := env[:0:0]
outer:
	for _, kv := range env {
		for _, d := range drop {
			if strings.HasPrefix(kv, d+"=") {
				continue outer
			}
		}
		out = append(out, kv)
	}
	return out
}

// logTail returns the last n non-empty lines written to path after offset,
// joined on one line.
func logTail(path string, offset int64, n int) string {
	f, err := os.Open(path)
	if err != nil {
		return "(no log: " + err.Error() + ")"
	}
	defer f.Close()
	const maxTail = 64 << 10
	if st, err := f.Stat(); err == nil && st.Size()-offset > maxTail {
		offset = st.Size() - maxTail
	}
	if _, err := f.Seek(offset, io.SeekStart); err != nil {
		return "(no log)"
	}
	b, _ := io.ReadAll(io.LimitReader(f, maxTail))
	var lines []string
	for _, l := range strings.Split(string(b), "\n") {
		if l = strings.TrimSpace(l); l != "" {
			lines = append(lines, l)
		}
	}
	if len(lines) == 0 {
		return "(nothing logged)"
	}
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, " | ")
}
