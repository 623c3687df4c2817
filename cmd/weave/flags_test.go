package main

import (
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
