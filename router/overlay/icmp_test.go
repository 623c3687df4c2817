package overlay

import (
	"bytes"
	"encoding/binary"
	"testing"
)

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

// FuzzFragNeeded feeds arbitrary frames (and MTUs) to the ICMP path's IPv4
// header parse and reply builder: nothing panics; a reply is built only
// for an IPv4 frame with DF, fits its buffer, carries valid checksums,
// goes back to the sender's MAC and address from the destination's, and
// quotes the original header and 8 bytes of it.
func FuzzFragNeeded(f *testing.F) {
	f.Add(ipv4Frame(mac(1, 1), mac(2, 2), 1600, true), uint16(1376))
	f.Add(ipv4Frame(mac(1, 1), mac(2, 2), 1600, false), uint16(1376))
	f.Add(ipv4Frame(mac(1, 1), mac(2, 2), 1600, true)[:40], uint16(576))
	f.Add(ethFrame(mac(1, 1), mac(2, 2), 1, 100), uint16(1376))
	out := make([]byte, icmpReplyMax)
	f.Fuzz(func(t *testing.T, frame []byte, mtu uint16) {
		n := fragNeeded(out, frame, int(mtu))
		ip, ihl, ok := ipv4Packet(frame)
		if ok && (ihl < 20 || ihl > 60 || len(ip) < ihl || len(ip) != len(frame)-ethHeader) {
			t.Fatalf("parse: header length %d of a %d-byte packet", ihl, len(ip))
		}
		if n == 0 {
			return
		}
		if !ok || ip[6]&0x40 == 0 {
			t.Fatalf("reply to a frame that is not IPv4 with DF: % x", frame)
		}
		quote := min(len(ip), ihl+8)
		if n != ethHeader+20+8+quote || n > len(out) {
			t.Fatalf("reply of %d bytes for a %d-byte quote", n, quote)
		}
		r := out[ethHeader:n]
		if checksum(r[:20]) != 0 || checksum(r[20:]) != 0 {
			t.Fatal("bad checksum")
		}
		if !bytes.Equal(out[0:6], frame[6:12]) || !bytes.Equal(r[12:16], ip[16:20]) || !bytes.Equal(r[16:20], ip[12:16]) {
			t.Fatal("reply not addressed back to the sender")
		}
		if r[20] != 3 || r[21] != 4 || int(binary.BigEndian.Uint16(r[26:28])) != int(mtu) || !bytes.Equal(r[28:], ip[:quote]) {
			t.Fatalf("not a fragmentation-needed quoting the packet: % x", r)
		}
	})
}
