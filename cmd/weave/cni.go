package main

import (
	"fmt"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/weavelab/weave/router/api"
	"github.com/weavelab/weave/router/cni"
	"github.com/weavelab/weave/router/daemon"
)

// isCNIPlugin reports whether the binary was run as the CNI plugin (as
// the weave-net link that `weave setup-cni` installs).
func isCNIPlugin(argv0 string) bool { return filepath.Base(argv0) == cni.PluginName }

// runCNIPlugin serves one CNI command (environment and stdin as the
// runtime set them) against the router of $WEAVE_RUN_DIR; logs go to
// stderr, which runtimes keep.
func runCNIPlugin() int {
	p := &cni.Plugin{
		Router:  api.NewClient(daemon.RunPaths(daemon.DefaultConfig().RunDir).Socket),
		Sandbox: cni.NewSandbox(),
		IPAM:    cni.InvokeDelegate{},
		Log:     slog.New(slog.NewTextHandler(os.Stderr, nil)).With("plugin", cni.PluginName, "cmd", os.Getenv("CNI_COMMAND")),
	}
	return p.Main()
}

func (a *app) setupCNICommand() *cobra.Command {
	var binDir, confDir string
	cmd := &cobra.Command{
		Use:   "setup-cni [--bin-dir D] [--conf-dir D]",
		Short: "install the CNI plugin weave-net (a link to this binary) and the weave conflist",
		Long: "Make BIN-DIR/weave-net a link to this binary and write CONF-DIR/" + cni.ConfFileName + ",\n" +
			"so that a CNI runtime (kubelet with containerd or CRI-O, Podman, nerdctl) puts pods on weave.\n" +
			"Idempotent; refuses to replace a weave-net that is not a link, or a conflist it did not write.",
		Args: noArgs("setup-cni [--bin-dir D] [--conf-dir D]"),
		RunE: func(cmd *cobra.Command, _ []string) error {
			self, err := os.Executable()
			if err != nil {
				return fmt.Errorf("setup-cni: find this binary: %w", err)
			}
			if self, err = filepath.EvalSymlinks(self); err != nil {
				return fmt.Errorf("setup-cni: find this binary: %w", err)
			}
			done, err := cni.Install(binDir, confDir, self)
			if err != nil {
				return err
			}
			for _, l := range done.Lines {
				fmt.Fprintln(a.stdout, l)
			}
			for _, w := range done.Warnings {
				fmt.Fprintln(a.stderr, "warning:", w)
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&binDir, "bin-dir", cni.DefaultBinDir, "directory of CNI plugins")
	cmd.Flags().StringVar(&confDir, "conf-dir", cni.DefaultConfDir, "directory of CNI network configs")
	return cmd
}
