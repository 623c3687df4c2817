package netdev

import (
	"errors"
	"fmt"
	"os"

	"github.com/songgao/water"
	"github.com/vishvananda/netlink"
)

// TAP is the router's port on the bridge: a TAP device opened through
// songgao/water, one frame per read or write (batch size 1). OpenTAP uses
// it only where the kernel refuses a VNetTAP (segmentation offload), which
// shares attachTAP for the link set-up.
type TAP struct {
	ifce *water.Interface
	name string
	mtu  int
}

var _ Device = (*TAP)(nil)

// OpenTAP opens the TAP device name (creating it, or adopting one with that
// name that is not in use, e.g. left over by a killed router), makes it
// non-persistent (it vanishes when closed), sets its MTU, enslaves it to
// bridge and sets it up. It opens a VNetTAP (segmentation offload, batches
// of frames per read) where the kernel allows, else a plain TAP.
func OpenTAP(name, bridge string, mtu int) (Device, error) {
	if err := checkIfName(name); err != nil {
		return nil, fmt.Errorf("tap: %w", err)
	}
	if link, err := netlink.LinkByName(name); err == nil && link.Type() != "tuntap" {
		return nil, fmt.Errorf("tap %s: a link of type %s already has that name", name, link.Type())
	}
	// Prefer segmentation offload (many frames per read); fall back to a
	// plain TAP where the kernel refuses it.
	if vt, err := openVNetTAP(name); err == nil {
		if err := attachTAP(name, bridge, mtu); err != nil {
			vt.Close()
			return nil, err
		}
		vt.mtu = mtu
		return vt, nil
	}
	ifce, err := water.New(water.Config{
		DeviceType:             water.TAP,
		PlatformSpecificParams: water.PlatformSpecificParams{Name: name, Persist: false},
	})
	if err != nil {
		return nil, fmt.Errorf("open tap %s: %w", name, err)
	}
	if err := attachTAP(name, bridge, mtu); err != nil {
		ifce.Close()
		return nil, err
	}
	return &TAP{ifce: ifce, name: name, mtu: mtu}, nil
}

// tapTxQueueLen is the TAP's transmit queue in frames: what the kernel
// holds for the router to read (the tun default is 500).
const tapTxQueueLen = 4096

// attachTAP sets the TAP link's MTU, enslaves it to bridge and sets it up.
func attachTAP(name, bridge string, mtu int) error {
	link, err := netlink.LinkByName(name)
	if err != nil {
		return fmt.Errorf("tap %s: %w", name, err)
	}
	br, err := netlink.LinkByName(bridge)
	if err != nil {
		return fmt.Errorf("tap %s: bridge %s: %w", name, bridge, err)
	}
	if mtu > 0 {
		if err := netlink.LinkSetMTU(link, mtu); err != nil {
			return fmt.Errorf("tap %s: set mtu %d: %w", name, mtu, err)
		}
	}
	if err := netlink.LinkSetTxQLen(link, tapTxQueueLen); err != nil {
		return fmt.Errorf("tap %s: set txqueuelen %d: %w", name, tapTxQueueLen, err)
	}
	if err := netlink.LinkSetMasterByIndex(link, br.Attrs().Index); err != nil {
		return fmt.Errorf("tap %s: add to bridge %s: %w", name, bridge, err)
	}
	if err := netlink.LinkSetUp(link); err != nil {
		return fmt.Errorf("tap %s: set up: %w", name, err)
	}
	return nil
}

// Read reads one frame into bufs[0][offset:]. After Close it returns an
// error wrapping os.ErrClosed.
func (t *TAP) Read(bufs [][]byte, sizes []int, offset int) (int, error) {
	if len(bufs) == 0 {
		return 0, nil
	}
	n, err := t.ifce.Read(bufs[0][offset:])
	if err != nil {
		return 0, fmt.Errorf("read tap %s: %w", t.name, err)
	}
	sizes[0] = n
	return 1, nil
}

// Write writes each bufs[i][offset:] as one frame.
func (t *TAP) Write(bufs [][]byte, offset int) (int, error) {
	for i, b := range bufs {
		if _, err := t.ifce.Write(b[offset:]); err != nil {
			return i, fmt.Errorf("write tap %s: %w", t.name, err)
		}
	}
	return len(bufs), nil
}

// BatchSize is 1: without IFF_VNET_HDR a TAP moves one frame per syscall.
func (t *TAP) BatchSize() int { return 1 }

// Name is the TAP's interface name.
func (t *TAP) Name() string { return t.name }

// MTU is the MTU the TAP was opened with.
func (t *TAP) MTU() int { return t.mtu }

// Close closes the TAP, which removes the (non-persistent) link from the
// kernel, and unblocks a pending Read.
func (t *TAP) Close() error {
	if err := t.ifce.Close(); err != nil && !isClosedErr(err) {
		return fmt.Errorf("close tap %s: %w", t.name, err)
	}
	return nil
}

func isClosedErr(err error) bool { return errors.Is(err, os.ErrClosed) }
