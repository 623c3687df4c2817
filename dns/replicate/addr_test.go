package replicate

import (
	"errors"
	"testing"

	"github.com/weavelab/weave/mesh/identity"
)

func TestPeerAddr(t *testing.T) {
	for _, tc := range []struct {
		peer identity.PeerName
		want string
	}{
		{0xaabbccddeeff, "[fd77:6561:7665::aabb:ccdd:eeff]:6783"},
		{1, "[fd77:6561:7665::1]:6783"},
		{0xffffffffffff, "[fd77:6561:7665::ffff:ffff:ffff]:6783"},
	} {
		t.Run(tc.peer.String(), func(t *testing.T) {
			if got := PeerAddr(tc.peer); got != tc.want {
				t.Fatalf("PeerAddr = %s, want %s", got, tc.want)
			}
			if got := (Addr{tc.peer}).String(); got != tc.want {
				t.Fatalf("Addr.String = %s, want %s", got, tc.want)
			}
			p, err := ParsePeerAddr(tc.want)
			if err != nil || p != tc.peer {
				t.Fatalf("ParsePeerAddr = %s, %v", p, err)
			}
		})
	}
}

func TestParsePeerAddrRejects(t *testing.T) {
	for _, s := range []string{
		"",
		"fd77:6561:7665::1",                  // no port
		"[fd77:6561:7665::1]:7946",           // wrong port
		"[fd77:6561:7665::]:6783",            // zero peer
		"[fd77:6561:7666::1]:6783",           // wrong prefix
		"[fd77:6561:7665:0:1::1]:6783",       // non-zero padding
		"[::ffff:10.0.0.1]:6783",             // v4-mapped
		"10.0.0.1:6783",                      // IPv4
		"[fd77:6561:7665::1%eth0]:6783",      // zone
		"aa:bb:cc:dd:ee:ff",                  // a bare peer name
		"db.weave.local:6783",                // a host name
		"[fd77:6561:7665::1]:6783:6783",      // junk
		"[fd77:6561:7665::1:2:3:4]:6783",     // name overflowing 48 bits
		"[fd77:6561:7665::aabb:ccdd:eeff]:0", // port zero
	} {
		if p, err := ParsePeerAddr(s); !errors.Is(err, ErrBadAddr) {
			t.Errorf("ParsePeerAddr(%q) = %s, %v; want ErrBadAddr", s, p, err)
		}
	}
}
