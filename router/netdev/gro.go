package netdev

import (
	"bytes"
	"encoding/binary"
)

// Receive offload for a VNetTAP's writes: consecutive frames of one IPv4
// TCP flow (as the overlay delivers a batch of them) are joined into one
// super-frame that the kernel takes with one write and hands on as one
// GSO packet, which the container's TCP stack receives as it would a GRO'd
// one. The rules follow Linux GRO: same addresses, ports, IP and TCP
// header lengths, TTL and TOS, acknowledgement and options; contiguous
// sequence numbers; every segment but the last exactly gso_size long; only
// ACK (and PSH on the last) set.

// tcp4Info describes a frame that may be coalesced; ok false otherwise.
type tcp4Info struct {
	ok      bool
	ihl     int
	hlen    int // Ethernet + IP + TCP headers
	payload int
	seq     uint32
	flags   byte
}

func parseTCP4(f []byte) tcp4Info {
	if len(f) < ethHdrLen+40 || binary.BigEndian.Uint16(f[12:14]) != etherTypeIPv4 {
		return tcp4Info{}
	}
	ip := f[ethHdrLen:]
	ihl := int(ip[0]&0x0f) * 4
	if ip[0]>>4 != 4 || ihl < 20 || ip[9] != ipProtoTCP || ip[6]&0x3f != 0 || ip[7] != 0 || len(ip) < ihl+20 {
		return tcp4Info{}
	}
	if int(binary.BigEndian.Uint16(ip[2:4])) != len(ip) {
		return tcp4Info{} // padded or truncated
	}
	tcp := ip[ihl:]
	doff := int(tcp[12]>>4) * 4
	if doff < 20 || len(tcp) < doff {
		return tcp4Info{}
	}
	return tcp4Info{
		ok: true, ihl: ihl, hlen: ethHdrLen + ihl + doff, payload: len(tcp) - doff,
		seq: binary.BigEndian.Uint32(tcp[4:8]), flags: tcp[13],
	}
}

// sameFlow says whether b may follow a in one super-frame, header-wise.
func sameFlow(a, b []byte, ai, bi tcp4Info) bool {
	if ai.ihl != bi.ihl || ai.hlen != bi.hlen {
		return false
	}
	ipa, ipb := a[ethHdrLen:], b[ethHdrLen:]
	if ipa[1] != ipb[1] || ipa[6] != ipb[6] || ipa[8] != ipb[8] || !bytes.Equal(ipa[12:20], ipb[12:20]) {
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
func coalesce(frames [][]byte, offset int) (n int, first tcp4Info) {
	f0 := frames[0][offset:]
	first = parseTCP4(f0)
	if !first.ok || first.payload == 0 || first.flags != tcpFlagACK {
		return 1, first
	}
	total := len(f0)
	prev := first
	n = 1
	for n < len(frames) {
		f := frames[n][offset:]
		in := parseTCP4(f)
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
func superHeader(hdr []byte, frames [][]byte, offset int, first tcp4Info, payload int) int {
	f0 := frames[0][offset:]
	hlen := first.hlen
	n := vnetHdrLen + copy(hdr[vnetHdrLen:], f0[:hlen])
	last := frames[len(frames)-1][offset:]
	ip := hdr[vnetHdrLen+ethHdrLen : vnetHdrLen+ethHdrLen+first.ihl]
	binary.BigEndian.PutUint16(ip[2:4], uint16(hlen-ethHdrLen+payload))
	ip[10], ip[11] = 0, 0
	binary.BigEndian.PutUint16(ip[10:12], ^fold(sum(0, ip)))
	tcp := hdr[vnetHdrLen+ethHdrLen+first.ihl : n]
	tcp[13] = last[ethHdrLen+first.ihl+13]              // PSH from the last
	copy(tcp[14:16], last[ethHdrLen+first.ihl+14:][:2]) // its window
	// partial checksum: the pseudo-header sum, for the kernel to finish
	binary.BigEndian.PutUint16(tcp[16:18], fold(sum(0, ip[12:20])+ipProtoTCP+uint64(len(tcp)+payload)))
	h := hdr[:vnetHdrLen]
	h[0], h[1] = vnetFlagNeedsCsum, vnetGSOTCPv4
	binary.LittleEndian.PutUint16(h[2:4], uint16(hlen))
	binary.LittleEndian.PutUint16(h[4:6], uint16(first.payload))
	binary.LittleEndian.PutUint16(h[6:8], uint16(ethHdrLen+first.ihl))
	binary.LittleEndian.PutUint16(h[8:10], 16)
	return n
}
