package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/spf13/cobra"

	"github.com/weavelab/weave/router/api"
	"github.com/weavelab/weave/router/daemon"
)

// requestTimeout bounds one API call from the CLI.
const requestTimeout = 60 * time.Second

// app is what every command shares: the output streams and the run dir
// (from $WEAVE_RUN_DIR) that locates the daemon.
type app struct {
	stdout, stderr io.Writer
}

func (a *app) runDir() string { return daemon.DefaultConfig().RunDir }

func (a *app) client() *api.Client {
	return api.NewClient(daemon.RunPaths(a.runDir()).Socket)
}

// call runs fn against the daemon with the request timeout.
func (a *app) call(cmd *cobra.Command, fn func(ctx context.Context, c *api.Client) error) error {
	ctx, cancel := context.WithTimeout(cmd.Context(), requestTimeout)
	defer cancel()
	return fn(ctx, a.client())
}

// newRootCommand builds the command table. The table is in the files named
// after each group: lifecycle.go (launch, router, stop, reset, version),
// mesh.go (connect, forget, status, report), containers.go (attach,
// detach, ps, expose, hide).
func newRootCommand(stdout, stderr io.Writer) *cobra.Command {
	a := &app{stdout: stdout, stderr: stderr}
	root := &cobra.Command{
		Use:   "weave",
		Short: "weave joins containers on many hosts into one virtual Ethernet",
		Long: "weave joins containers on many hosts into one virtual Ethernet.\n\n" +
			"The router daemon keeps its socket, pid file and log in $WEAVE_RUN_DIR (default /run/weave)\n" +
			"and its state in $WEAVE_STATE_DIR (default /var/lib/weave).",
		SilenceUsage:  true,
		SilenceErrors: true,
		Version:       version,
	}
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.SetVersionTemplate("weave {{.Version}}\n")
	root.CompletionOptions.DisableDefaultCmd = true
	root.SetFlagErrorFunc(func(c *cobra.Command, err error) error {
		return fmt.Errorf("weave %s: %w", c.Name(), err)
	})
	root.AddCommand(
		a.launchCommand(),
		a.routerCommand(),
		a.stopCommand(),
		a.resetCommand(),
		a.versionCommand(),
		a.connectCommand(),
		a.forgetCommand(),
		a.statusCommand(),
		a.reportCommand(),
		a.attachCommand(),
		a.detachCommand(),
		a.psCommand(),
		a.exposeCommand(),
		a.hideCommand(),
		a.runCommand(),
		a.rmpeerCommand(),
		a.dnsAddCommand(),
		a.dnsRemoveCommand(),
		a.dnsLookupCommand(),
		a.envCommand(),
		a.setupCNICommand(),
		a.waitIfaceCommand(),
	)
	return root
}

// args returns a cobra.PositionalArgs that requires at least min
// arguments, with a usage hint in the error.
func minArgs(min int, usage string) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) < min {
			return fmt.Errorf("usage: weave %s", usage)
		}
		return nil
	}
}

func noArgs(usage string) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) > 0 {
			return fmt.Errorf("usage: weave %s (unexpected argument %q)", usage, args[0])
		}
		return nil
	}
}

// isNotRunning reports whether err says the daemon is not running.
func isNotRunning(err error) bool { return errors.Is(err, api.ErrNotRunning) }
