package e2e

import (
	"bytes"
	"encoding/binary"
	"slices"
	"testing"

	"github.com/weavelab/weave/test/harness"
)

// The routers send runs of datagrams to one peer with UDP segmentation
// offload (UDP_SEGMENT, on by default). Between network namespaces the
// kernel carries such a message unsegmented across the veths and the LAN
// bridge, so the capture shows one UDP packet whose payload is several
// overlay datagrams: all gso_size bytes long but the last, which may be
// shorter. The overlay header carries no length (and with a password the
// records' lengths are sealed), so splitDatagrams finds gso_size from the
// headers themselves: the datagram format (router/overlay/README.md) puts
// version(1) type(1) epoch(2) receiver-index(4) sender-peer(6) reserved(2)
// counter(8) first, and every datagram of one message goes to the same
// connection, so each carries the first one's version, type, receiver
// index and sender at multiples of gso_size, with a larger counter.

const overlayHeaderLen = 24

// splitDatagrams returns the overlay datagrams in the captured packets:
// a super-packet is cut into its datagrams, each rebuilt as an IPv4/UDP
// packet of its own (IP and UDP lengths set; the UDP checksum is set when
// it is sent with SendRawIP). cut[i] says whether out[i] was cut out of a
// super-packet.
func splitDatagrams(pkts []harness.UDP) (out []harness.UDP, cut []bool) {
	for _, u := range pkts {
		size := gsoSize(u.Payload)
		if size == 0 {
			out, cut = append(out, u), append(cut, false)
			continue
		}
		for p := u.Payload; len(p) > 0; {
			n := min(size, len(p))
			out, cut = append(out, datagramPacket(u, p[:n])), append(cut, true)
			p = p[n:]
		}
	}
	return out, cut
}

// gsoSize returns the segment size of a payload holding several overlay
// datagrams, 0 when it holds one.
func gsoSize(p []byte) int {
	if len(p) < 2*overlayHeaderLen || p[0] != 1 {
		return 0
	}
	for s := overlayHeaderLen; s+overlayHeaderLen <= len(p); s++ {
		if !sameConn(p, p[s:]) {
			continue
		}
		// every further multiple of s must start a datagram too, and
		// the last one must hold at least a header
		ok := true
		for k := s; k < len(p); k += s {
			if len(p)-k < overlayHeaderLen || !sameConn(p[k-s:], p[k:]) {
				ok = false
				break
			}
		}
		if ok {
			return s
		}
	}
	return 0
}

// sameConn says whether b starts with an overlay header of the same
// version, type, receiver index and sender as a's, with a larger counter.
func sameConn(a, b []byte) bool {
	return a[0] == b[0] && a[1] == b[1] && bytes.Equal(a[4:14], b[4:14]) &&
		binary.BigEndian.Uint64(b[16:24]) > binary.BigEndian.Uint64(a[16:24])
}

// datagramPacket returns an IPv4/UDP packet like u carrying payload.
func datagramPacket(u harness.UDP, payload []byte) harness.UDP {
	ihl := int(u.IP[0]&0x0f) * 4
	ip := make([]byte, ihl+8+len(payload))
	copy(ip, u.IP[:ihl+8])
	copy(ip[ihl+8:], payload)
	binary.BigEndian.PutUint16(ip[2:], uint16(len(ip)))
	ip[10], ip[11] = 0, 0
	var sum uint32
	for i := 0; i < ihl; i += 2 {
		sum += uint32(binary.BigEndian.Uint16(ip[i:]))
	}
	for sum>>16 != 0 {
		sum = sum&0xffff + sum>>16
	}
	binary.BigEndian.PutUint16(ip[10:], ^uint16(sum))
	binary.BigEndian.PutUint16(ip[ihl+4:], uint16(8+len(payload)))
	ip[ihl+6], ip[ihl+7] = 0, 0
	v := u
	v.IP, v.Payload = ip, ip[ihl+8:]
	return v
}

// TestSplitDatagrams: a payload of several datagrams of one connection is
// cut at the segment size (the last shorter), one datagram is left whole.
func TestSplitDatagrams(t *testing.T) {
	dgram := func(ctr uint64, n int, fill byte) []byte {
		d := bytes.Repeat([]byte{fill}, n)
		copy(d, []byte{1, 1, 0, 0, 0, 1, 0, 2, 0x0a, 0, 0, 0, 0, 1, 0, 0})
		binary.BigEndian.PutUint64(d[16:], ctr)
		return d
	}
	udp := func(payload []byte) harness.UDP {
		ip := make([]byte, 28+len(payload))
		ip[0], ip[9] = 0x45, 17
		binary.BigEndian.PutUint16(ip[2:], uint16(len(ip)))
		binary.BigEndian.PutUint16(ip[24:], uint16(8+len(payload)))
		copy(ip[28:], payload)
		return harness.UDP{IP: ip, Payload: ip[28:]}
	}
	var super []byte
	for i := range 4 {
		super = append(super, dgram(uint64(100+i), 1400, byte(i))...)
	}
	super = append(super, dgram(104, 300, 9)...)
	single := dgram(7, 1400, 1)
	out, cut := splitDatagrams([]harness.UDP{udp(super), udp(single)})
	if len(out) != 6 || !slices.Equal(cut, []bool{true, true, true, true, true, false}) {
		t.Fatalf("split into %d datagrams (cut %v), want 6 (5 cut)", len(out), cut)
	}
	for i, want := range []int{1400, 1400, 1400, 1400, 300, 1400} {
		d := out[i]
		if len(d.Payload) != want || int(binary.BigEndian.Uint16(d.IP[2:])) != len(d.IP) ||
			int(binary.BigEndian.Uint16(d.IP[24:])) != 8+want {
			t.Errorf("datagram %d: %d bytes, IP length %d, UDP length %d; want %d", i, len(d.Payload),
				binary.BigEndian.Uint16(d.IP[2:]), binary.BigEndian.Uint16(d.IP[24:]), want)
		}
	}
	if !bytes.Equal(out[4].Payload, dgram(104, 300, 9)) {
		t.Error("last datagram's payload altered")
	}
}

func countTrue(bs []bool) int {
	n := 0
	for _, b := range bs {
		if b {
			n++
		}
	}
	return n
}
