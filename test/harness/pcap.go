package harness

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
)

// Packet is one captured frame.
type Packet struct {
	Data []byte // link-layer frame as captured (Ethernet)
}

// UDP is a captured IPv4 UDP datagram.
type UDP struct {
	IP      []byte // the whole IPv4 packet (header included)
	Src     [4]byte
	Dst     [4]byte
	SrcPort uint16
	DstPort uint16
	Payload []byte
}

// ReadPcap reads a classic pcap file (as tcpdump -w writes it) with
// Ethernet link type.
func ReadPcap(path string) ([]Packet, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	if len(b) < 24 {
		return nil, errors.New("pcap: short file")
	}
	var bo binary.ByteOrder
	switch binary.LittleEndian.Uint32(b) {
	case 0xa1b2c3d4, 0xa1b23c4d:
		bo = binary.LittleEndian
	case 0xd4c3b2a1, 0x4d3cb2a1:
		bo = binary.BigEndian
	default:
		return nil, fmt.Errorf("pcap: bad magic %x", b[:4])
	}
	if lt := bo.Uint32(b[20:]); lt != 1 {
		return nil, fmt.Errorf("pcap: link type %d, want 1 (Ethernet)", lt)
	}
	var pkts []Packet
	for off := 24; off+16 <= len(b); {
		incl := int(bo.Uint32(b[off+8:]))
		off += 16
		if incl < 0 || off+incl > len(b) {
			break // truncated last record: tcpdump was stopped mid-write
		}
		pkts = append(pkts, Packet{Data: b[off : off+incl]})
		off += incl
	}
	return pkts, nil
}

// UDP decodes an untagged Ethernet frame carrying IPv4 UDP; ok is false
// for anything else (or a truncated capture).
func (p Packet) UDP() (u UDP, ok bool) {
	d := p.Data
	if len(d) < 14+20 || binary.BigEndian.Uint16(d[12:]) != 0x0800 {
		return u, false
	}
	ip := d[14:]
	ihl := int(ip[0]&0x0f) * 4
	total := int(binary.BigEndian.Uint16(ip[2:]))
	if ip[0]>>4 != 4 || ip[9] != 17 || ihl < 20 || total > len(ip) || total < ihl+8 {
		return u, false
	}
	if binary.BigEndian.Uint16(ip[6:])&0x3fff != 0 {
		return u, false // a fragment
	}
	ip = ip[:total]
	u.IP = ip
	copy(u.Src[:], ip[12:16])
	copy(u.Dst[:], ip[16:20])
	u.SrcPort = binary.BigEndian.Uint16(ip[ihl:])
	u.DstPort = binary.BigEndian.Uint16(ip[ihl+2:])
	u.Payload = ip[ihl+8:]
	return u, true
}
