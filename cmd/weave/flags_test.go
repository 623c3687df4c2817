package main

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spf13/pflag"
)

func TestNetworkSaltFromEnv(t *testing.T) {
	for _, tc := range []struct {
		env  string
		args []string
		want string
	}{
		{"", nil, ""},
		{"from-env", nil, "from-env"},
		{"from-env", []string{"--network-salt", "from-flag"}, "from-flag"},
	} {
		t.Setenv("WEAVE_NETWORK_SALT", tc.env)
		t.Setenv("WEAVE_PASSWORD", "")
		fs := pflag.NewFlagSet("launch", pflag.ContinueOnError)
		var f routerFlags
		bindRouterFlags(fs, &f)
		if err := fs.Parse(tc.args); err != nil {
			t.Fatal(err)
		}
		f.fromEnv(fs)
		if f.cfg.NetworkSalt != tc.want {
			t.Errorf("env %q args %q: salt %q, want %q", tc.env, tc.args, f.cfg.NetworkSalt, tc.want)
		}
	}
}

// TestLaunchRefusesWorldReadablePasswordFile: `weave launch` with a
// password file others can read fails with one line telling to chmod 600
// and starts nothing; a group-readable one gives a warning.
func TestLaunchRefusesWorldReadablePasswordFile(t *testing.T) {
	runDir, _ := tempDirs(t)
	pw := filepath.Join(t.TempDir(), "weave.pw")
	if err := os.WriteFile(pw, []byte("a long network password\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(pw, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, cmd := range []string{"launch", "router"} {
		wantError(t, "chmod 600 "+pw, cmd, "--password-file", pw)
	}
	if _, err := os.Stat(runDir); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("run dir made by a refused launch: %v", err)
	}

	if err := os.Chmod(pw, 0o640); err != nil {
		t.Fatal(err)
	}
	fset := pflag.NewFlagSet("launch", pflag.ContinueOnError)
	var f routerFlags
	bindRouterFlags(fset, &f)
	if err := fset.Parse([]string{"--password-file", pw}); err != nil {
		t.Fatal(err)
	}
	got, err := f.password(fset)
	if err != nil || string(got) != "a long network password" {
		t.Fatalf("group-readable file: %q, %v", got, err)
	}
	if w := f.warnings(); len(w) != 1 || !strings.Contains(w[0], "open to its group") {
		t.Errorf("warnings %q, want one about the group", w)
	}
}
