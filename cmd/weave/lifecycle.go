package main

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/weavelab/weave/router/daemon"
)

// stopTimeout bounds how long stop and reset wait for the daemon to exit.
const stopTimeout = 30 * time.Second

func (a *app) launchCommand() *cobra.Command {
	var f routerFlags
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:   "launch [flags] [PEER...]",
		Short: "start the router in the background and print its peer name",
		RunE: func(cmd *cobra.Command, peers []string) error {
			pw, err := f.password(cmd.Flags())
			if err != nil {
				return err
			}
			f.cfg.Version = version
			f.cfg.Peers = peers
			if err := f.cfg.Validate(); err != nil {
				return err
			}
			a.warn(f.warnings()...)
			exe, err := os.Executable()
			if err != nil {
				return fmt.Errorf("find the weave binary: %w", err)
			}
			st, err := daemon.Launch(cmd.Context(), daemon.LaunchOptions{
				Exe:      exe,
				Args:     routerArgs(cmd.Flags(), f.cfg.Peers),
				Password: pw,
				RunDir:   f.cfg.RunDir,
				StateDir: f.cfg.StateDir,
				Timeout:  timeout,
			})
			if err != nil {
				return err
			}
			fmt.Fprintln(a.stdout, st.Peer.Name)
			return nil
		},
	}
	bindRouterFlags(cmd.Flags(), &f)
	cmd.Flags().DurationVar(&timeout, "launch-timeout", 30*time.Second, "how long to wait for the router to answer")
	return cmd
}

func (a *app) routerCommand() *cobra.Command {
	var f routerFlags
	var passwordFD int
	cmd := &cobra.Command{
		Use:   "router [flags] [PEER...]",
		Short: "run the router in the foreground (what launch starts; for systemd)",
		RunE: func(cmd *cobra.Command, peers []string) error {
			var pw []byte
			var err error
			if passwordFD > 0 {
				pw, err = daemon.ReadPasswordFD(passwordFD)
			} else {
				pw, err = f.password(cmd.Flags())
			}
			if err != nil {
				return err
			}
			f.cfg.Version = version
			f.cfg.Password = pw
			f.cfg.Peers = peers
			if err := f.cfg.Validate(); err != nil {
				return err
			}
			a.warn(f.warnings()...)
			return daemon.RunForeground(cmd.Context(), f.cfg, os.Stderr)
		},
	}
	bindRouterFlags(cmd.Flags(), &f)
	cmd.Flags().IntVar(&passwordFD, "password-fd", 0, "read the password from this inherited file descriptor (used by launch)")
	cmd.Flags().MarkHidden("password-fd")
	return cmd
}

func (a *app) stopCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "stop",
		Short: "stop the router",
		Args:  noArgs("stop"),
		RunE: func(cmd *cobra.Command, _ []string) error {
			return a.stop(cmd.Context())
		},
	}
}

// stop asks the daemon to stop and waits until it has exited.
func (a *app) stop(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, stopTimeout)
	defer cancel()
	if err := a.client().Stop(ctx); err != nil {
		return err
	}
	return daemon.WaitUnlocked(ctx, daemon.RunPaths(a.runDir()).PID)
}

func (a *app) resetCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "reset",
		Short: "stop the router and remove everything it made: bridge, TAP, veths, state and run files",
		Args:  noArgs("reset"),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := a.stop(cmd.Context()); err != nil && !isNotRunning(err) {
				return err
			}
			cfg := daemon.DefaultConfig()
			return daemon.Reset(cmd.Context(), cfg)
		},
	}
}

func (a *app) versionCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "print the version of this binary and of the running router",
		Args:  noArgs("version"),
		RunE: func(cmd *cobra.Command, _ []string) error {
			fmt.Fprintf(a.stdout, "weave %s\n", version)
			ctx, cancel := context.WithTimeout(cmd.Context(), 5*time.Second)
			defer cancel()
			if v, err := a.client().Version(ctx); err == nil {
				fmt.Fprintf(a.stdout, "weave router %s (pid %d)\n", v.Version, v.PID)
			}
			return nil
		},
	}
}

func (a *app) warn(msgs ...string) {
	for _, m := range msgs {
		fmt.Fprintln(a.stderr, m)
	}
}
