package identity

import (
	"errors"
	"strings"
	"testing"
)

// FuzzParsePeerName: ParsePeerName and UnmarshalText never panic, agree
// with each other, reject with ErrBadPeerName, and every name they accept
// is non-zero, fits 48 bits and round-trips through String (which is
// canonical: lower case, colons).
func FuzzParsePeerName(f *testing.F) {
	for _, s := range []string{
		"0a:1b:2c:3d:4e:5f", "0A-1B-2C-3D-4E-5F", "00:00:00:00:00:00", "ff:ff:ff:ff:ff:ff",
		"0a1b.2c3d.4e5f", "0a:1b:2c:3d:4e", "0a:1b:2c:3d:4e:5f:60:71", "", "::::::", "0a:1b-2c:3d-4e:5f",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		n, err := ParsePeerName(s)
		var u PeerName
		uerr := u.UnmarshalText([]byte(s))
		if (err == nil) != (uerr == nil) || (err == nil && u != n) {
			t.Fatalf("%q: ParsePeerName %v, %v; UnmarshalText %v, %v", s, n, err, u, uerr)
		}
		if err != nil {
			if !errors.Is(err, ErrBadPeerName) {
				t.Fatalf("%q: error %v does not wrap ErrBadPeerName", s, err)
			}
			return
		}
		if n == UnknownPeer || uint64(n)&^nameMask != 0 {
			t.Fatalf("%q: accepted as %#x", s, uint64(n))
		}
		str := n.String()
		if str != strings.ToLower(str) || len(str) != 17 {
			t.Fatalf("%q: String %q is not canonical", s, str)
		}
		back, err := ParsePeerName(str)
		if err != nil || back != n {
			t.Fatalf("%q: %q parses back as %v, %v", s, str, back, err)
		}
		text, _ := n.MarshalText()
		if err := back.UnmarshalText(text); err != nil || back != n {
			t.Fatalf("%q: text %q does not round-trip: %v, %v", s, text, back, err)
		}
	})
}
