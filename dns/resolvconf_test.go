package dns

import (
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestResolvConf(t *testing.T) {
	ns := netip.MustParseAddr("169.254.53.53")
	for _, tt := range []struct {
		name, old, want string
	}{
		{"none", "", "search weave.local\nnameserver 169.254.53.53\n"},
		{"docker's", "nameserver 8.8.8.8\nsearch corp.example\noptions ndots:2 edns0\n",
			"search weave.local corp.example\nnameserver 169.254.53.53\noptions ndots:2 edns0\n"},
		{"domain line, dup search", "domain weave.local.\nsearch a b a\nnameserver 10.0.0.1\n",
			"search weave.local a b\nnameserver 169.254.53.53\n"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got := string(ResolvConf([]byte(tt.old), ns, "weave.local."))
			if got != resolvMarker+"\n"+tt.want {
				t.Errorf("got\n%s\nwant\n%s", got, tt.want)
			}
		})
	}
}

func TestWriteAndRemoveResolvConf(t *testing.T) {
	dir := t.TempDir()
	ns := netip.MustParseAddr("169.254.53.53")
	path := filepath.Join(dir, "c1", "resolv.conf")
	if err := WriteResolvConf(path, ns, "weave.local."); err != nil {
		t.Fatal(err)
	}
	// Rewriting our own file does not pile up.
	if err := WriteResolvConf(path, ns, "other.local."); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(path)
	if strings.Contains(string(b), "weave.local") || strings.Count(string(b), "nameserver") != 1 {
		t.Errorf("rewritten file:\n%s", b)
	}
	if err := RemoveResolvConf(path); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Errorf("our file not removed: %v", err)
	}
	// Someone else's file stays.
	theirs := filepath.Join(dir, "resolv.conf")
	os.WriteFile(theirs, []byte("nameserver 1.1.1.1\n"), 0o644)
	if err := RemoveResolvConf(theirs); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(theirs); err != nil {
		t.Errorf("a file weave did not write was removed")
	}
}
