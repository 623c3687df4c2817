package harness

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/containernetworking/cni/pkg/invoke"
	"github.com/containernetworking/cni/pkg/types"
	"github.com/containernetworking/cni/pkg/version"
)

// NetnsPath is the namespace file of a container, what a CNI runtime
// passes as CNI_NETNS.
func (c *Container) NetnsPath() string { return filepath.Join("/var/run/netns", c.Name) }

// CNI runs a CNI plugin on the host exactly as a runtime does: the
// plugin's path (e.g. the weave-net link) in the host's namespace, the
// CNI_* variables in env, the network config on stdin, and the host's
// WEAVE_RUN_DIR so that it finds the host's router. It logs the command
// and its result.
func (h *Host) CNI(ctx context.Context, plugin string, env []string, conf []byte) Result {
	h.lan.t.Helper()
	r := h.execCNI(ctx, plugin, append(env, h.env()...), conf)
	cmd := "?"
	for _, e := range env {
		if v, ok := strings.CutPrefix(e, "CNI_COMMAND="); ok {
			cmd = v
		}
	}
	r.Args = []string{"CNI_COMMAND=" + cmd, filepath.Base(plugin), "<<<", string(conf)}
	h.lan.t.Logf("%s: %s", h.HostName, r)
	return r
}

func (h *Host) execCNI(ctx context.Context, plugin string, env []string, stdin []byte) Result {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, DefaultTimeout)
		defer cancel()
	}
	cmd := exec.CommandContext(ctx, "ip", "netns", "exec", h.Name, plugin)
	cmd.Env = env
	cmd.Stdin = bytes.NewReader(stdin)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	r := Result{Args: []string{plugin}, Stdout: out.String(), Stderr: errb.String(), ExitCode: -1, Err: err}
	if ee, ok := err.(*exec.ExitError); ok {
		r.ExitCode = ee.ExitCode()
	} else if err == nil {
		r.ExitCode = 0
	}
	return r
}

// CNIExec is the invoke.Exec for libcni that runs plugins on the host as
// CNI does (with the host's WEAVE_RUN_DIR), so that libcni.CNIConfig
// drives the plugin as a runtime on that host would.
func (h *Host) CNIExec() invoke.Exec { return hostExec{h} }

type hostExec struct{ h *Host }

func (e hostExec) ExecPlugin(ctx context.Context, pluginPath string, stdinData []byte, environ []string) ([]byte, error) {
	r := e.h.execCNI(ctx, pluginPath, append(environ, e.h.env()...), stdinData)
	cmd := ""
	for _, v := range environ {
		if c, ok := strings.CutPrefix(v, "CNI_COMMAND="); ok {
			cmd = c
		}
	}
	e.h.lan.t.Logf("%s: libcni %s %s: exit %d\nstdout: %s\nstderr: %s", e.h.HostName, cmd, filepath.Base(pluginPath), r.ExitCode, strings.TrimSpace(r.Stdout), strings.TrimSpace(r.Stderr))
	if r.Err != nil {
		// As invoke.RawExec: the plugin's error JSON is the error.
		var te types.Error
		if json.Unmarshal([]byte(r.Stdout), &te) == nil && te.Msg != "" {
			return nil, &te
		}
		return nil, fmt.Errorf("%s: %w: %s", pluginPath, r.Err, strings.TrimSpace(r.Stderr))
	}
	return []byte(r.Stdout), nil
}

func (hostExec) FindInPath(plugin string, paths []string) (string, error) {
	return invoke.FindInPath(plugin, paths)
}

func (hostExec) Decode(jsonBytes []byte) (version.PluginInfo, error) {
	return (&version.PluginDecoder{}).Decode(jsonBytes)
}
