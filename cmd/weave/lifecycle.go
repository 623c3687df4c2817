package main

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"runtime/debug"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/weavelab/weave/mesh/handshake"
	"github.com/weavelab/weave/router/daemon"
	"github.com/weavelab/weave/router/overlay/encap"
)

// routerHelp is the part of launch's and router's help about encryption
// and the host firewall.
const routerHelp = "Encryption: give every peer the same password in $WEAVE_PASSWORD or a file (--password-file);\n" +
	"never only in argv. The password is stretched with Argon2id under a salt: set the same\n" +
	"--network-salt (or $WEAVE_NETWORK_SALT) on every peer of a network, e.g. a random string. Handshakes\n" +
	"give an attacker nothing to test password guesses against offline (CPace), whatever the salt; a salt\n" +
	"of your own only keeps a key leaked from a router's memory from being matched against tables\n" +
	"precomputed for the default salt. Without a password traffic is\n" +
	"plain and `weave status` says \"Encryption: disabled\".\n\n" +
	"Host firewall: at start the router adds accept rules to FORWARD for frames bridged within the\n" +
	"bridge `weave` and for replies of established flows into it (nothing else leaves the bridge\n" +
	"through them), below Docker's jump to DOCKER-USER so that rules there decide first; with iptables\n" +
	"and ip6tables when installed, else nft. Each rule is commented \"weave:weave:...\" and `weave reset`\n" +
	"removes exactly those. Docker sets FORWARD's policy to DROP, which with br_netfilter would\n" +
	"otherwise drop frames between containers.\n\n" +
	"--password-file must not be readable or writable by other users (chmod 600); $WEAVE_RUN_DIR and\n" +
	"$WEAVE_STATE_DIR, when they exist, must be our own directories, not symlinks, not group- or\n" +
	"world-writable.\n\n" +
	"Processors: below 4 CPUs the router runs its Go code on one (the data path as one event loop,\n" +
	"which moves more than two threads there); $GOMAXPROCS, when set, decides instead."

// stopTimeout bounds how long stop and reset wait for the daemon to exit.
const stopTimeout = 30 * time.Second

// leaveTimeout bounds how long reset waits for a peer to take our space.
const leaveTimeout = 10 * time.Second

func (a *app) launchCommand() *cobra.Command {
	var f routerFlags
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:   "launch [flags] [PEER...]",
		Short: "start the router in the background and print its peer name",
		Long: "Start the router as a background daemon, wait until it answers on its socket, and print its\n" +
			"peer name. PEER is host[:port] (port 6783 by default); the router keeps connecting to each.\n\n" +
			routerHelp,
		RunE: func(cmd *cobra.Command, peers []string) error {
			f.fromEnv(cmd.Flags())
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
		Long:  "Run the router in the foreground, logging to stderr and to $WEAVE_RUN_DIR/weave.log.\n\n" + routerHelp,
		RunE: func(cmd *cobra.Command, peers []string) error {
			f.fromEnv(cmd.Flags())
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
		Short: "stop the router and remove everything it made: bridge, TAP, veths, firewall rules, state and run files",
		Args:  noArgs("reset"),
		RunE: func(cmd *cobra.Command, _ []string) error {
			// The Docker plugin's networks go while the plugin still
			// answers Docker's calls: with the state gone nothing could
			// serve them.
			rctx, cancel := context.WithTimeout(cmd.Context(), leaveTimeout)
			rm, err := a.client().RemoveNetworks(rctx)
			cancel()
			if err != nil && !isNotRunning(err) {
				a.warn("weave reset: could not remove the Docker plugin's networks: " + err.Error())
			}
			for _, f := range rm.Failed {
				a.warn("weave reset: left " + f + " (disconnect its containers, then docker network rm it)")
			}
			// Hand our address space to a live peer before leaving.
			lctx, cancel := context.WithTimeout(cmd.Context(), leaveTimeout)
			_, err = a.client().Leave(lctx)
			cancel()
			if err != nil && !isNotRunning(err) {
				a.warn("weave reset: could not hand this peer's address space to another peer: " + err.Error())
			}
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
		Long: "Print the version of this binary, the Go release and commit it was built from, the\n" +
			"protocol versions it speaks (routers of one network need a common one), and, when a\n" +
			"router is running, its version and pid.",
		RunE: func(cmd *cobra.Command, _ []string) error {
			fmt.Fprint(a.stdout, versionText())
			ctx, cancel := context.WithTimeout(cmd.Context(), 5*time.Second)
			defer cancel()
			if v, err := a.client().Version(ctx); err == nil {
				fmt.Fprintf(a.stdout, "weave router %s (pid %d)\n", v.Version, v.PID)
			}
			return nil
		},
	}
}

// versionText is what `weave version` prints before asking the router.
func versionText() string {
	var b strings.Builder
	fmt.Fprintf(&b, "weave %s\n", version)
	commit := ""
	if bi, ok := debug.ReadBuildInfo(); ok {
		var rev, modified string
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				rev = s.Value
			case "vcs.modified":
				if s.Value == "true" {
					modified = " (modified)"
				}
			}
		}
		if rev != "" {
			commit = ", commit " + rev[:min(12, len(rev))] + modified
		}
	}
	fmt.Fprintf(&b, "built with %s %s/%s%s\n", runtime.Version(), runtime.GOOS, runtime.GOARCH, commit)
	fmt.Fprintf(&b, "protocols: handshake %d-%d, datagram %d\n", handshake.MinVersion, handshake.MaxVersion, encap.Version)
	return b.String()
}

func (a *app) warn(msgs ...string) {
	for _, m := range msgs {
		fmt.Fprintln(a.stderr, m)
	}
}
