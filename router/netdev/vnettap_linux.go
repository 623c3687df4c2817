package netdev

import (
	"errors"
	"fmt"
	"os"
	"sync/atomic"

	"golang.org/x/sys/unix"
)

// VNetTAP is the router's port on the bridge opened with IFF_VNET_HDR and
// segmentation offload (TUN_F_CSUM, TUN_F_TSO4): the kernel passes a
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
	if err := unix.IoctlSetInt(fd, unix.TUNSETOFFLOAD, unix.TUN_F_CSUM|unix.TUN_F_TSO4); err != nil {
		return nil, fmt.Errorf("TUNSETOFFLOAD: %w", err)
	}
	_ = unix.IoctlSetInt(fd, unix.TUNSETPERSIST, 0) // vanish when closed, also if adopted
	if err := unix.SetNonblock(fd, true); err != nil {
		return nil, fmt.Errorf("set nonblock: %w", err)
	}
	ok = true
	return &VNetTAP{
		f:    os.NewFile(uintptr(fd), "/dev/net/tun"),
		name: name,
		rbuf: make([]byte, vnetHdrLen+1<<16),
		wbuf: make([]byte, vnetHdrLen+ethHdrLen+0xffff),
	}, nil
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
// segments of one TCP flow into one super-frame (one write) where it can. A
// frame written alone with offset >= 10 gets its virtio header in
// bufs[i][offset-10:offset] and is written from there, without a copy.
func (t *VNetTAP) Write(bufs [][]byte, offset int) (int, error) {
	for i := 0; i < len(bufs); {
		n, first := coalesce(bufs[i:], offset)
		var m int
		if n > 1 {
			m = buildSuper(t.wbuf, bufs[i:i+n], offset, first)
		} else if offset >= vnetHdrLen {
			// the header goes in the caller's headroom: no copy
			pkt := bufs[i][offset-vnetHdrLen:]
			clear(pkt[:vnetHdrLen])
			if _, err := t.f.Write(pkt); err != nil {
				return i, fmt.Errorf("write tap %s: %w", t.name, err)
			}
			i++
			continue
		} else {
			f := bufs[i][offset:]
			if len(f) > len(t.wbuf)-vnetHdrLen {
				return i, fmt.Errorf("write tap %s: frame of %d bytes", t.name, len(f))
			}
			clear(t.wbuf[:vnetHdrLen])
			m = vnetHdrLen + copy(t.wbuf[vnetHdrLen:], f)
		}
		if _, err := t.f.Write(t.wbuf[:m]); err != nil {
			return i, fmt.Errorf("write tap %s: %w", t.name, err)
		}
		i += n
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
