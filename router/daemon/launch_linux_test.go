package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/weavelab/weave/mesh/identity"
	"github.com/weavelab/weave/router/api"
)

// The launch tests start this test binary as the "router": with
// $H7_FAKE_ROUTER set, TestMain runs fakeRouterMain instead of the tests.
const fakeRouterEnv = "H7_FAKE_ROUTER"

// fakeRouterMain behaves per $H7_FAKE_ROUTER: "ok" serves the API (with the
// password it was handed, and whether $WEAVE_PASSWORD leaked into its
// environment, as its nickname) until stopped; "fail" exits 1 with a
// message; "hang" never answers.
func fakeRouterMain() int {
	var pw []byte
	for _, a := range os.Args[1:] {
		if a == "--" {
			break
		}
		if a == fmt.Sprintf("--password-fd=%d", PasswordFD) {
			var err error
			if pw, err = ReadPasswordFD(PasswordFD); err != nil {
				fmt.Fprintln(os.Stderr, err)
				return 1
			}
		}
	}
	switch os.Getenv(fakeRouterEnv) {
	case "fail":
		fmt.Fprintln(os.Stderr, "starting")
		fmt.Fprintln(os.Stderr, "fake failure: boom")
		return 1
	case "hang":
		fmt.Fprintln(os.Stderr, "hanging")
		time.Sleep(time.Hour)
		return 1
	}
	paths := RunPaths(os.Getenv(EnvRunDir))
	lock, err := AcquirePIDLock(paths.PID)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer lock.Release()
	ln, err := ListenSocket(paths.Socket)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.Remove(paths.Socket)
	_, leaked := os.LookupEnv(EnvPassword)
	name, _ := identity.ParsePeerName("0a:00:00:00:00:01")
	ctl := &fakeControl{status: api.Status{
		PID:  os.Getpid(),
		Peer: identity.Peer{Name: name, NickName: fmt.Sprintf("pw=%s,leaked=%v,args=%d", pw, leaked, len(os.Args))},
	}}
	ctx, cancel := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer cancel()
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	if err := serveHTTP(ctx, ln, NewHandler(ctl, "fake", cancel, log), log); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

func launchOpts(t *testing.T, mode string) LaunchOptions {
	t.Helper()
	t.Setenv(fakeRouterEnv, mode)
	t.Setenv(EnvPassword, "must-not-leak")
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	return LaunchOptions{
		Exe:      exe,
		Args:     []string{"router", "--nickname=x", "--", "10.0.0.1:6783"},
		RunDir:   filepath.Join(dir, "run"),
		StateDir: filepath.Join(dir, "state"),
		Timeout:  20 * time.Second,
	}
}

// stopLaunched stops a router started by Launch and waits for it to exit.
func stopLaunched(t *testing.T, runDir string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := api.NewClient(RunPaths(runDir).Socket).Stop(ctx); err != nil {
		t.Errorf("stop: %v", err)
	}
	if err := WaitUnlocked(ctx, RunPaths(runDir).PID); err != nil {
		t.Errorf("wait for exit: %v", err)
	}
}

func TestLaunch(t *testing.T) {
	o := launchOpts(t, "ok")
	o.Password = []byte("s3cret")
	ctx := context.Background()
	st, err := Launch(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { stopLaunched(t, o.RunDir) })
	// The password arrived over the pipe; $WEAVE_PASSWORD did not follow;
	// argv has the flag for the pipe inserted before "--".
	if want := "pw=s3cret,leaked=false,args=6"; st.Peer.NickName != want {
		t.Errorf("router saw %q, want %q", st.Peer.NickName, want)
	}
	cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", st.PID))
	if err != nil {
		t.Fatal(err)
	}
	args := strings.Split(strings.TrimRight(string(cmdline), "\x00"), "\x00")
	if want := []string{"router", "--password-fd=3", "--nickname=x", "--", "10.0.0.1:6783"}; strings.Join(args[1:], " ") != strings.Join(want, " ") {
		t.Errorf("router argv %q, want %q", args[1:], want)
	}
	if strings.Contains(string(cmdline), "s3cret") {
		t.Error("password in the router's argv")
	}
	// Detached: its own session, stdio on the log file.
	if sid, _ := unix.Getsid(st.PID); sid != st.PID {
		t.Errorf("router session %d, want its own (%d)", sid, st.PID)
	}
	if target, _ := os.Readlink(fmt.Sprintf("/proc/%d/fd/2", st.PID)); target != RunPaths(o.RunDir).Log {
		t.Errorf("router stderr -> %q, want the log file", target)
	}

	var re *RunningError
	if err := CheckNotRunning(ctx, o.RunDir); !errors.As(err, &re) || re.PID != st.PID {
		t.Errorf("CheckNotRunning = %v, want running (pid %d)", err, st.PID)
	}
	_, err = Launch(ctx, o)
	if !errors.As(err, &re) || err.Error() != fmt.Sprintf("weave is already running (pid %d)", st.PID) {
		t.Errorf("second launch: %v", err)
	}
}

func TestLaunchReplacesStaleFiles(t *testing.T) {
	o := launchOpts(t, "ok")
	paths := RunPaths(o.RunDir)
	os.MkdirAll(o.RunDir, 0o755)
	// What a killed daemon leaves: a socket nobody listens on, a pid file
	// nobody locks.
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: paths.Socket, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	ln.SetUnlinkOnClose(false)
	ln.Close()
	os.WriteFile(paths.PID, []byte("999999\n"), 0o644)
	if err := CheckNotRunning(context.Background(), o.RunDir); err != nil {
		t.Fatalf("stale files count as running: %v", err)
	}
	st, err := Launch(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	stopLaunched(t, o.RunDir)
	if st.PID == 0 || st.Peer.NickName != "pw=,leaked=false,args=5" {
		t.Errorf("status %+v", st)
	}
	if _, err := os.Stat(paths.Socket); !os.IsNotExist(err) {
		t.Errorf("socket left after stop: %v", err)
	}
}

func TestLaunchFailure(t *testing.T) {
	o := launchOpts(t, "fail")
	_, err := Launch(context.Background(), o)
	if err == nil || !strings.Contains(err.Error(), "exit status 1") || !strings.Contains(err.Error(), "fake failure: boom") ||
		strings.Contains(err.Error(), "starting") || strings.Contains(err.Error(), "\n") {
		t.Fatalf("err = %v; want one line with the exit status and the router's last line", err)
	}
}

func TestLaunchTimeout(t *testing.T) {
	o := launchOpts(t, "hang")
	o.Timeout = 300 * time.Millisecond
	_, err := Launch(context.Background(), o)
	// (Whether "hanging" made it to the log within the timeout depends on
	// scheduling, so only the timeout itself is checked.)
	if err == nil || !strings.Contains(err.Error(), "did not answer") || !strings.Contains(err.Error(), "last log lines") {
		t.Fatalf("err = %v; want a timeout with the log's last lines", err)
	}
}

// TestReportMapUDPOffload: report's config shows --no-udp-offload.
func TestReportMapUDPOffload(t *testing.T) {
	for _, off := range []bool{false, true} {
		c := DefaultConfig()
		c.NoUDPOffload = off
		if got, ok := c.reportMap()["no_udp_offload"]; !ok || got != off {
			t.Errorf("report config no_udp_offload = %v (present %v), want %v", got, ok, off)
		}
	}
}
