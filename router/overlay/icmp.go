package overlay

import "encoding/binary"

// icmpReplyMax bounds the frame fragNeeded writes: Ethernet, IPv4, ICMP
// header, the original IP header (at most 60 bytes) and 8 bytes of it.
const icmpReplyMax = ethHeader + 20 + 8 + 60 + 8

// fragNeeded builds into out an ICMP "fragmentation needed" (type 3 code 4)
// answering frame, an IPv4 packet with DF set that is larger than mtu, as if
// from the packet's destination, so the sender's kernel lowers its path MTU.
// It returns the reply's length, or 0 when frame is not IPv4 with DF (or is
// itself an ICMP error, which must not be answered).
func fragNeeded(out, frame []byte, mtu int) int {
	ip, ihl, ok := ipv4Packet(frame)
	if !ok {
		return 0
	}
	if ip[6]&0x40 == 0 { // DF clear
		return 0
	}
	if ip[9] == 1 && len(ip) > ihl && ip[ihl] != 0 && ip[ihl] != 8 {
		return 0 // ICMP other than echo: may be an error message
	}
	quote := min(len(ip), ihl+8)
	n := ethHeader + 20 + 8 + quote
	if len(out) < n {
		return 0
	}
	copy(out[0:6], frame[6:12])
	copy(out[6:12], frame[0:6])
	binary.BigEndian.PutUint16(out[12:14], 0x0800)
	h := out[ethHeader : ethHeader+20]
	h[0], h[1] = 0x45, 0
	binary.BigEndian.PutUint16(h[2:4], uint16(20+8+quote))
	binary.BigEndian.PutUint32(h[4:8], 0) // id, flags, fragment offset
	h[8], h[9] = 64, 1                    // ttl, protocol ICMP
	h[10], h[11] = 0, 0
	copy(h[12:16], ip[16:20]) // from the original destination
	copy(h[16:20], ip[12:16]) // to the original source
	binary.BigEndian.PutUint16(h[10:12], checksum(h))
	m := out[ethHeader+20 : n]
	m[0], m[1], m[2], m[3], m[4], m[5] = 3, 4, 0, 0, 0, 0
	binary.BigEndian.PutUint16(m[6:8], uint16(mtu))
	copy(m[8:], ip[:quote])
	binary.BigEndian.PutUint16(m[2:4], checksum(m))
	return n
}

// ipv4Packet returns the IPv4 packet in an Ethernet frame and its header
// length, if the frame is IPv4 (ethertype 0x0800, version 4) with a whole
// header of at least 20 bytes. The one parse of a frame's IPv4 header, for
// the ICMP replies and the flow hash.
func ipv4Packet(frame []byte) (ip []byte, ihl int, ok bool) {
	if len(frame) < ethHeader+20 || binary.BigEndian.Uint16(frame[12:14]) != 0x0800 {
		return nil, 0, false
	}
	ip = frame[ethHeader:]
	ihl = int(ip[0]&0x0f) * 4
	if ip[0]>>4 != 4 || ihl < 20 || len(ip) < ihl {
		return nil, 0, false
	}
	return ip, ihl, true
}

// checksum is the Internet checksum (RFC 1071) of b.
func checksum(b []byte) uint16 {
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
