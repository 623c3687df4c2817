package router

import (
	"testing"

	"github.com/weavelab/weave/router/netdev"
)

// FuzzParseAddr checks that ParseAddr never panics and that what it accepts
// is a usable IPv4 host address that parses back to itself.
func FuzzParseAddr(f *testing.F) {
	for _, s := range []string{"10.2.1.4/24", "ip:10.2.1.4/24", "net:default", "net:10.2.0.0/16", "10.2.1.255/24", "fd00::1/64", "ip:", "::", "1.2.3.4/0"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		p, err := ParseAddr(s)
		if err != nil {
			return
		}
		if !p.Addr().Is4() || p.Addr() == p.Masked().Addr() && p.Bits() <= 30 {
			t.Fatalf("ParseAddr(%q) accepted %s", s, p)
		}
		if q, err := ParseAddr(p.String()); err != nil || q != p {
			t.Fatalf("ParseAddr(%q) = %s, which parses back as %s, %v", s, p, q, err)
		}
	})
}

// FuzzParseContainer checks that ParseContainer never panics and that its
// canonical form parses back to the same reference.
func FuzzParseContainer(f *testing.F) {
	for _, s := range []string{"netns:c1", "netns:/run/netns/c1", "pid:42", "web", "netns:a/../b", "pid:+1", "netns:/"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		ref, err := netdev.ParseContainer(s)
		if err != nil {
			return
		}
		again, err := netdev.ParseContainer(ref.String())
		if err != nil || again != ref {
			t.Fatalf("ParseContainer(%q) = %+v, String %q parses back as %+v, %v", s, ref, ref.String(), again, err)
		}
	})
}
