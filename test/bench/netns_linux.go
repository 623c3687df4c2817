package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// cmdTimeout bounds a command run without a deadline of its own.
const cmdTimeout = 60 * time.Second

// netns is a named network namespace (/var/run/netns/NAME) that this
// program made; commands run in it through `ip netns exec`, which execs
// the command, so a started process's PID is the command's own.
type netns struct {
	name string
	log  *slog.Logger
}

// run runs args in the namespace with env added to ours and returns its
// standard output. The error carries the exit status and standard error.
func (n netns) run(ctx context.Context, env []string, args ...string) (string, error) {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, cmdTimeout)
		defer cancel()
	}
	n.log.Debug("run", "netns", n.name, "cmd", strings.Join(args, " "))
	cmd := exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", n.name}, args...)...)
	cmd.Env = append(os.Environ(), env...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	// `weave launch` forks a daemon that may keep our pipes open: do not
	// wait for them to close once the command itself has exited.
	cmd.WaitDelay = 2 * time.Second
	err := cmd.Run()
	if errors.Is(err, exec.ErrWaitDelay) && cmd.ProcessState != nil && cmd.ProcessState.Success() {
		err = nil
	}
	if err != nil {
		if ctx.Err() != nil {
			err = fmt.Errorf("%w (%w)", err, ctx.Err())
		}
		msg := strings.TrimSpace(errb.String())
		if msg == "" {
			msg = lastLines(out.String(), 3)
		}
		return out.String(), fmt.Errorf("in %s: %s: %w: %s", n.name, strings.Join(args, " "), err, msg)
	}
	return out.String(), nil
}

// must is run without env, for setup commands.
func (n netns) must(ctx context.Context, args ...string) error {
	_, err := n.run(ctx, nil, args...)
	return err
}

// proc is a command running in the background in a namespace.
type proc struct {
	cmd  *exec.Cmd
	out  bytes.Buffer
	errb bytes.Buffer
	done chan struct{}
}

// start starts args in the background. Stop it with stop.
func (n netns) start(args ...string) (*proc, error) { return n.startEnv(nil, args...) }

// startEnv is start with env added to ours.
func (n netns) startEnv(env []string, args ...string) (*proc, error) {
	n.log.Debug("start", "netns", n.name, "cmd", strings.Join(args, " "))
	p := &proc{done: make(chan struct{})}
	p.cmd = exec.Command("ip", append([]string{"netns", "exec", n.name}, args...)...)
	if env != nil {
		p.cmd.Env = append(os.Environ(), env...)
	}
	p.cmd.Stdout, p.cmd.Stderr = &p.out, &p.errb
	if err := p.cmd.Start(); err != nil {
		return nil, fmt.Errorf("in %s: start %s: %w", n.name, args[0], err)
	}
	go func() {
		_ = p.cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

// stop ends the process (SIGTERM by its PID, SIGKILL after 3 s) and
// waits for it; it returns what the process wrote to standard error.
func (p *proc) stop() string {
	select {
	case <-p.done:
		return p.errb.String()
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(3 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
	return p.errb.String()
}

// inode identifies the namespace for comparison with /proc/PID/ns/net.
func (n netns) inode() (dev, ino uint64, err error) {
	var st syscall.Stat_t
	if err := syscall.Stat(filepath.Join("/var/run/netns", n.name), &st); err != nil {
		return 0, 0, fmt.Errorf("netns %s: %w", n.name, err)
	}
	return st.Dev, st.Ino, nil
}

// holds reports whether process pid lives in the namespace.
func (n netns) holds(pid int) bool {
	dev, ino, err := n.inode()
	if err != nil {
		return false
	}
	var st syscall.Stat_t
	if syscall.Stat(fmt.Sprintf("/proc/%d/ns/net", pid), &st) != nil {
		return false
	}
	return st.Dev == dev && st.Ino == ino
}

// pids lists the processes that live in the namespace. Only this
// program and what it started enter its namespaces.
func (n netns) pids() []int {
	dev, ino, err := n.inode()
	if err != nil {
		return nil
	}
	entries, _ := os.ReadDir("/proc")
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		var st syscall.Stat_t
		if syscall.Stat(filepath.Join("/proc", e.Name(), "ns", "net"), &st) == nil && st.Dev == dev && st.Ino == ino {
			pids = append(pids, pid)
		}
	}
	return pids
}

// killAll SIGKILLs, by PID, every process left in the namespace and waits
// up to 5 s for them to go, so that deleting the namespace frees its links.
func (n netns) killAll() {
	pids := n.pids()
	for _, pid := range pids {
		n.log.Debug("kill leftover process", "netns", n.name, "pid", pid)
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
	deadline := time.Now().Add(5 * time.Second)
	for len(n.pids()) > 0 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
}
