package docker

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os/exec"
	"strings"
)

// ErrNoCLI means `weave run` could not find the docker CLI.
var ErrNoCLI = errors.New("weave run needs the docker CLI in PATH")

// Run runs `docker run -d ARGS...` with the docker CLI found in this
// process's PATH, in environment env (nil: this process's, so DOCKER_HOST
// and the CLI's own settings apply), and returns the full ID of the
// container it started.
//
// Failures are one line: "docker run: " and the line of docker's stderr
// that says what went wrong. When docker created the container but could
// not start it (a bad entrypoint, say), the container stays behind in
// state "created": Run then returns its ID along with the error, so that
// the caller can remove it. Killing the CLI when ctx ends may also leave a
// container behind, whose ID is not known. An image that is not local is
// pulled first, which takes as long as the registry does.
func Run(ctx context.Context, env []string, args []string) (string, error) {
	bin, err := exec.LookPath("docker")
	if err != nil {
		return "", ErrNoCLI
	}
	cmd := exec.CommandContext(ctx, bin, append([]string{"run", "-d"}, args...)...)
	cmd.Env = env
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err = cmd.Run()
	if ctx.Err() != nil {
		return "", fmt.Errorf("docker run: %w", ctx.Err())
	}
	return parseRun(stdout.String(), stderr.String(), err)
}

// parseRun turns what `docker run -d` printed and how it exited into the
// container ID and a one-line error.
func parseRun(stdout, stderr string, runErr error) (string, error) {
	id := lastLine(stdout, func(string) bool { return true })
	if runErr != nil {
		if !IsFullID(id) {
			id = ""
		}
		if msg := runErrorLine(stderr); msg != "" {
			return id, fmt.Errorf("docker run: %s", msg)
		}
		return id, fmt.Errorf("docker run: %w", runErr)
	}
	if !IsFullID(id) {
		if id == "" {
			return "", errors.New("docker run: printed no container ID")
		}
		return "", fmt.Errorf("docker run: printed %q, not a container ID", id)
	}
	return id, nil
}

// runErrorLine picks the line of docker's stderr that says what went
// wrong: the last "docker: ..." line (the daemon's answer) without that
// prefix, else the last line that is not usage help.
func runErrorLine(stderr string) string {
	if l := lastLine(stderr, func(l string) bool { return strings.HasPrefix(l, "docker: ") }); l != "" {
		return strings.TrimPrefix(l, "docker: ")
	}
	return lastLine(stderr, func(l string) bool {
		return !strings.HasPrefix(l, "See '") && !strings.HasPrefix(l, "Run '") && !strings.HasPrefix(l, "Usage:")
	})
}

// lastLine returns the last non-empty line of s, trimmed, that keep
// accepts, or "".
func lastLine(s string, keep func(string) bool) string {
	lines := strings.Split(s, "\n")
	for i := len(lines) - 1; i >= 0; i-- {
		if l := strings.TrimSpace(lines[i]); l != "" && keep(l) {
			return l
		}
	}
	return ""
}
