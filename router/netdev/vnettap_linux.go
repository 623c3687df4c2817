package netdev

import (
	"errors"
	"fmt"
	"os"
	"sync/atomic"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// VNetTAP is the router's port on the bridge opened with IFF_VNET_HDR and
// segmentation offload (TUN_F_CSUM, TUN_F_TSO4, TUN_F_TSO6): the kernel passes a
// container's TCP stream in super-frames of up to 64 KiB, which Read cuts
// into MSS-sized frames (and completes partial checksums), so that one
// read syscall moves up to a few dozen frames. Writes carry an empty
// virtio header (frames arrive complete from the overlay).
//
// Read and Write may run concurrently; each by one goroutine at a time.
type VNetTAP struct {
	f    *os.File // non-blocking, on Go's poller
	name string
	mtu  int

	rbuf []byte // read buffer: header and one (super-)frame
	seg  segmenter
	wbuf []byte // write buffer: header and one frame

	// A super-frame is written with writev: its headers from whdr, each
	// TCP payload from the caller's frame, without copying them. rc's
	// Write calls writev (made once, so writes allocate nothing) with iov,
	// leaving the result in wn, werr.
	rc     syscall.RawConn
	whdr   []byte
	iov    []unix.Iovec
	writev func(fd uintptr) bool
	wn     int
	werr   error

	dropped atomic.Uint64
}

// Dropped counts frames read from the kernel that Read had to drop.
func (t *VNetTAP) Dropped() uint64 { return t.dropped.Load() }

var _ Device = (*VNetTAP)(nil)

const vnetBatch = 64

// openVNetTAP creates (or adopts) TAP name with IFF_VNET_HDR and offloads.
func openVNetTAP(name string) (*VNetTAP, error) {
	fd, err := unix.Open("/dev/net/tun", unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("open /dev/net/tun: %w", err)
	}
	ok := false
	defer func() {
		if !ok {
			unix.Close(fd)
		}
	}()
	ifr, err := unix.NewIfreq(name)
	if err != nil {
		return nil, err
	}
	ifr.SetUint16(unix.IFF_TAP | unix.IFF_NO_PI | unix.IFF_VNET_HDR)
	if err := unix.IoctlIfreq(fd, unix.TUNSETIFF, ifr); err != nil {
		return nil, fmt.Errorf("TUNSETIFF: %w", err)
	}
	if err := unix.IoctlSetPointerInt(fd, unix.TUNSETVNETHDRSZ, vnetHdrLen); err != nil {
		return nil, fmt.Errorf("TUNSETVNETHDRSZ: %w", err)
	}
	if err := unix.IoctlSetInt(fd, unix.TUNSETOFFLOAD, unix.TUN_F_CSUM|unix.TUN_F_TSO4|unix.TUN_F_TSO6); err != nil {
		return nil, fmt.Errorf("TUNSETOFFLOAD: %w", err)
	}
	_ = unix.IoctlSetInt(fd, unix.TUNSETPERSIST, 0) // vanish when closed, also if adopted
	if err := unix.SetNonblock(fd, true); err != nil {
		return nil, fmt.Errorf("set nonblock: %w", err)
	}
	f := os.NewFile(uintptr(fd), "/dev/net/tun")
	rc, err := f.SyscallConn()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("tap %s: %w", name, err)
	}
	ok = true
	t := &VNetTAP{
		f:    f,
		name: name,
		rbuf: make([]byte, vnetHdrLen+1<<16),
		wbuf: make([]byte, vnetHdrLen+ethHdrLen+0xffff),
		rc:   rc,
		whdr: make([]byte, vnetHdrLen+maxHeaders),
	}
	t.writev = t.writevFD
	return t, nil
}

// maxHeaders bounds the Ethernet, IPv4 and TCP headers of a frame
// (14 + 60 + 60).
const maxHeaders = ethHdrLen + 60 + 60

// writeSuper writes the super-frame joining frames (as coalesce chose
// them) with one writev: the headers from t.whdr, then each frame's TCP
// payload where it lies.
func (t *VNetTAP) writeSuper(frames [][]byte, offset int, first tcpInfo) error {
	payload := 0
	for _, b := range frames {
		payload += len(b) - offset - first.hlen
	}
	h := t.whdr[:superHeader(t.whdr, frames, offset, first, payload)]
	t.iov = append(t.iov[:0], iovec(h))
	for _, b := range frames {
		if p := b[offset+first.hlen:]; len(p) > 0 {
			t.iov = append(t.iov, iovec(p))
		}
	}
	err := t.rc.Write(t.writev)
	clear(t.iov) // keep no pointers into the caller's buffers
	if err == nil {
		err = t.werr
	}
	if err == nil && t.wn != len(h)+payload {
		err = fmt.Errorf("short write: %d of %d bytes", t.wn, len(h)+payload)
	}
	return err
}

// writevFD is the writev that writeSuper has rc run; it returns false to
// wait for the fd to be writable (EAGAIN).
func (t *VNetTAP) writevFD(fd uintptr) bool {
	n, _, errno := unix.Syscall(unix.SYS_WRITEV, fd, uintptr(unsafe.Pointer(&t.iov[0])), uintptr(len(t.iov)))
	if errno == unix.EAGAIN {
		return false
	}
	t.wn, t.werr = int(n), nil
	if errno != 0 {
		t.wn, t.werr = 0, errno
	}
	return true
}

func iovec(b []byte) unix.Iovec {
	v := unix.Iovec{Base: &b[0]}
	v.SetLen(len(b))
	return v
}

// Read returns up to len(bufs) frames: the rest of the last super-frame
// read, else those of one new read (blocking until one arrives). A frame
// the kernel passed with offload metadata we cannot follow, or one larger
// than the caller's buffers, is dropped and counted (Dropped), and the
// read goes on.
func (t *VNetTAP) Read(bufs [][]byte, sizes []int, offset int) (int, error) {
	n := 0
	for n < len(bufs) {
		m, err := t.seg.next(bufs[n][offset:])
		if err != nil { // larger than the caller's buffers: drop the rest
			t.seg = segmenter{}
			t.dropped.Add(1)
			continue
		}
		if m > 0 {
			sizes[n] = m
			n++
			continue
		}
		if n > 0 {
			return n, nil
		}
		r, err := t.f.Read(t.rbuf)
		if err != nil {
			return 0, fmt.Errorf("read tap %s: %w", t.name, err)
		}
		if r < vnetHdrLen+ethHdrLen {
			continue
		}
		if err := t.seg.reset(parseVnetHdr(t.rbuf), t.rbuf[vnetHdrLen:r]); err != nil {
			t.seg = segmenter{}
			t.dropped.Add(1)
			continue
		}
	}
	return n, nil
}

// Write writes each bufs[i][offset:] as one frame, joining consecutive
// segments of one TCP flow into one super-frame (one writev, the payloads
// not copied) where it can. A frame written alone with offset >= 10 gets
// its virtio header in bufs[i][offset-10:offset] and is written from
// there, without a copy.
func (t *VNetTAP) Write(bufs [][]byte, offset int) (int, error) {
	for i := 0; i < len(bufs); {
		if n, first := coalesce(bufs[i:], offset); n > 1 {
			if err := t.writeSuper(bufs[i:i+n], offset, first); err != nil {
				return i, fmt.Errorf("write tap %s: %w", t.name, err)
			}
			i += n
			continue
		}
		var pkt []byte
		if offset >= vnetHdrLen {
			// the header goes in the caller's headroom: no copy
			pkt = bufs[i][offset-vnetHdrLen:]
		} else {
			f := bufs[i][offset:]
			if len(f) > len(t.wbuf)-vnetHdrLen {
				return i, fmt.Errorf("write tap %s: frame of %d bytes", t.name, len(f))
			}
			pkt = t.wbuf[:vnetHdrLen+copy(t.wbuf[vnetHdrLen:], f)]
		}
		clear(pkt[:vnetHdrLen])
		if _, err := t.f.Write(pkt); err != nil {
			return i, fmt.Errorf("write tap %s: %w", t.name, err)
		}
		i++
	}
	return len(bufs), nil
}

// BatchSize is how many frames one Read may return.
func (t *VNetTAP) BatchSize() int { return vnetBatch }

// Name is the TAP's interface name.
func (t *VNetTAP) Name() string { return t.name }

// MTU is the MTU the TAP was opened with.
func (t *VNetTAP) MTU() int { return t.mtu }

// Close closes the TAP (the link vanishes) and unblocks a pending Read.
func (t *VNetTAP) Close() error {
	if err := t.f.Close(); err != nil && !errors.Is(err, os.ErrClosed) {
		return fmt.Errorf("close tap %s: %w", t.name, err)
	}
	return nil
}
