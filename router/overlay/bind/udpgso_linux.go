package bind

import (
	"encoding/binary"
	"errors"
	"net"
	"unsafe"

	"golang.org/x/sys/unix"
)

// UDP generic segmentation offload (UDP_SEGMENT, Linux 4.18): one message
// of several equal-sized datagrams (the last may be shorter) goes down the
// stack once and is cut into datagrams at the end, far cheaper than one
// pass per datagram.

const udpSegmentOOBLen = 24 // unix.CmsgSpace(2) on 64-bit Linux; checked below

// udpGSOSupported says whether the kernel knows UDP_SEGMENT on c.
func udpGSOSupported(c *net.UDPConn) bool {
	if unix.CmsgSpace(2) > udpSegmentOOBLen {
		return false
	}
	rc, err := c.SyscallConn()
	if err != nil {
		return false
	}
	ok := false
	rc.Control(func(fd uintptr) {
		_, err := unix.GetsockoptInt(int(fd), unix.IPPROTO_UDP, unix.UDP_SEGMENT)
		ok = err == nil
	})
	return ok
}

// gsoRefused says whether a send error of a segmented message is the
// kernel refusing segmentation itself (no checksum offload on the route:
// EIO; a size it rejects or a device that cannot: EINVAL; an old kernel
// not knowing the control message: ENOPROTOOPT, EOPNOTSUPP), rather than
// about the destination or the path.
func gsoRefused(err error) bool {
	for _, e := range []error{unix.EIO, unix.EINVAL, unix.ENOPROTOOPT, unix.EOPNOTSUPP} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

// putUDPSegment writes into b (udpSegmentOOBLen bytes) a control message
// asking the kernel to cut the message into datagrams of size bytes.
func putUDPSegment(b []byte, size int) []byte {
	h := (*unix.Cmsghdr)(unsafe.Pointer(&b[0]))
	h.Level = unix.IPPROTO_UDP
	h.Type = unix.UDP_SEGMENT
	h.SetLen(unix.CmsgLen(2))
	binary.NativeEndian.PutUint16(b[unix.CmsgLen(0):], uint16(size))
	return b[:unix.CmsgSpace(2)]
}

// enableUDPGRO asks the kernel to pass runs of datagrams from one sender
// as one buffer with a UDP_GRO control message giving the datagram size
// (see groSize); it reports whether the kernel agreed.
func enableUDPGRO(c *net.UDPConn) bool {
	rc, err := c.SyscallConn()
	if err != nil {
		return false
	}
	ok := false
	rc.Control(func(fd uintptr) {
		ok = unix.SetsockoptInt(int(fd), unix.IPPROTO_UDP, unix.UDP_GRO, 1) == nil
	})
	return ok
}

// groOOBLen is room for the control messages of one received message.
const groOOBLen = 64

// groSize returns the datagram size in a UDP_GRO control message among
// oob, 0 when there is none (the buffer holds one datagram).
func groSize(oob []byte) int {
	hl := unix.CmsgLen(0)
	for len(oob) >= hl {
		h := (*unix.Cmsghdr)(unsafe.Pointer(&oob[0]))
		l := int(h.Len)
		if l < hl || l > len(oob) {
			return 0
		}
		if h.Level == unix.IPPROTO_UDP && h.Type == unix.UDP_GRO && l >= hl+2 {
			if l >= hl+4 {
				return int(binary.NativeEndian.Uint32(oob[hl:]))
			}
			return int(binary.NativeEndian.Uint16(oob[hl:]))
		}
		oob = oob[min(len(oob), unix.CmsgSpace(l-hl)):]
	}
	return 0
}
