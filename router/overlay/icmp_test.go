package overlay

import "testing"

func TestFragNeeded(t *testing.T) {
	out := make([]byte, icmpReplyMax)
	for _, tc := range []struct {
		name  string
		frame []byte
		want  bool
	}{
		{"ipv4 df", ipv4Frame(mac(1, 1), mac(2, 2), 1600, true), true},
		{"ipv4 no df", ipv4Frame(mac(1, 1), mac(2, 2), 1600, false), false},
		{"not ip", ethFrame(mac(1, 1), mac(2, 2), 1, 1600), false},
		{"truncated", ipv4Frame(mac(1, 1), mac(2, 2), 1600, true)[:20], false},
		{"icmp error", func() []byte {
			f := ipv4Frame(mac(1, 1), mac(2, 2), 1600, true)
			f[14+9], f[14+20] = 1, 3
			return f
		}(), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n := fragNeeded(out, tc.frame, 1376)
			if (n > 0) != tc.want {
				t.Fatalf("reply length %d, want reply %v", n, tc.want)
			}
			if n == 0 {
				return
			}
			if n != 14+20+8+28 || checksum(out[14:34]) != 0 || checksum(out[34:n]) != 0 {
				t.Fatalf("reply of %d bytes or bad checksum", n)
			}
		})
	}
}
