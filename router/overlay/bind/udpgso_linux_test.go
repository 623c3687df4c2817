package bind

import (
	"encoding/binary"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"
)

// putCmsg appends a control message (level, typ, data) to b as the kernel
// lays it out.
func putCmsg(b []byte, level, typ int32, data []byte) []byte {
	start := len(b)
	b = append(b, make([]byte, unix.CmsgSpace(len(data)))...)
	h := (*unix.Cmsghdr)(unsafe.Pointer(&b[start]))
	h.Level, h.Type = level, typ
	h.SetLen(unix.CmsgLen(len(data)))
	copy(b[start+unix.CmsgLen(0):], data)
	return b
}

// FuzzGROSize feeds arbitrary control-message buffers to the UDP GRO
// parse: nothing panics and no size is negative; and a well-formed buffer
// (another control message first, with fuzzed contents, then UDP_GRO)
// yields exactly the size the kernel put there. The UDP_SEGMENT message
// the sender builds carries its size the same way.
func FuzzGROSize(f *testing.F) {
	var gro [4]byte
	binary.NativeEndian.PutUint32(gro[:], 1452)
	f.Add(putCmsg(nil, unix.IPPROTO_UDP, unix.UDP_GRO, gro[:]), []byte{}, uint16(1452))
	f.Add(putCmsg(nil, unix.SOL_SOCKET, unix.SO_TIMESTAMP, make([]byte, 16)), []byte{1, 2, 3}, uint16(9000))
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f}, []byte{}, uint16(0))
	f.Fuzz(func(t *testing.T, oob, other []byte, size uint16) {
		if n := groSize(oob); n < 0 {
			t.Fatalf("negative size %d", n)
		}
		if len(other) > 256 {
			other = other[:256]
		}
		binary.NativeEndian.PutUint32(gro[:], uint32(size))
		msg := putCmsg(putCmsg(nil, unix.SOL_SOCKET, unix.SO_TIMESTAMP, other), unix.IPPROTO_UDP, unix.UDP_GRO, gro[:])
		if got := groSize(msg); got != int(size) {
			t.Fatalf("size %d read back as %d", size, got)
		}
		seg := putUDPSegment(make([]byte, udpSegmentOOBLen), int(size))
		if h := (*unix.Cmsghdr)(unsafe.Pointer(&seg[0])); h.Level != unix.IPPROTO_UDP || h.Type != unix.UDP_SEGMENT ||
			int(h.Len) != unix.CmsgLen(2) || binary.NativeEndian.Uint16(seg[unix.CmsgLen(0):]) != size {
			t.Fatalf("UDP_SEGMENT message for %d: % x", size, seg)
		}
	})
}
