package server

import (
	"os"
	"path/filepath"
	"slices"
	"testing"
)

func TestUpstreamsFromResolvConf(t *testing.T) {
	dir := t.TempDir()
	write := func(name, text string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	resolved := write("resolved.conf", "# resolved's own\nnameserver 192.0.2.53\nnameserver 2001:db8::53\nnameserver 127.0.0.53\n")
	missing := filepath.Join(dir, "missing.conf")
	for _, tc := range []struct {
		name, text, resolved string
		want                 []string
	}{
		{"plain", "search example.com\nnameserver 192.0.2.1\noptions ndots:2\nnameserver 192.0.2.2\n", resolved,
			[]string{"192.0.2.1:53", "192.0.2.2:53"}},
		{"comments, duplicates, IPv6, junk", "# nameserver 192.0.2.9\n; x\nnameserver 192.0.2.1\nnameserver 2001:db8::1\nnameserver 192.0.2.1\nnameserver bogus\n", resolved,
			[]string{"192.0.2.1:53", "[2001:db8::1]:53"}},
		{"loopback kept", "nameserver 127.0.0.1\nnameserver 127.0.0.11\n", resolved,
			[]string{"127.0.0.1:53", "127.0.0.11:53"}},
		{"systemd-resolved stub, then its servers", "nameserver 127.0.0.53\noptions edns0 trust-ad\n", resolved,
			[]string{"127.0.0.53:53", "192.0.2.53:53", "[2001:db8::53]:53"}},
		{"systemd-resolved stub alone", "nameserver 127.0.0.53\n", missing,
			[]string{"127.0.0.53:53"}},
		{"none", "search example.com\n", resolved, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := upstreamsFromResolvConf(write("resolv.conf", tc.text), tc.resolved)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("got %q, want %q", got, tc.want)
			}
			for _, u := range got {
				if _, err := ParseUpstream(u); err != nil {
					t.Errorf("the server refuses %q: %v", u, err)
				}
			}
		})
	}
	if _, err := UpstreamsFromResolvConf(missing); err == nil {
		t.Error("no error for a missing file")
	}
}

func TestParseUpstream(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"192.0.2.1:5353", "192.0.2.1:5353"},
		{"192.0.2.1", "192.0.2.1:53"},
		{"[2001:db8::1]:53", "[2001:db8::1]:53"},
		{"2001:db8::1", "[2001:db8::1]:53"},
		{"[::ffff:192.0.2.1]:53", "192.0.2.1:53"},
		{"dns.example.com:53", ""},
		{"192.0.2.1:0", ""},
		{"", ""},
	} {
		got, err := ParseUpstream(tc.in)
		if tc.want == "" {
			if err == nil {
				t.Errorf("ParseUpstream(%q) = %v, want an error", tc.in, got)
			}
			continue
		}
		if err != nil || got.String() != tc.want {
			t.Errorf("ParseUpstream(%q) = %v, %v; want %s", tc.in, got, err, tc.want)
		}
	}
}
