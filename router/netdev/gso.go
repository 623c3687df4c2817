package netdev

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math/bits"
)

// Segmentation offload for a TAP opened with IFF_VNET_HDR: every frame
// read is preceded by a virtio_net_hdr. With TUN_F_CSUM the kernel may hand
// us frames whose transport checksum is only partial, and with TUN_F_TSO4
// and TUN_F_TSO6 IPv4 and IPv6 TCP "super-frames" of up to 64 KiB that we
// cut into MSS-sized frames (as a NIC would), so one read moves what took
// dozens.

const (
	vnetHdrLen         = 10
	vnetFlagNeedsCsum  = 1
	vnetGSONone        = 0
	vnetGSOTCPv4       = 1
	vnetGSOTCPv6       = 4
	vnetGSOECN         = 0x80
	ethHdrLen          = 14
	etherTypeIPv4      = 0x0800
	etherTypeIPv6      = 0x86dd
	ipv6HdrLen         = 40
	tcpFlagFIN         = 0x01
	tcpFlagPSH         = 0x08
	tcpFlagCWR         = 0x80
	tcpFlagACK         = 0x10
	ipProtoTCP         = 6
	maxSegmentsPerRead = 1 << 16 / 64 // gso_size is at least 64 in practice
)

var errGSO = errors.New("malformed offload frame")

// vnetHdr is struct virtio_net_hdr (little endian on x86 and arm64 hosts;
// the TAP uses the host's byte order unless TUNSETVNETBE/LE says other).
type vnetHdr struct {
	flags      uint8
	gsoType    uint8
	hdrLen     uint16
	gsoSize    uint16
	csumStart  uint16
	csumOffset uint16
}

func parseVnetHdr(b []byte) vnetHdr {
	return vnetHdr{
		flags: b[0], gsoType: b[1],
		hdrLen:     binary.LittleEndian.Uint16(b[2:4]),
		gsoSize:    binary.LittleEndian.Uint16(b[4:6]),
		csumStart:  binary.LittleEndian.Uint16(b[6:8]),
		csumOffset: binary.LittleEndian.Uint16(b[8:10]),
	}
}

// segmenter cuts one frame read from the TAP into the frames to hand on:
// itself (checksum completed if partial), or its TCP segments. Not safe
// for concurrent use.
type segmenter struct {
	pkt     []byte // the frame, aliasing the read buffer
	hdr     vnetHdr
	l3, l4  int  // offsets of the IP and TCP headers
	v6      bool // IPv6 (a fixed 40-byte header, no extension headers)
	hlen    int  // bytes of headers (Ethernet, IP, TCP) copied into each segment
	off     int  // payload offset of the next segment
	seg     int  // index of the next segment
	more    bool // frames left (the zero segmenter has none)
	ipID    uint16
	seq     uint32
	payload int
}

// reset starts on a frame; it returns an error (the frame is dropped) when
// the offload metadata does not match the frame.
func (s *segmenter) reset(hdr vnetHdr, pkt []byte) error {
	*s = segmenter{pkt: pkt, hdr: hdr, more: true}
	switch hdr.gsoType &^ vnetGSOECN {
	case vnetGSONone:
		if hdr.flags&vnetFlagNeedsCsum != 0 {
			cs, co := int(hdr.csumStart), int(hdr.csumOffset)
			if cs+co+2 > len(pkt) {
				return fmt.Errorf("%w: checksum at %d+%d in %d bytes", errGSO, cs, co, len(pkt))
			}
			binary.BigEndian.PutUint16(pkt[cs+co:], ^fold(sum(0, pkt[cs:])))
		}
		s.seg = -1 // the frame itself, once
		return nil
	case vnetGSOTCPv4:
		if err := s.resetIPv4(pkt); err != nil {
			return err
		}
	case vnetGSOTCPv6:
		if err := s.resetIPv6(pkt); err != nil {
			return err
		}
	default:
		return fmt.Errorf("%w: gso type %d", errGSO, hdr.gsoType)
	}
	doff := int(pkt[s.l4+12]>>4) * 4
	s.hlen = s.l4 + doff
	if doff < 20 || s.hlen > len(pkt) || hdr.gsoSize == 0 {
		return fmt.Errorf("%w: bad TCP header or gso size %d", errGSO, hdr.gsoSize)
	}
	s.payload = len(pkt) - s.hlen
	if (s.payload+int(hdr.gsoSize)-1)/int(hdr.gsoSize) > maxSegmentsPerRead {
		return fmt.Errorf("%w: gso size %d for %d bytes", errGSO, hdr.gsoSize, s.payload)
	}
	s.seq = binary.BigEndian.Uint32(pkt[s.l4+4:])
	return nil
}

// resetIPv4 finds the headers of an IPv4 TCP super-frame.
func (s *segmenter) resetIPv4(pkt []byte) error {
	if len(pkt) < ethHdrLen+20 || binary.BigEndian.Uint16(pkt[12:14]) != etherTypeIPv4 {
		return fmt.Errorf("%w: tcp4 gso frame without IPv4", errGSO)
	}
	s.l3 = ethHdrLen
	ip := pkt[s.l3:]
	ihl := int(ip[0]&0x0f) * 4
	if ip[0]>>4 != 4 || ihl < 20 || ip[9] != ipProtoTCP || len(ip) < ihl+20 {
		return fmt.Errorf("%w: bad IPv4 header", errGSO)
	}
	s.l4 = s.l3 + ihl
	s.ipID = binary.BigEndian.Uint16(ip[4:6])
	return nil
}

// resetIPv6 finds the headers of an IPv6 TCP super-frame. One whose TCP
// header follows extension headers is refused (a container's TCP stack
// sends none).
func (s *segmenter) resetIPv6(pkt []byte) error {
	if len(pkt) < ethHdrLen+ipv6HdrLen+20 || binary.BigEndian.Uint16(pkt[12:14]) != etherTypeIPv6 {
		return fmt.Errorf("%w: tcp6 gso frame without IPv6", errGSO)
	}
	s.l3 = ethHdrLen
	ip := pkt[s.l3:]
	if ip[0]>>4 != 6 || ip[6] != ipProtoTCP {
		return fmt.Errorf("%w: IPv6 header without TCP next", errGSO)
	}
	s.l4, s.v6 = s.l3+ipv6HdrLen, true
	return nil
}

// next writes the next frame into dst and returns its length; 0 when the
// frame is used up. A dst too small for the frame is an error.
func (s *segmenter) next(dst []byte) (int, error) {
	if !s.more {
		return 0, nil
	}
	if s.seg < 0 {
		s.more = false
		if len(s.pkt) > len(dst) {
			return 0, fmt.Errorf("frame of %d bytes exceeds buffer of %d", len(s.pkt), len(dst))
		}
		return copy(dst, s.pkt), nil
	}
	chunk := min(int(s.hdr.gsoSize), s.payload-s.off)
	last := s.off+chunk >= s.payload
	n := s.hlen + chunk
	if n > len(dst) {
		s.more = false
		return 0, fmt.Errorf("segment of %d bytes exceeds buffer of %d", n, len(dst))
	}
	copy(dst, s.pkt[:s.hlen])
	copy(dst[s.hlen:], s.pkt[s.hlen+s.off:s.hlen+s.off+chunk])
	ip := dst[s.l3:s.l4]
	var c uint64 // pseudo-header: addresses, protocol, TCP length
	if s.v6 {
		binary.BigEndian.PutUint16(ip[4:6], uint16(n-s.l4))
		c = sum(0, ip[8:40])
	} else {
		binary.BigEndian.PutUint16(ip[2:4], uint16(n-s.l3))
		binary.BigEndian.PutUint16(ip[4:6], s.ipID+uint16(s.seg))
		ip[10], ip[11] = 0, 0
		binary.BigEndian.PutUint16(ip[10:12], ^fold(sum(0, ip)))
		c = sum(0, ip[12:20])
	}
	tcp := dst[s.l4:n]
	binary.BigEndian.PutUint32(tcp[4:8], s.seq+uint32(s.off))
	if !last {
		tcp[13] &^= tcpFlagFIN | tcpFlagPSH
	}
	if s.seg > 0 {
		tcp[13] &^= tcpFlagCWR
	}
	tcp[16], tcp[17] = 0, 0
	c += uint64(ipProtoTCP) + uint64(len(tcp))
	binary.BigEndian.PutUint16(tcp[16:18], ^fold(sum(c, tcp)))
	s.off += chunk
	s.seg++
	s.more = !last
	return n, nil
}

// sum adds b to the one's complement sum acc as big-endian 16-bit words
// (a trailing odd byte is padded with zero), 8 bytes at a time.
func sum(acc uint64, b []byte) uint64 {
	var carry uint64
	for len(b) >= 32 {
		acc, carry = bits.Add64(acc, binary.BigEndian.Uint64(b[0:8]), carry)
		acc, carry = bits.Add64(acc, binary.BigEndian.Uint64(b[8:16]), carry)
		acc, carry = bits.Add64(acc, binary.BigEndian.Uint64(b[16:24]), carry)
		acc, carry = bits.Add64(acc, binary.BigEndian.Uint64(b[24:32]), carry)
		b = b[32:]
	}
	for len(b) >= 8 {
		acc, carry = bits.Add64(acc, binary.BigEndian.Uint64(b[0:8]), carry)
		b = b[8:]
	}
	acc, carry = bits.Add64(acc, carry, 0)
	acc += carry
	var tail uint64
	for i := 0; i < len(b); i++ {
		tail |= uint64(b[i]) << (56 - 8*uint(i))
	}
	acc, carry = bits.Add64(acc, tail, 0)
	return acc + carry
}

// fold folds a 64-bit one's complement sum to 16 bits.
func fold(s uint64) uint16 {
	s = s>>32 + s&0xffffffff
	s = s>>32 + s&0xffffffff
	s = s>>16 + s&0xffff
	s = s>>16 + s&0xffff
	return uint16(s)
}
