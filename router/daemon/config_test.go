package daemon

import (
	"errors"
	"slices"
	"strings"
	"testing"
)

// TestParsePeer: the daemon parses peers with the mesh's parser (whose
// rules mesh.TestParsePeerAddr covers), with the default port and
// ErrBadPeer.
func TestParsePeer(t *testing.T) {
	for in, want := range map[string]string{"10.0.0.1": "10.0.0.1:6783", "Host-1:7000": "host-1:7000", "::1": "[::1]:6783"} {
		if got, err := ParsePeer(in); err != nil || got != want {
			t.Errorf("ParsePeer(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, in := range []string{"", "10.0.0.1:0", "1.2.3.999", "fe80::1%eth0"} {
		got, err := ParsePeer(in)
		if err == nil || !errors.Is(err, ErrBadPeer) || strings.Contains(err.Error(), "\n") {
			t.Errorf("ParsePeer(%q) = %q, %v; want one line wrapping ErrBadPeer", in, got, err)
		}
	}
}

func TestParsePeersDedup(t *testing.T) {
	got, err := ParsePeers([]string{"10.0.0.1", "10.0.0.1:6783", "h2"})
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"10.0.0.1:6783", "h2:6783"}; !slices.Equal(got, want) {
		t.Errorf("got %v, want %v", got, want)
	}
	if _, err := ParsePeers([]string{"10.0.0.1", "bad:port"}); err == nil {
		t.Error("one bad peer among good ones: no error")
	}
}

func validConfig() Config {
	c := DefaultConfig()
	c.NickName = "h1"
	c.RunDir = "/tmp/r"
	c.StateDir = "/tmp/s"
	return c
}

func TestValidate(t *testing.T) {
	tests := []struct {
		name    string
		mod     func(*Config)
		wantErr string // substring; "" means valid
	}{
		{"defaults", func(*Config) {}, ""},
		{"name", func(c *Config) { c.Name = "0a:1b:2c:3d:4e:5f" }, ""},
		{"bad name", func(c *Config) { c.Name = "zz:1b:2c:3d:4e:5f" }, "--name"},
		{"zero name", func(c *Config) { c.Name = "00:00:00:00:00:00" }, "--name"},
		{"empty nickname", func(c *Config) { c.NickName = "" }, "--nickname"},
		{"nickname space", func(c *Config) { c.NickName = "a b" }, "--nickname"},
		{"nickname parens", func(c *Config) { c.NickName = "a(b)" }, "--nickname"},
		{"long nickname", func(c *Config) { c.NickName = strings.Repeat("n", 65) }, "--nickname"},
		{"port 0", func(c *Config) { c.Port = 0 }, "--port 0"},
		{"port big", func(c *Config) { c.Port = 70000 }, "--port 70000"},
		{"mtu small", func(c *Config) { c.MTU = 100 }, "--mtu 100"},
		{"mtu ok", func(c *Config) { c.MTU = 1400 }, ""},
		{"metrics off", func(c *Config) { c.MetricsAddr = "" }, ""},
		{"metrics bad", func(c *Config) { c.MetricsAddr = "localhost" }, "--metrics-addr"},
		{"metrics bad port", func(c *Config) { c.MetricsAddr = "127.0.0.1:99999" }, "--metrics-addr"},
		{"metrics any host", func(c *Config) { c.MetricsAddr = ":6782" }, ""},
		{"log level", func(c *Config) { c.LogLevel = "verbose" }, "--log-level"},
		{"log level debug", func(c *Config) { c.LogLevel = "DEBUG" }, ""},
		{"range", func(c *Config) { c.IPAllocRange = "10.32.0.0" }, "--ipalloc-range"},
		{"subnet outside", func(c *Config) { c.IPAllocDefaultSubnet = "192.168.0.0/24" }, "not inside"},
		{"subnet inside", func(c *Config) { c.IPAllocDefaultSubnet = "10.32.1.0/24" }, ""},
		{"subnet wider", func(c *Config) { c.IPAllocDefaultSubnet = "10.0.0.0/8" }, "not inside"},
		{"dns listen", func(c *Config) { c.DNSListenAddress = "nope" }, "--dns-listen-address"},
		{"dns listen ignored without dns", func(c *Config) { c.NoDNS = true; c.DNSListenAddress = "nope" }, ""},
		{"dns domain", func(c *Config) { c.DNSDomain = "bad_domain." }, "--dns-domain"},
		{"relative run dir", func(c *Config) { c.RunDir = "run" }, "run dir"},
		{"relative state dir", func(c *Config) { c.StateDir = "" }, "state dir"},
		{"bad peer", func(c *Config) { c.Peers = []string{"10.0.0.1", "10.0.0.2:x"} }, `bad peer address "10.0.0.2:x"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := validConfig()
			tt.mod(&c)
			err := c.Validate()
			switch {
			case tt.wantErr == "" && err != nil:
				t.Fatalf("unexpected error: %v", err)
			case tt.wantErr != "" && err == nil:
				t.Fatalf("no error, want one containing %q", tt.wantErr)
			case tt.wantErr != "" && !strings.Contains(err.Error(), tt.wantErr):
				t.Fatalf("error %q does not contain %q", err, tt.wantErr)
			}
		})
	}
}

func TestValidateNormalisesPeers(t *testing.T) {
	c := validConfig()
	c.Peers = []string{"10.0.0.1", "h2:7000", "10.0.0.1:6783"}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if want := []string{"10.0.0.1:6783", "h2:7000"}; !slices.Equal(c.Peers, want) {
		t.Errorf("peers = %v, want %v", c.Peers, want)
	}
}

func TestDefaultConfigEnv(t *testing.T) {
	t.Setenv(EnvRunDir, "/tmp/h7-run")
	t.Setenv(EnvStateDir, "/tmp/h7-state")
	c := DefaultConfig()
	if c.RunDir != "/tmp/h7-run" || c.StateDir != "/tmp/h7-state" {
		t.Errorf("dirs = %q %q, want the environment's", c.RunDir, c.StateDir)
	}
	t.Setenv(EnvRunDir, "")
	t.Setenv(EnvStateDir, "")
	c = DefaultConfig()
	if c.RunDir != DefaultRunDir || c.StateDir != DefaultStateDir {
		t.Errorf("dirs = %q %q, want defaults", c.RunDir, c.StateDir)
	}
	if c.Port != 6783 || c.MetricsAddr != "127.0.0.1:6782" || c.NickName == "" {
		t.Errorf("defaults = %+v", c)
	}
}

func TestCipherWarning(t *testing.T) {
	for _, tc := range []struct {
		policy        string
		encrypted, hw bool
		want          string // substring; "" for no warning
	}{
		{"auto", false, true, ""},
		{"auto", true, false, ""},
		{"nacl", true, false, ""},
		{"aes-gcm", true, true, ""},
		{"aes-gcm", true, false, "without AES hardware"},
		{"aes-gcm", false, true, "ignored: no password"},
		{"nacl", false, false, "--cipher nacl is ignored"},
	} {
		got := cipherWarning(tc.policy, tc.encrypted, tc.hw)
		if tc.want == "" && got != "" || tc.want != "" && !strings.Contains(got, tc.want) {
			t.Errorf("cipherWarning(%q, encrypted %v, hardware AES %v) = %q, want %q", tc.policy, tc.encrypted, tc.hw, got, tc.want)
		}
	}
}
