package main

import (
	"errors"
	"fmt"
	"os"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/weavelab/weave/proxy"
)

const waitIfaceUsage = "wait-iface [--iface ethwe] [--timeout D] -- CMD [ARGS...]"

// waitIfaceCommand is the entrypoint the Docker API proxy gives the
// containers it manages (bind-mounted at /.weave/weave): it waits for the
// interface, then execs the container's own command with the environment
// unchanged. It touches nothing else: it runs inside arbitrary containers.
func (a *app) waitIfaceCommand() *cobra.Command {
	var iface string
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:    waitIfaceUsage,
		Short:  "wait until an interface is up with an IPv4 address, then exec CMD (the proxy's container entrypoint)",
		Hidden: true,
		Args:   minArgs(1, waitIfaceUsage),
		RunE: func(cmd *cobra.Command, args []string) error {
			env := os.Environ()
			path, err := proxy.LookPath(args[0], env)
			if err != nil {
				// Exit like a shell: 127 not found, 126 not executable.
				fmt.Fprintf(a.stderr, "weave wait-iface: %v\n", err)
				if errors.Is(err, proxy.ErrNotFound) {
					os.Exit(127)
				}
				os.Exit(126)
			}
			if err := proxy.WaitIface(cmd.Context(), iface, timeout); err != nil {
				return fmt.Errorf("weave wait-iface: %w", err)
			}
			err = syscall.Exec(path, args, env)
			fmt.Fprintf(a.stderr, "weave wait-iface: exec %s: %v\n", path, err)
			os.Exit(126)
			return nil
		},
	}
	cmd.Flags().SetInterspersed(false)
	cmd.Flags().StringVar(&iface, "iface", "ethwe", "interface to wait for")
	cmd.Flags().DurationVar(&timeout, "timeout", 0, "give up after this long (0: wait for ever)")
	return cmd
}
