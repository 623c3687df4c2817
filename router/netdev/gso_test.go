package netdev

import (
	"bytes"
	"encoding/binary"
	"testing"
)

// slowChecksum is RFC 1071 the plain way, to check sum and fold.
func slowChecksum(b []byte) uint16 {
	var s uint32
	for len(b) >= 2 {
		s += uint32(b[0])<<8 | uint32(b[1])
		b = b[2:]
	}
	if len(b) == 1 {
		s += uint32(b[0]) << 8
	}
	for s > 0xffff {
		s = s>>16 + s&0xffff
	}
	return ^uint16(s)
}

func TestChecksum(t *testing.T) {
	b := make([]byte, 1501)
	for i := range b {
		b[i] = byte(i*7 + i>>3)
	}
	for _, n := range []int{0, 1, 2, 7, 8, 9, 31, 32, 33, 64, 1499, 1500, 1501} {
		if got, want := ^fold(sum(0, b[:n])), slowChecksum(b[:n]); got != want {
			t.Errorf("%d bytes: checksum %#04x, want %#04x", n, got, want)
		}
	}
}

// tcp4Frame builds an Ethernet/IPv4/TCP frame with payload, flags, and a
// partial TCP checksum as the kernel leaves it for offload.
func tcp4Frame(payload []byte, flags byte) []byte {
	f := make([]byte, 14+20+32+len(payload))
	binary.BigEndian.PutUint16(f[12:14], 0x0800)
	ip := f[14:34]
	ip[0] = 0x45
	binary.BigEndian.PutUint16(ip[2:4], uint16(len(f)-14))
	binary.BigEndian.PutUint16(ip[4:6], 0x1234)
	ip[6] = 0x40
	ip[8], ip[9] = 64, 6
	copy(ip[12:16], []byte{10, 2, 1, 1})
	copy(ip[16:20], []byte{10, 2, 1, 2})
	tcp := f[34:]
	binary.BigEndian.PutUint16(tcp[0:2], 40000)
	binary.BigEndian.PutUint16(tcp[2:4], 5201)
	binary.BigEndian.PutUint32(tcp[4:8], 0xfffff000) // wraps during the test
	tcp[12] = 8 << 4                                 // 32-byte header (options)
	tcp[13] = flags
	copy(tcp[32:], payload)
	return f
}

func TestSegmentTCP4(t *testing.T) {
	payload := make([]byte, 5000)
	for i := range payload {
		payload[i] = byte(i)
	}
	pkt := tcp4Frame(payload, tcpFlagCWR|tcpFlagPSH|tcpFlagFIN|0x10)
	var s segmenter
	hdr := vnetHdr{flags: vnetFlagNeedsCsum, gsoType: vnetGSOTCPv4, gsoSize: 1448, csumStart: 34, csumOffset: 16}
	if err := s.reset(hdr, pkt); err != nil {
		t.Fatal(err)
	}
	var got []byte
	dst := make([]byte, 2000)
	segs := 0
	for {
		n, err := s.next(dst)
		if err != nil {
			t.Fatal(err)
		}
		if n == 0 {
			break
		}
		f := dst[:n]
		ip, tcp := f[14:34], f[34:]
		if slowChecksum(ip) != 0 {
			t.Errorf("segment %d: bad IP checksum", segs)
		}
		if int(binary.BigEndian.Uint16(ip[2:4])) != n-14 || binary.BigEndian.Uint16(ip[4:6]) != 0x1234+uint16(segs) {
			t.Errorf("segment %d: ip length %d id %#x", segs, binary.BigEndian.Uint16(ip[2:4]), binary.BigEndian.Uint16(ip[4:6]))
		}
		pseudo := append(append([]byte(nil), ip[12:20]...), 0, 6, byte(len(tcp)>>8), byte(len(tcp)))
		if slowChecksum(append(pseudo, tcp...)) != 0 {
			t.Errorf("segment %d: bad TCP checksum", segs)
		}
		if seq := binary.BigEndian.Uint32(tcp[4:8]); seq != 0xfffff000+uint32(len(got)) {
			t.Errorf("segment %d: seq %#x", segs, seq)
		}
		last := len(got)+len(tcp)-32 == len(payload)
		wantFlags := byte(0x10)
		if segs == 0 {
			wantFlags |= tcpFlagCWR
		}
		if last {
			wantFlags |= tcpFlagPSH | tcpFlagFIN
		}
		if tcp[13] != wantFlags {
			t.Errorf("segment %d: flags %#x, want %#x", segs, tcp[13], wantFlags)
		}
		if !last && len(tcp)-32 != 1448 {
			t.Errorf("segment %d: %d payload bytes", segs, len(tcp)-32)
		}
		got = append(got, tcp[32:]...)
		segs++
	}
	if segs != 4 || !bytes.Equal(got, payload) {
		t.Fatalf("%d segments, payload intact %v", segs, bytes.Equal(got, payload))
	}
}

// TestCompleteChecksum: a frame without GSO but with a partial checksum
// (the pseudo-header sum in the field) comes out with the full one.
func TestCompleteChecksum(t *testing.T) {
	pkt := tcp4Frame([]byte("hello, partial checksum"), 0x18)
	tcp := pkt[34:]
	ps := sum(0, pkt[26:34]) + 6 + uint64(len(tcp))
	binary.BigEndian.PutUint16(tcp[16:18], fold(ps))
	var s segmenter
	if err := s.reset(vnetHdr{flags: vnetFlagNeedsCsum, csumStart: 34, csumOffset: 16}, pkt); err != nil {
		t.Fatal(err)
	}
	dst := make([]byte, 2000)
	n, err := s.next(dst)
	if err != nil || n != len(pkt) {
		t.Fatalf("next: %d %v", n, err)
	}
	pseudo := append(append([]byte(nil), pkt[26:34]...), 0, 6, byte(len(tcp)>>8), byte(len(tcp)))
	if slowChecksum(append(pseudo, dst[34:n]...)) != 0 {
		t.Fatal("checksum not completed")
	}
	if n, _ := s.next(dst); n != 0 {
		t.Fatal("frame returned twice")
	}
	if err := s.reset(vnetHdr{flags: vnetFlagNeedsCsum, csumStart: 34, csumOffset: 9999}, pkt); err == nil {
		t.Fatal("checksum offset beyond the frame accepted")
	}
	if err := s.reset(vnetHdr{gsoType: vnetGSOTCPv4, gsoSize: 0}, pkt); err == nil {
		t.Fatal("gso size 0 accepted")
	}
}

// TestCoalesceRoundTrip cuts a super-frame into segments and joins them
// again: the same headers and payload come back, with a GSO header whose
// size is the segments' payload; a foreign frame ends the run.
func TestCoalesceRoundTrip(t *testing.T) {
	payload := make([]byte, 7000)
	for i := range payload {
		payload[i] = byte(i * 3)
	}
	orig := tcp4Frame(payload, tcpFlagACK|tcpFlagPSH)
	frames := segmentAt4(t, vnetHdr{flags: vnetFlagNeedsCsum, gsoType: vnetGSOTCPv4, gsoSize: 1300}, orig)
	other := append([]byte{0, 0, 0, 0}, tcp4Frame([]byte("x"), tcpFlagACK)...)
	frames = append(frames, other)
	n, first := coalesce(frames, 4)
	if n != 6 {
		t.Fatalf("coalesced %d of %d frames, want 6", n, len(frames))
	}
	out := make([]byte, vnetHdrLen+ethHdrLen+0xffff)
	m := buildSuper(out, frames[:n], 4, first)
	h := parseVnetHdr(out)
	if h.gsoType != vnetGSOTCPv4 || h.gsoSize != 1300 || h.flags != vnetFlagNeedsCsum || h.csumStart != 34 || h.csumOffset != 16 || h.hdrLen != 66 {
		t.Fatalf("virtio header %+v", h)
	}
	got := out[vnetHdrLen:m]
	if len(got) != len(orig) || !bytes.Equal(got[66:], payload) {
		t.Fatalf("super-frame of %d bytes, want %d; payload intact %v", len(got), len(orig), bytes.Equal(got[66:], payload))
	}
	// headers as the original apart from the checksums
	g, o := append([]byte(nil), got[:66]...), append([]byte(nil), orig[:66]...)
	for _, b := range [][]byte{g, o} {
		b[24], b[25], b[50], b[51] = 0, 0, 0, 0
	}
	if !bytes.Equal(g, o) {
		t.Fatalf("headers differ:\n% x\n% x", g, o)
	}
	if slowChecksum(got[14:34]) != 0 {
		t.Fatal("bad IP checksum")
	}
	resegments(t, h, got, frames[:n])
	// Not coalesced: a single frame, a gap in the sequence, a SYN.
	if n, _ := coalesce(frames[5:], 4); n != 1 {
		t.Fatalf("last segment and a foreign frame coalesced: %d", n)
	}
	gap := [][]byte{frames[0], frames[2]}
	if n, _ := coalesce(gap, 4); n != 1 {
		t.Fatal("segments with a sequence gap coalesced")
	}
	syn := append([]byte{0, 0, 0, 0}, tcp4Frame(payload[:100], 0x02)...)
	if n, _ := coalesce([][]byte{syn, syn}, 4); n != 1 {
		t.Fatal("SYN coalesced")
	}
}

// segmentAt4 cuts super-frame pkt with hdr into its segments, each 4
// bytes into its buffer (an offset, as Write takes frames).
func segmentAt4(t *testing.T, hdr vnetHdr, pkt []byte) [][]byte {
	t.Helper()
	var s segmenter
	if err := s.reset(hdr, pkt); err != nil {
		t.Fatal(err)
	}
	var frames [][]byte
	for {
		b := make([]byte, 3000)
		n, err := s.next(b[4:])
		if err != nil {
			t.Fatal(err)
		}
		if n == 0 {
			return frames
		}
		frames = append(frames, b[:4+n])
	}
}

// resegments checks that the segmenter, given super-frame super as Write
// built it (virtio header h), gives frames (at offset 4) back.
func resegments(t *testing.T, h vnetHdr, super []byte, frames [][]byte) {
	t.Helper()
	got := segmentAt4(t, h, super)
	if len(got) != len(frames) {
		t.Fatalf("%d segments after the round trip, want %d", len(got), len(frames))
	}
	for i := range frames {
		if !bytes.Equal(got[i][4:], frames[i][4:]) {
			t.Fatalf("segment %d differs after the round trip", i)
		}
	}
}

// buildSuper writes into out a virtio header and the super-frame joining
// frames (as coalesce chose them), as VNetTAP.Write gives it to the kernel
// in pieces; it returns the length.
func buildSuper(out []byte, frames [][]byte, offset int, first tcpInfo) int {
	n := vnetHdrLen + first.hlen
	for _, b := range frames {
		n += copy(out[n:], b[offset+first.hlen:])
	}
	superHeader(out, frames, offset, first, n-vnetHdrLen-first.hlen)
	return n
}

// BenchmarkSegmentTCP4 cuts a 64 KiB super-frame into MSS-sized frames,
// as a bulk TCP sender's reads from the TAP are: copies and checksums.
func BenchmarkSegmentTCP4(b *testing.B) {
	const mss = 1324 // weave's 1376 MTU less 52 bytes of IP and TCP headers
	payload := make([]byte, 65535-14-20-32)
	for i := range payload {
		payload[i] = byte(i * 13)
	}
	pkt := tcp4Frame(payload, 0x18)
	hdr := vnetHdr{flags: vnetFlagNeedsCsum, gsoType: vnetGSOTCPv4, gsoSize: mss, csumStart: 34, csumOffset: 16}
	dst := make([]byte, 2048)
	b.SetBytes(int64(len(payload)))
	b.ReportAllocs()
	var s segmenter
	for b.Loop() {
		if err := s.reset(hdr, pkt); err != nil {
			b.Fatal(err)
		}
		for {
			n, err := s.next(dst)
			if err != nil {
				b.Fatal(err)
			}
			if n == 0 {
				break
			}
		}
	}
}

// tcp6Frame is tcp4Frame over IPv6 (no extension headers).
func tcp6Frame(payload []byte, flags byte) []byte {
	f := make([]byte, 14+40+32+len(payload))
	binary.BigEndian.PutUint16(f[12:14], 0x86dd)
	ip := f[14:54]
	ip[0], ip[1], ip[2], ip[3] = 0x60, 0x01, 0x23, 0x45 // traffic class 0, flow label 0x12345
	binary.BigEndian.PutUint16(ip[4:6], uint16(len(f)-54))
	ip[6], ip[7] = 6, 64
	copy(ip[8:24], []byte{0xfd, 0, 0x8e, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1})
	copy(ip[24:40], []byte{0xfd, 0, 0x8e, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2})
	tcp := f[54:]
	binary.BigEndian.PutUint16(tcp[0:2], 40000)
	binary.BigEndian.PutUint16(tcp[2:4], 5201)
	binary.BigEndian.PutUint32(tcp[4:8], 0xfffff000)
	tcp[12] = 8 << 4
	tcp[13] = flags
	copy(tcp[32:], payload)
	return f
}

// tcp6Checksum verifies a TCP-over-IPv6 segment's checksum (RFC 8200
// pseudo-header: addresses, upper-layer length, next header).
func tcp6Checksum(f []byte) bool {
	ip, tcp := f[14:54], f[54:]
	pseudo := append(append([]byte(nil), ip[8:40]...), 0, 0, byte(len(tcp)>>8), byte(len(tcp)), 0, 0, 0, 6)
	return slowChecksum(append(pseudo, tcp...)) == 0
}

// TestSegmentTCP6: an IPv6 super-frame (TUN_F_TSO6) is cut like an IPv4
// one: payload lengths, sequence numbers, flags and checksums per
// segment, the IPv6 header otherwise untouched; one with an extension
// header is refused.
func TestSegmentTCP6(t *testing.T) {
	payload := make([]byte, 5000)
	for i := range payload {
		payload[i] = byte(i * 5)
	}
	pkt := tcp6Frame(payload, tcpFlagCWR|tcpFlagPSH|0x10)
	orig := append([]byte(nil), pkt[14:54]...)
	var s segmenter
	hdr := vnetHdr{flags: vnetFlagNeedsCsum, gsoType: vnetGSOTCPv6, gsoSize: 1428, csumStart: 54, csumOffset: 16}
	if err := s.reset(hdr, pkt); err != nil {
		t.Fatal(err)
	}
	var got []byte
	dst := make([]byte, 2000)
	for segs := 0; ; segs++ {
		n, err := s.next(dst)
		if err != nil {
			t.Fatal(err)
		}
		if n == 0 {
			if segs != 4 {
				t.Fatalf("%d segments, want 4", segs)
			}
			break
		}
		f := dst[:n]
		ip, tcp := f[14:54], f[54:]
		if int(binary.BigEndian.Uint16(ip[4:6])) != len(tcp) {
			t.Errorf("segment %d: payload length %d, want %d", segs, binary.BigEndian.Uint16(ip[4:6]), len(tcp))
		}
		if !bytes.Equal(ip[:4], orig[:4]) || !bytes.Equal(ip[6:], orig[6:]) {
			t.Errorf("segment %d: IPv6 header changed beyond its length", segs)
		}
		if !tcp6Checksum(f) {
			t.Errorf("segment %d: bad TCP checksum", segs)
		}
		if seq := binary.BigEndian.Uint32(tcp[4:8]); seq != 0xfffff000+uint32(len(got)) {
			t.Errorf("segment %d: seq %#x", segs, seq)
		}
		last := len(got)+len(tcp)-32 == len(payload)
		want := byte(0x10)
		if segs == 0 {
			want |= tcpFlagCWR
		}
		if last {
			want |= tcpFlagPSH
		}
		if tcp[13] != want {
			t.Errorf("segment %d: flags %#x, want %#x", segs, tcp[13], want)
		}
		got = append(got, tcp[32:]...)
	}
	if !bytes.Equal(got, payload) {
		t.Fatal("payload not intact")
	}
	ext := tcp6Frame(payload, 0x10)
	ext[14+6] = 0 // hop-by-hop options header first
	if err := s.reset(hdr, ext); err == nil {
		t.Fatal("IPv6 super-frame with an extension header accepted")
	}
	if err := s.reset(vnetHdr{gsoType: vnetGSOTCPv6, gsoSize: 1428}, tcp4Frame(payload, 0x10)); err == nil {
		t.Fatal("IPv4 frame accepted as a TCPv6 super-frame")
	}
}

// TestCoalesceRoundTripIPv6: IPv6 segments are joined into one TCPv6 GSO
// super-frame and cut again into the same segments; a different flow
// label ends a run.
func TestCoalesceRoundTripIPv6(t *testing.T) {
	payload := make([]byte, 7000)
	for i := range payload {
		payload[i] = byte(i * 7)
	}
	orig := tcp6Frame(payload, tcpFlagACK|tcpFlagPSH)
	frames := segmentAt4(t, vnetHdr{flags: vnetFlagNeedsCsum, gsoType: vnetGSOTCPv6, gsoSize: 1300}, orig)
	if len(frames) != 6 {
		t.Fatalf("%d segments, want 6", len(frames))
	}
	n, first := coalesce(frames, 4)
	if n != 6 || !first.v6 {
		t.Fatalf("coalesced %d of 6 frames (v6 %v)", n, first.v6)
	}
	out := make([]byte, vnetHdrLen+ethHdrLen+0xffff)
	m := buildSuper(out, frames, 4, first)
	h := parseVnetHdr(out)
	if h.gsoType != vnetGSOTCPv6 || h.gsoSize != 1300 || h.flags != vnetFlagNeedsCsum || h.csumStart != 54 || h.csumOffset != 16 || h.hdrLen != 86 {
		t.Fatalf("virtio header %+v", h)
	}
	got := out[vnetHdrLen:m]
	if !bytes.Equal(got[86:], payload) {
		t.Fatal("payload not intact")
	}
	g, o := append([]byte(nil), got[:86]...), append([]byte(nil), orig[:86]...)
	g[70], g[71], o[70], o[71] = 0, 0, 0, 0 // TCP checksum: partial in g
	if !bytes.Equal(g, o) {
		t.Fatalf("headers differ:\n% x\n% x", g, o)
	}
	resegments(t, h, got, frames)
	other := append([]byte(nil), frames[1]...)
	other[4+14+3] ^= 1 // flow label
	if n, _ := coalesce([][]byte{frames[0], other}, 4); n != 1 {
		t.Fatal("segments of different flow labels coalesced")
	}
	v4 := append([]byte{0, 0, 0, 0}, tcp4Frame(payload[:1300], tcpFlagACK)...)
	if n, _ := coalesce([][]byte{frames[0], v4}, 4); n != 1 {
		t.Fatal("IPv6 and IPv4 segments coalesced")
	}
}
