// Command weave is both the CLI and the router daemon of the weave overlay
// network: `weave launch` starts the daemon in the background, `weave
// router` runs it in the foreground, and the other commands talk to it over
// its Unix socket. This package only parses flags and arguments (see
// commands.go and the files it names) and turns errors into exit codes;
// the work is done by router/daemon and router/api.
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime"
	"strings"
	"syscall"
)

// version is the build's version, set with -ldflags "-X main.version=...".
var version = "0.1.0-dev"

// init keeps `weave wait-iface` (the proxy's entrypoint in containers) on
// the main thread: its exec then replaces the process without the moment,
// which an exec from another thread has, when /proc/PID/ns/net is missing
// and the router would take the container for gone.
func init() {
	if len(os.Args) > 1 && os.Args[1] == "wait-iface" {
		runtime.LockOSThread()
	}
}

func main() {
	if isCNIPlugin(os.Args[0]) {
		os.Exit(runCNIPlugin())
	}
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// run executes one command line and returns the exit code: 0 on success,
// 1 with a one-line error on stderr otherwise.
func run(args []string, stdout, stderr io.Writer) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	root := newRootCommand(stdout, stderr)
	root.SetArgs(args)
	if err := root.ExecuteContext(ctx); err != nil {
		fmt.Fprintln(stderr, oneLine(err.Error()))
		return 1
	}
	return 0
}

func oneLine(s string) string {
	return strings.Join(strings.Fields(strings.ReplaceAll(s, "\n", " ")), " ")
}
