package mesh

import (
	"errors"
	"strings"
	"testing"
)

func TestParsePeerAddr(t *testing.T) {
	good := map[string]string{
		"10.0.0.1":           "10.0.0.1:6783",
		"10.0.0.1:7000":      "10.0.0.1:7000",
		"host1":              "host1:6783",
		"Host-1.Example.com": "host-1.example.com:6783",
		"db.local:1":         "db.local:1",
		"::1":                "[::1]:6783",
		"fd00::2":            "[fd00::2]:6783",
		"[fd00::2]:6790":     "[fd00::2]:6790",
		"[FD00::2]:6790":     "[fd00::2]:6790",
		"192.168.1.2:65535":  "192.168.1.2:65535",
	}
	for in, want := range good {
		t.Run(in, func(t *testing.T) {
			got, err := ParsePeerAddr(in, DefaultPort)
			if err != nil || got != want {
				t.Errorf("ParsePeerAddr(%q) = %q, %v; want %q", in, got, err, want)
			}
		})
	}
	bad := []string{
		"", ":6783", "10.0.0.1:", "10.0.0.1:0", "10.0.0.1:65536", "10.0.0.1:http", "10.0.0.1:+80",
		"1.2.3.999", "1.2.3", "host_1", "-host", "host-", "a..b", "10.0.0.1:1:2", "[::1]", "[::1",
		"fe80::1%eth0", "[fe80::1%eth0]:80", "ho st", "host/1", strings.Repeat("a", 64) + ".com", "10.0.0.1:-1",
	}
	for _, in := range bad {
		t.Run("bad "+in, func(t *testing.T) {
			got, err := ParsePeerAddr(in, DefaultPort)
			if err == nil {
				t.Fatalf("ParsePeerAddr(%q) = %q, want an error", in, got)
			}
			if !errors.Is(err, ErrBadPeerAddr) || strings.Contains(err.Error(), "\n") {
				t.Errorf("ParsePeerAddr(%q) err = %q, want one line wrapping ErrBadPeerAddr", in, err)
			}
		})
	}
}

// FuzzParsePeerAddr: what the parser accepts it returns in a canonical form
// that it accepts again unchanged.
func FuzzParsePeerAddr(f *testing.F) {
	for _, s := range []string{"10.0.0.1", "h:1", "[::1]:2", "::1", "Host.Example", "a..b", "[::1"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		a, err := ParsePeerAddr(s, DefaultPort)
		if err != nil {
			return
		}
		again, err := ParsePeerAddr(a, 1)
		if err != nil || again != a {
			t.Fatalf("ParsePeerAddr(%q) = %q, which parses as %q, %v", s, a, again, err)
		}
	})
}
