package main

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"
)

// origDockerHost keeps the DOCKER_HOST that `weave env` replaced, for
// `weave env --restore`.
const origDockerHost = "ORIG_DOCKER_HOST"

func (a *app) envCommand() *cobra.Command {
	var restore bool
	cmd := &cobra.Command{
		Use:   "env [--restore]",
		Short: "print the shell line that points the docker CLI at the weave proxy (eval \"$(weave env)\")",
		Long: "Print `export DOCKER_HOST=unix://$WEAVE_RUN_DIR/docker.sock ORIG_DOCKER_HOST=...` so that a\n" +
			"plain `docker run` goes through the router's Docker API proxy and joins the network;\n" +
			"--restore prints the line that puts the previous DOCKER_HOST back. Fails, printing nothing,\n" +
			"when no proxy answers on that socket (router stopped, or launched with --no-proxy or --no-docker).",
		Args: noArgs("env [--restore]"),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if restore {
				orig, ok := os.LookupEnv(origDockerHost)
				if !ok || orig == "" {
					_, err := fmt.Fprintf(a.stdout, "unset DOCKER_HOST %s\n", origDockerHost)
					return err
				}
				_, err := fmt.Fprintf(a.stdout, "export DOCKER_HOST=%s; unset %s\n", shellQuote(orig), origDockerHost)
				return err
			}
			path := filepath.Join(a.runDir(), "docker.sock")
			if err := proxyAnswers(path); err != nil {
				return err
			}
			sock := "unix://" + path
			cur := os.Getenv("DOCKER_HOST")
			if cur == sock {
				cur = os.Getenv(origDockerHost) // already pointed at us
			}
			_, err := fmt.Fprintf(a.stdout, "export DOCKER_HOST=%s %s=%s\n", shellQuote(sock), origDockerHost, shellQuote(cur))
			return err
		},
	}
	cmd.Flags().BoolVar(&restore, "restore", false, "print the line that restores the previous DOCKER_HOST")
	return cmd
}

// proxyAnswers checks that something accepts connections on the proxy's
// socket path, so that `eval "$(weave env)"` never points the docker CLI
// at a socket nobody serves (a router launched with --no-proxy or
// --no-docker, a stopped router, or one killed with its socket left).
func proxyAnswers(path string) error {
	c, err := net.DialTimeout("unix", path, 2*time.Second)
	if err != nil {
		why := "is the router running?"
		if errors.Is(err, os.ErrNotExist) {
			why = "is the router running, launched without --no-proxy and --no-docker?"
		}
		return fmt.Errorf("no Docker API proxy answers on %s (%s)", path, why)
	}
	return c.Close()
}

// shellQuote quotes s for a POSIX shell.
func shellQuote(s string) string {
	if s != "" && !strings.ContainsAny(s, " \t\n'\"\\$`;&|<>()*?[]#~!{}") {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
