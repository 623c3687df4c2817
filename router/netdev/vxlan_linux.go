package netdev

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"syscall"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// VXLANVNI is the fixed VXLAN network identifier of the fast path: one
// weave network per host, so one VNI is enough.
const VXLANVNI = 6783

// FastPathEtherType is the ethertype of fast-path heartbeat frames (IEEE
// 802 local experimental 1). They go to a link-local group address
// (FastPathHeartbeatDst) that a bridge never forwards, so they reach the
// AF_PACKET socket on the VXLAN port and nothing else.
const FastPathEtherType = 0x88B5

// FastPathHeartbeatDst is the inner destination of heartbeat frames.
var FastPathHeartbeatDst = [6]byte{0x01, 0x80, 0xc2, 0x00, 0x00, 0x0e}

const vxlanHeaderLen = 8

// VXLAN is the kernel fast path: a VXLAN device enslaved to the weave
// bridge, with flooding off on its bridge port (broadcast and unknown
// unicast stay on the router's TAP), forwarding entries that the overlay
// programs one MAC at a time, and the sockets for fast-path heartbeats (a
// UDP socket that sends hand-made VXLAN datagrams, an AF_PACKET socket that
// receives the decapsulated heartbeat frames on the device).
//
// SetEntry, DelEntry and EntryAges are called from one goroutine (the
// overlay's maintenance loop), SendBeat from the same, RecvBeat from one
// other; Close unblocks RecvBeat.
type VXLAN struct {
	Name   string
	index  int
	bridge int
	port   int
	udp    *net.UDPConn
	pkt    *os.File
}

// VXLANMaxMTU is the largest MTU of a VXLAN device over IPv4: the largest
// IP packet less the 50 bytes of outer headers.
const VXLANMaxMTU = 65535 - 50

// EnsureVXLAN (re)creates the VXLAN device name on bridge with UDP port
// port, VNI VXLANVNI and the given MTU, with kernel learning off, makes it
// a bridge port that receives no flooded frames and learns nothing, sets it
// up and opens the heartbeat sockets. A device left by an earlier router is
// deleted first, so that no stale forwarding entry survives a restart.
func EnsureVXLAN(name, bridge string, port, mtu int) (*VXLAN, error) {
	if err := checkIfName(name); err != nil {
		return nil, fmt.Errorf("vxlan: %w", err)
	}
	br, err := netlink.LinkByName(bridge)
	if err != nil {
		return nil, fmt.Errorf("vxlan %s: bridge %s: %w", name, bridge, err)
	}
	if err := DeleteLink(name); err != nil {
		return nil, fmt.Errorf("vxlan %s: remove old device: %w", name, err)
	}
	vx := &netlink.Vxlan{
		LinkAttrs: netlink.LinkAttrs{Name: name, MTU: mtu},
		VxlanId:   VXLANVNI,
		Port:      port,
		Learning:  false,
	}
	if err := netlink.LinkAdd(vx); err != nil {
		return nil, fmt.Errorf("create vxlan %s (port %d): %w", name, port, err)
	}
	v := &VXLAN{Name: name, bridge: br.Attrs().Index, port: port}
	fail := func(err error) (*VXLAN, error) {
		v.Close()
		DeleteLink(name)
		return nil, err
	}
	link, err := netlink.LinkByName(name)
	if err != nil {
		return fail(fmt.Errorf("vxlan %s: %w", name, err))
	}
	v.index = link.Attrs().Index
	if err := netlink.LinkSetMaster(link, br); err != nil {
		return fail(fmt.Errorf("vxlan %s: enslave to %s: %w", name, bridge, err))
	}
	if err := setPortNoFlood(link); err != nil {
		return fail(fmt.Errorf("vxlan %s: %w", name, err))
	}
	if err := netlink.LinkSetUp(link); err != nil {
		return fail(fmt.Errorf("vxlan %s: set up: %w", name, err))
	}
	if v.udp, err = net.ListenUDP("udp4", &net.UDPAddr{}); err != nil {
		return fail(fmt.Errorf("vxlan %s: heartbeat socket: %w", name, err))
	}
	if v.pkt, err = openPacketSocket(v.index, FastPathEtherType); err != nil {
		return fail(fmt.Errorf("vxlan %s: heartbeat receive socket: %w", name, err))
	}
	return v, nil
}

// setPortNoFlood turns off flooding of unknown unicast, multicast and
// broadcast into the port, and learning on it: every entry that points to
// the port is one the overlay programmed (and removes).
func setPortNoFlood(link netlink.Link) error {
	if err := netlink.LinkSetFlood(link, false); err != nil {
		return fmt.Errorf("bridge port flood off: %w", err)
	}
	if err := netlink.LinkSetLearning(link, false); err != nil {
		return fmt.Errorf("bridge port learning off: %w", err)
	}
	// netlink has no helpers for these two; set them as IFLA_PROTINFO.
	return setBrportFlags(link, map[uint16]bool{
		iflaBrportMcastFlood: false,
		iflaBrportBcastFlood: false,
	})
}

const (
	iflaBrportMcastFlood = 27 // IFLA_BRPORT_MCAST_FLOOD
	iflaBrportBcastFlood = 30 // IFLA_BRPORT_BCAST_FLOOD
)

// setBrportFlags sets boolean bridge port attributes with RTM_SETLINK,
// family AF_BRIDGE, IFLA_PROTINFO (nested).
func setBrportFlags(link netlink.Link, flags map[uint16]bool) error {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_ROUTE)
	if err != nil {
		return fmt.Errorf("netlink socket: %w", err)
	}
	defer unix.Close(fd)
	if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return fmt.Errorf("netlink bind: %w", err)
	}
	var nested []byte
	for typ, on := range flags {
		a := make([]byte, 8)
		binary.NativeEndian.PutUint16(a[0:2], 5)
		binary.NativeEndian.PutUint16(a[2:4], typ)
		if on {
			a[4] = 1
		}
		nested = append(nested, a...)
	}
	protinfo := make([]byte, 4, 4+len(nested))
	binary.NativeEndian.PutUint16(protinfo[0:2], uint16(4+len(nested)))
	binary.NativeEndian.PutUint16(protinfo[2:4], unix.IFLA_PROTINFO|unix.NLA_F_NESTED)
	protinfo = append(protinfo, nested...)
	msg := make([]byte, unix.NLMSG_HDRLEN+unix.SizeofIfInfomsg)
	msg = append(msg, protinfo...)
	binary.NativeEndian.PutUint32(msg[0:4], uint32(len(msg)))
	binary.NativeEndian.PutUint16(msg[4:6], unix.RTM_SETLINK)
	binary.NativeEndian.PutUint16(msg[6:8], unix.NLM_F_REQUEST|unix.NLM_F_ACK)
	binary.NativeEndian.PutUint32(msg[8:12], 1)
	ifi := msg[unix.NLMSG_HDRLEN:]
	ifi[0] = unix.AF_BRIDGE
	binary.NativeEndian.PutUint32(ifi[4:8], uint32(link.Attrs().Index))
	if err := unix.Sendto(fd, msg, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return fmt.Errorf("netlink send: %w", err)
	}
	buf := make([]byte, 4096)
	n, _, err := unix.Recvfrom(fd, buf, 0)
	if err != nil {
		return fmt.Errorf("netlink receive: %w", err)
	}
	msgs, err := syscall.ParseNetlinkMessage(buf[:n])
	if err != nil {
		return fmt.Errorf("netlink parse: %w", err)
	}
	for _, m := range msgs {
		if m.Header.Type == unix.NLMSG_ERROR && len(m.Data) >= 4 {
			if e := int32(binary.NativeEndian.Uint32(m.Data[0:4])); e != 0 {
				return fmt.Errorf("set bridge port flags: %w", unix.Errno(-e))
			}
		}
	}
	return nil
}

func openPacketSocket(ifindex int, proto uint16) (*os.File, error) {
	p := htons(proto)
	fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK, int(p))
	if err != nil {
		return nil, err
	}
	if err := unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: p, Ifindex: ifindex}); err != nil {
		unix.Close(fd)
		return nil, err
	}
	// A non-blocking descriptor goes to Go's poller, so Close unblocks Read.
	return os.NewFile(uintptr(fd), "packet"), nil
}

// Port is the device's UDP port.
func (v *VXLAN) Port() int { return v.port }

// SetEntry points mac at dst: a bridge entry mac -> this port (master,
// static and sticky, so that a broadcast from mac arriving through the TAP
// does not move it) and a VXLAN entry mac -> dst (self). Replaces older
// entries for mac.
func (v *VXLAN) SetEntry(mac [6]byte, dst netip.Addr) error {
	hw := net.HardwareAddr(mac[:])
	self := &netlink.Neigh{LinkIndex: v.index, Family: unix.AF_BRIDGE, State: netlink.NUD_PERMANENT,
		Flags: netlink.NTF_SELF, IP: net.IP(dst.AsSlice()), HardwareAddr: hw}
	if err := netlink.NeighSet(self); err != nil {
		return fmt.Errorf("vxlan %s: fdb %s dst %s: %w", v.Name, hw, dst, err)
	}
	master := &netlink.Neigh{LinkIndex: v.index, Family: unix.AF_BRIDGE, State: netlink.NUD_NOARP,
		Flags: netlink.NTF_MASTER | netlink.NTF_STICKY, HardwareAddr: hw, MasterIndex: v.bridge}
	if err := netlink.NeighSet(master); err != nil {
		return fmt.Errorf("bridge fdb %s -> %s: %w", hw, v.Name, err)
	}
	return nil
}

// DelEntry removes both entries for mac (the VXLAN one pointing to dst);
// missing ones are not errors.
func (v *VXLAN) DelEntry(mac [6]byte, dst netip.Addr) error {
	hw := net.HardwareAddr(mac[:])
	var errs []error
	master := &netlink.Neigh{LinkIndex: v.index, Family: unix.AF_BRIDGE, Flags: netlink.NTF_MASTER, HardwareAddr: hw, MasterIndex: v.bridge}
	if err := netlink.NeighDel(master); err != nil && !errors.Is(err, unix.ENOENT) {
		errs = append(errs, fmt.Errorf("bridge fdb del %s: %w", hw, err))
	}
	self := &netlink.Neigh{LinkIndex: v.index, Family: unix.AF_BRIDGE, Flags: netlink.NTF_SELF, IP: net.IP(dst.AsSlice()), HardwareAddr: hw}
	if err := netlink.NeighDel(self); err != nil && !errors.Is(err, unix.ENOENT) {
		errs = append(errs, fmt.Errorf("vxlan %s: fdb del %s: %w", v.Name, hw, err))
	}
	return errors.Join(errs...)
}

// EntryAges returns, for each bridge entry on the port, how long ago the
// bridge last forwarded a frame with it (a local container sent to that
// MAC over the fast path).
func (v *VXLAN) EntryAges() (map[[6]byte]time.Duration, error) {
	ns, err := netlink.NeighListExecute(netlink.Ndmsg{Family: unix.AF_BRIDGE, Index: uint32(v.index)})
	if err != nil && !errors.Is(err, netlink.ErrDumpInterrupted) {
		return nil, fmt.Errorf("vxlan %s: list fdb: %w", v.Name, err)
	}
	out := make(map[[6]byte]time.Duration, len(ns))
	for _, n := range ns {
		// The bridge's entries carry NDA_MASTER (the VXLAN's own carry a
		// dst); the port's own address is a permanent local entry.
		if n.MasterIndex != v.bridge || n.State&netlink.NUD_PERMANENT != 0 || len(n.HardwareAddr) != 6 {
			continue
		}
		// ndm_used is in clock ticks (USER_HZ, 100 on Linux).
		out[[6]byte(n.HardwareAddr)] = time.Duration(n.Used) * 10 * time.Millisecond
	}
	return out, nil
}

// SendBeat sends frame (an inner Ethernet frame) wrapped in a VXLAN header
// with our VNI to dst's VXLAN port, from an ordinary UDP socket.
func (v *VXLAN) SendBeat(dst netip.AddrPort, frame []byte) error {
	b := make([]byte, vxlanHeaderLen+len(frame))
	b[0] = 0x08 // VNI present
	binary.BigEndian.PutUint32(b[4:8], VXLANVNI<<8)
	copy(b[vxlanHeaderLen:], frame)
	_, err := v.udp.WriteToUDPAddrPort(b, dst)
	return err
}

// RecvBeat reads the payload (after the Ethernet header) of the next
// heartbeat frame that arrived on the device. It blocks until one arrives
// or Close is called (then it returns an error wrapping os.ErrClosed).
func (v *VXLAN) RecvBeat(buf []byte) (int, error) {
	return v.pkt.Read(buf)
}

// Close closes the heartbeat sockets; the device and its entries stay
// (RemoveVXLAN or the next EnsureVXLAN removes them).
func (v *VXLAN) Close() error {
	var errs []error
	if v.udp != nil {
		errs = append(errs, v.udp.Close())
	}
	if v.pkt != nil {
		errs = append(errs, v.pkt.Close())
	}
	return errors.Join(errs...)
}
