package identity

import (
	"encoding/json"
	"errors"
	"testing"
)

func TestParsePeerName(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want string
		ok   bool
	}{
		{"0a:1b:2c:3d:4e:5f", "0a:1b:2c:3d:4e:5f", true},
		{"0A-1B-2C-3D-4E-5F", "0a:1b:2c:3d:4e:5f", true},
		{"00:00:00:00:00:00", "", false},
		{"0a:1b:2c", "", false},
		{"hello", "", false},
		{"0a:1b:2c:3d:4e:5f:00:11", "", false},
	} {
		t.Run(tc.in, func(t *testing.T) {
			n, err := ParsePeerName(tc.in)
			if tc.ok != (err == nil) {
				t.Fatalf("ParsePeerName(%q) err=%v, want ok=%v", tc.in, err, tc.ok)
			}
			if !tc.ok {
				if !errors.Is(err, ErrBadPeerName) {
					t.Fatalf("error %v does not wrap ErrBadPeerName", err)
				}
				return
			}
			if n.String() != tc.want {
				t.Fatalf("got %s want %s", n, tc.want)
			}
		})
	}
}

func TestRandomPeerNameRoundTrip(t *testing.T) {
	for i := 0; i < 100; i++ {
		n, err := RandomPeerName()
		if err != nil {
			t.Fatal(err)
		}
		if n.MAC()[0]&1 != 0 || n.MAC()[0]&2 == 0 {
			t.Fatalf("%s is not a locally administered unicast name", n)
		}
		b, _ := json.Marshal(n)
		var back PeerName
		if err := json.Unmarshal(b, &back); err != nil || back != n {
			t.Fatalf("json round trip of %s gave %s, %v", n, back, err)
		}
	}
}

func TestNameWireForm(t *testing.T) {
	n, _ := ParsePeerName("0a:1b:2c:3d:4e:5f")
	b := AppendName([]byte{0xff}, n)
	if want := []byte{0xff, 0x0a, 0x1b, 0x2c, 0x3d, 0x4e, 0x5f}; string(b) != string(want) {
		t.Fatalf("AppendName = % x, want % x", b, want)
	}
	if got := ReadName(b[1:]); got != n {
		t.Fatalf("ReadName = %s, want %s", got, n)
	}
	if got := PeerNameFromMAC(n.MAC()); got != n {
		t.Fatalf("MAC round trip = %s", got)
	}
}
