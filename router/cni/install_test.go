package cni

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/containernetworking/cni/libcni"
)

func TestInstall(t *testing.T) {
	dir := t.TempDir()
	bin, conf := filepath.Join(dir, "bin"), filepath.Join(dir, "net.d")
	self := filepath.Join(dir, "weave")
	if err := os.WriteFile(self, []byte("#!/bin/true\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	for i := range 2 { // idempotent
		if _, err := Install(bin, conf, self); err != nil {
			t.Fatalf("Install #%d: %v", i+1, err)
		}
	}
	if target, err := os.Readlink(filepath.Join(bin, PluginName)); err != nil || target != self {
		t.Errorf("%s -> %q (%v), want %s", PluginName, target, err, self)
	}
	list, err := libcni.LoadNetworkConf(conf, NetworkName)
	if err != nil {
		t.Fatalf("libcni cannot load the conflist: %v", err)
	}
	if list.CNIVersion != "1.0.0" || len(list.Plugins) != 1 || list.Plugins[0].Network.Type != PluginName {
		t.Errorf("conflist %s: version %s, plugins %d", list.Bytes, list.CNIVersion, len(list.Plugins))
	}

	// A link elsewhere is replaced; a file is not.
	other := filepath.Join(dir, "old-weave")
	os.Remove(filepath.Join(bin, PluginName))
	os.Symlink(other, filepath.Join(bin, PluginName))
	if _, err := Install(bin, conf, self); err != nil {
		t.Fatalf("Install over an old link: %v", err)
	}
	os.Remove(filepath.Join(bin, PluginName))
	os.WriteFile(filepath.Join(bin, PluginName), []byte("x"), 0o755)
	if _, err := Install(bin, conf, self); err == nil || !strings.Contains(err.Error(), "not a link") {
		t.Errorf("Install over a plugin file: %v, want a refusal", err)
	}
	os.Remove(filepath.Join(bin, PluginName))

	// A conflist of ours but older is rewritten; one of the user's is not.
	path := filepath.Join(conf, ConfFileName)
	os.WriteFile(path, []byte(`{"cniVersion":"0.4.0","name":"weave","generatedBy":"weave setup-cni","plugins":[{"type":"weave-net"}]}`), 0o644)
	if _, err := Install(bin, conf, self); err != nil {
		t.Fatalf("Install over our older conflist: %v", err)
	}
	if b, _ := os.ReadFile(path); string(b) != string(ConfList()) {
		t.Errorf("conflist not rewritten: %s", b)
	}
	mine := `{"cniVersion":"1.0.0","name":"weave","plugins":[{"type":"weave-net","ipam":{"type":"host-local"}}]}`
	os.WriteFile(path, []byte(mine), 0o644)
	if _, err := Install(bin, conf, self); err == nil || !strings.Contains(err.Error(), "not written by weave setup-cni") {
		t.Errorf("Install over the user's conflist: %v, want a refusal", err)
	}
	if b, _ := os.ReadFile(path); string(b) != mine {
		t.Errorf("the user's conflist was changed: %s", b)
	}

	// Configs sorting first are warned of.
	os.Remove(path)
	os.WriteFile(filepath.Join(conf, "05-other.conflist"), []byte(`{}`), 0o644)
	done, err := Install(bin, conf, self)
	if err != nil || len(done.Warnings) != 1 || !strings.Contains(done.Warnings[0], "05-other.conflist") {
		t.Errorf("Install with 05-other.conflist: %+v %v, want one warning", done, err)
	}
}
