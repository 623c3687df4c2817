package netdev

import (
	"bytes"
	"encoding/binary"
)

// Receive offload for a VNetTAP's writes: consecutive frames of one IPv4
// or IPv6 TCP flow (as the overlay delivers a batch of them) are joined into one
// super-frame that the kernel takes with one write and hands on as one
// GSO packet, which the container's TCP stack receives as it would a GRO'd
// one. The rules follow Linux GRO: same addresses, ports, IP and TCP
// header lengths, TTL and TOS (hop limit, traffic class and flow label),
// acknowledgement and options; contiguous
// sequence numbers; every segment but the last exactly gso_size long; only
// ACK (and PSH on the last) set.

// tcpInfo describes a frame that may be coalesced; ok false otherwise.
type tcpInfo struct {
	ok      bool
	v6      bool
	ihl     int // IP header length (40 for IPv6: no extension headers)
	hlen    int // Ethernet + IP + TCP headers
	payload int
	seq     uint32
	flags   byte
}

func parseTCP(f []byte) tcpInfo {
	if len(f) < ethHdrLen+40 {
		return tcpInfo{}
	}
	switch binary.BigEndian.Uint16(f[12:14]) {
	case etherTypeIPv4:
	case etherTypeIPv6:
		return parseTCP6(f)
	default:
		return tcpInfo{}
	}
	ip := f[ethHdrLen:]
	ihl := int(ip[0]&0x0f) * 4
	if ip[0]>>4 != 4 || ihl < 20 || ip[9] != ipProtoTCP || ip[6]&0x3f != 0 || ip[7] != 0 || len(ip) < ihl+20 {
		return tcpInfo{}
	}
	if int(binary.BigEndian.Uint16(ip[2:4])) != len(ip) {
		return tcpInfo{} // padded or truncated
	}
	tcp := ip[ihl:]
	doff := int(tcp[12]>>4) * 4
	if doff < 20 || len(tcp) < doff {
		return tcpInfo{}
	}
	return tcpInfo{
		ok: true, ihl: ihl, hlen: ethHdrLen + ihl + doff, payload: len(tcp) - doff,
		seq: binary.BigEndian.Uint32(tcp[4:8]), flags: tcp[13],
	}
}

// parseTCP6 is parseTCP for an IPv6 frame: TCP right after the fixed
// header.
func parseTCP6(f []byte) tcpInfo {
	if len(f) < ethHdrLen+ipv6HdrLen+20 {
		return tcpInfo{}
	}
	ip := f[ethHdrLen:]
	if ip[0]>>4 != 6 || ip[6] != ipProtoTCP || int(binary.BigEndian.Uint16(ip[4:6])) != len(ip)-ipv6HdrLen {
		return tcpInfo{} // not TCP next, padded or truncated
	}
	tcp := ip[ipv6HdrLen:]
	doff := int(tcp[12]>>4) * 4
	if doff < 20 || len(tcp) < doff {
		return tcpInfo{}
	}
	return tcpInfo{
		ok: true, v6: true, ihl: ipv6HdrLen, hlen: ethHdrLen + ipv6HdrLen + doff, payload: len(tcp) - doff,
		seq: binary.BigEndian.Uint32(tcp[4:8]), flags: tcp[13],
	}
}

// sameFlow says whether b may follow a in one super-frame, header-wise.
func sameFlow(a, b []byte, ai, bi tcpInfo) bool {
	if ai.v6 != bi.v6 || ai.ihl != bi.ihl || ai.hlen != bi.hlen {
		return false
	}
	ipa, ipb := a[ethHdrLen:], b[ethHdrLen:]
	if ai.v6 {
		// version, traffic class, flow label; next header, hop limit; addresses
		if !bytes.Equal(ipa[0:4], ipb[0:4]) || !bytes.Equal(ipa[6:40], ipb[6:40]) {
			return false
		}
	} else if ipa[1] != ipb[1] || ipa[6] != ipb[6] || ipa[8] != ipb[8] || !bytes.Equal(ipa[12:20], ipb[12:20]) {
		return false
	}
	ta, tb := a[ethHdrLen+ai.ihl:ai.hlen], b[ethHdrLen+bi.ihl:bi.hlen]
	return bytes.Equal(a[0:12], b[0:12]) && // MACs
		bytes.Equal(ta[0:4], tb[0:4]) && // ports
		bytes.Equal(ta[8:12], tb[8:12]) && // ack
		bytes.Equal(ta[20:], tb[20:]) // options
}

// coalesce returns how many frames from the start of frames (each at
// offset) form one super-frame (1: none).
func coalesce(frames [][]byte, offset int) (n int, first tcpInfo) {
	f0 := frames[0][offset:]
	first = parseTCP(f0)
	if !first.ok || first.payload == 0 || first.flags != tcpFlagACK {
		return 1, first
	}
	total := len(f0)
	prev := first
	n = 1
	for n < len(frames) {
		f := frames[n][offset:]
		in := parseTCP(f)
		if !in.ok || in.payload == 0 || in.payload > first.payload || prev.payload != first.payload ||
			in.seq != prev.seq+uint32(prev.payload) || (in.flags != tcpFlagACK && in.flags != tcpFlagACK|tcpFlagPSH) ||
			total+in.payload-ethHdrLen > 0xffff || !sameFlow(f0, f, first, in) {
			break
		}
		total += in.payload
		prev = in
		n++
		if in.flags&tcpFlagPSH != 0 || in.payload < first.payload {
			break // it ends the super-frame
		}
	}
	return n, first
}

// superHeader writes into hdr the virtio header and the packet headers of
// the super-frame joining frames (as coalesce chose them), whose TCP
// payloads come to payload bytes; the payloads follow these headers in
// the super-frame. It returns the length written, vnetHdrLen+first.hlen.
func superHeader(hdr []byte, frames [][]byte, offset int, first tcpInfo, payload int) int {
	f0 := frames[0][offset:]
	hlen := first.hlen
	n := vnetHdrLen + copy(hdr[vnetHdrLen:], f0[:hlen])
	last := frames[len(frames)-1][offset:]
	ip := hdr[vnetHdrLen+ethHdrLen : vnetHdrLen+ethHdrLen+first.ihl]
	tcp := hdr[vnetHdrLen+ethHdrLen+first.ihl : n]
	var addrs []byte
	gso := byte(vnetGSOTCPv4)
	if first.v6 {
		binary.BigEndian.PutUint16(ip[4:6], uint16(len(tcp)+payload))
		addrs, gso = ip[8:40], vnetGSOTCPv6
	} else {
		binary.BigEndian.PutUint16(ip[2:4], uint16(hlen-ethHdrLen+payload))
		ip[10], ip[11] = 0, 0
		binary.BigEndian.PutUint16(ip[10:12], ^fold(sum(0, ip)))
		addrs = ip[12:20]
	}
	tcp[13] = last[ethHdrLen+first.ihl+13]              // PSH from the last
	copy(tcp[14:16], last[ethHdrLen+first.ihl+14:][:2]) // its window
	// partial checksum: the pseudo-header sum, for the kernel to finish
	binary.BigEndian.PutUint16(tcp[16:18], fold(sum(0, addrs)+ipProtoTCP+uint64(len(tcp)+payload)))
	h := hdr[:vnetHdrLen]
	h[0], h[1] = vnetFlagNeedsCsum, gso
	binary.LittleEndian.PutUint16(h[2:4], uint16(hlen))
	binary.LittleEndian.PutUint16(h[4:6], uint16(first.payload))
	binary.LittleEndian.PutUint16(h[6:8], uint16(ethHdrLen+first.ihl))
	binary.LittleEndian.PutUint16(h[8:10], 16)
	return n
}
