package cni

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// Install defaults: where runtimes look for plugins and configs.
const (
	DefaultBinDir  = "/opt/cni/bin"
	DefaultConfDir = "/etc/cni/net.d"
	// ConfFileName is the conflist Install writes: "10-" so that it comes
	// first in a directory holding only the distribution's 99-loopback.
	ConfFileName = "10-weave.conflist"
	// NetworkName is the network's name in the conflist.
	NetworkName = "weave"
	// generatedBy marks a conflist that Install wrote (and may rewrite).
	generatedBy = "weave setup-cni"
)

// ConfList is the conflist Install writes: the weave-net plugin alone,
// with weaveDNS registration of pod names on.
func ConfList() []byte {
	b, _ := json.MarshalIndent(map[string]any{
		"cniVersion":  "1.0.0",
		"name":        NetworkName,
		"generatedBy": generatedBy,
		"plugins": []any{
			map[string]any{"type": PluginName, "registerDNS": true},
		},
	}, "", "  ")
	return append(b, '\n')
}

// Installed says what Install did, one line per file, and warns of
// configs that runtimes would pick before ours.
type Installed struct {
	Lines    []string
	Warnings []string
}

// Install makes binDir/weave-net a symlink to binary (an absolute path:
// the weave binary) and writes confDir/10-weave.conflist. It is
// idempotent: what is already in place is left alone, a weave-net link
// pointing elsewhere is replaced. It refuses to replace a weave-net that is
// not a symlink, or a conflist it did not write (no "generatedBy" mark).
func Install(binDir, confDir, binary string) (Installed, error) {
	var out Installed
	if !filepath.IsAbs(binary) {
		return out, fmt.Errorf("setup-cni: binary path %q is not absolute", binary)
	}
	for _, d := range []string{binDir, confDir} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return out, fmt.Errorf("setup-cni: %w", err)
		}
	}
	line, err := installLink(filepath.Join(binDir, PluginName), binary)
	if err != nil {
		return out, fmt.Errorf("setup-cni: %w", err)
	}
	out.Lines = append(out.Lines, line)
	line, err = installConf(filepath.Join(confDir, ConfFileName))
	if err != nil {
		return out, fmt.Errorf("setup-cni: %w", err)
	}
	out.Lines = append(out.Lines, line)
	out.Warnings = earlierConfs(confDir)
	return out, nil
}

func installLink(path, target string) (string, error) {
	fi, err := os.Lstat(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return "", err
	case fi.Mode()&fs.ModeSymlink == 0:
		return "", fmt.Errorf("%s exists and is not a link to weave: remove it first", path)
	default:
		if cur, err := os.Readlink(path); err == nil && cur == target {
			return fmt.Sprintf("%s -> %s (already there)", path, target), nil
		}
	}
	tmp := path + ".weave-tmp"
	os.Remove(tmp)
	if err := os.Symlink(target, tmp); err != nil {
		return "", err
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return "", err
	}
	return fmt.Sprintf("%s -> %s", path, target), nil
}

func installConf(path string) (string, error) {
	want := ConfList()
	cur, err := os.ReadFile(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return "", err
	case bytes.Equal(cur, want):
		return path + " (already there)", nil
	default:
		var mark struct {
			GeneratedBy string `json:"generatedBy"`
		}
		if json.Unmarshal(cur, &mark) != nil || mark.GeneratedBy != generatedBy {
			return "", fmt.Errorf("%s exists and was not written by weave setup-cni: move it away first", path)
		}
	}
	tmp := path + ".weave-tmp"
	if err := os.WriteFile(tmp, want, 0o644); err != nil {
		return "", err
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return "", err
	}
	return path, nil
}

// earlierConfs lists the configs in dir that sort before ours: a runtime
// uses the first one, so weave would not be the pods' network.
func earlierConfs(dir string) []string {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil
	}
	var names []string
	for _, e := range ents {
		n := e.Name()
		if n < ConfFileName && (strings.HasSuffix(n, ".conf") || strings.HasSuffix(n, ".conflist") || strings.HasSuffix(n, ".json")) {
			names = append(names, n)
		}
	}
	slices.Sort(names)
	var out []string
	for _, n := range names {
		out = append(out, fmt.Sprintf("%s sorts before %s: runtimes use the first config, so pods would not join weave", filepath.Join(dir, n), ConfFileName))
	}
	return out
}
