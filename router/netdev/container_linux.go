package netdev

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"runtime"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// ErrNoNamespace means a container reference names no network namespace
// (no such file, no such process).
var ErrNoNamespace = errors.New("no such network namespace")

// nsGetNSType is the NS_GET_NSTYPE ioctl, _IO(0xb7, 0x3).
const nsGetNSType = 0xb703

// NSID returns the identity of the namespace the reference names now.
func (c ContainerRef) NSID() (NSID, error) {
	fd, id, err := openNetns(c)
	if err != nil {
		return NSID{}, err
	}
	unix.Close(fd)
	return id, nil
}

// openNetns opens and checks the namespace file of c.
func openNetns(c ContainerRef) (int, NSID, error) {
	fd, err := unix.Open(c.Path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ESRCH) {
		if c.Kind == KindPID {
			return -1, NSID{}, fmt.Errorf("no such process %d: %w", c.PID, ErrNoNamespace)
		}
		return -1, NSID{}, fmt.Errorf("%s: %w", c.Path, ErrNoNamespace)
	}
	if err != nil {
		return -1, NSID{}, fmt.Errorf("open %s: %w", c.Path, err)
	}
	var fs unix.Statfs_t
	if err := unix.Fstatfs(fd, &fs); err != nil {
		unix.Close(fd)
		return -1, NSID{}, fmt.Errorf("statfs %s: %w", c.Path, err)
	}
	if fs.Type != unix.NSFS_MAGIC {
		unix.Close(fd)
		return -1, NSID{}, fmt.Errorf("%s is not a namespace (stale mount?): %w", c.Path, ErrNoNamespace)
	}
	if typ, err := unix.IoctlRetInt(fd, nsGetNSType); err == nil && typ != unix.CLONE_NEWNET {
		unix.Close(fd)
		return -1, NSID{}, fmt.Errorf("%s is not a network namespace", c.Path)
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		unix.Close(fd)
		return -1, NSID{}, fmt.Errorf("stat %s: %w", c.Path, err)
	}
	return fd, NSID{Dev: st.Dev, Ino: st.Ino}, nil
}

// hostNSID is the identity of the namespace the calling thread is in (the
// daemon's threads all share one).
func hostNSID() (NSID, error) {
	var st unix.Stat_t
	if err := unix.Stat("/proc/thread-self/ns/net", &st); err != nil {
		return NSID{}, fmt.Errorf("stat own network namespace: %w", err)
	}
	return NSID{Dev: st.Dev, Ino: st.Ino}, nil
}

// Container is an open network namespace of a container, with a netlink
// handle inside it. It is not safe for concurrent use. Close it when done.
// Its errors do not name the container: callers add that context.
type Container struct {
	Ref ContainerRef
	ID  NSID
	ns  netns.NsHandle
	h   *netlink.Handle
}

// Iface describes a container's ethwe interface.
type Iface struct {
	Name  string
	MAC   net.HardwareAddr
	MTU   int
	Addrs []netip.Prefix // IPv4 only
}

// OpenContainer opens the namespace ref names. It refuses the router's own
// namespace: attaching "the host" is what expose is for.
func OpenContainer(ref ContainerRef) (*Container, error) {
	if ref.IfName != "" {
		if err := checkIfName(ref.IfName); err != nil {
			return nil, err
		}
	}
	fd, id, err := openNetns(ref)
	if err != nil {
		return nil, err
	}
	ns := netns.NsHandle(fd)
	if self, err := hostNSID(); err != nil {
		ns.Close()
		return nil, err
	} else if self == id {
		ns.Close()
		return nil, fmt.Errorf("%s is the host's own network namespace (use expose for host access)", ref.Path)
	}
	// Nor the machine's initial namespace, where a router in a test
	// namespace would otherwise put ethwe (a container run with
	// --net=host lives there).
	var init unix.Stat_t
	if err := unix.Stat("/proc/1/ns/net", &init); err == nil && (NSID{Dev: init.Dev, Ino: init.Ino}) == id {
		ns.Close()
		return nil, fmt.Errorf("%s is the machine's own network namespace (a container run with --net=host cannot be attached)", ref.Path)
	}
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		ns.Close()
		return nil, fmt.Errorf("netlink in %s: %w", ref.Path, err)
	}
	return &Container{Ref: ref, ID: id, ns: ns, h: h}, nil
}

// Close releases the namespace handle.
func (c *Container) Close() error {
	c.h.Close()
	return c.ns.Close()
}

// Iface returns the container's interface on the network (ethwe unless
// the reference names another), or nil if it has none.
func (c *Container) Iface() (*Iface, error) {
	link, err := c.h.LinkByName(c.Ref.IfaceName())
	if isNotFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	addrs, err := linkAddrs(c.h.AddrList, link)
	if err != nil {
		return nil, err
	}
	a := link.Attrs()
	return &Iface{Name: a.Name, MAC: a.HardwareAddr, MTU: a.MTU, Addrs: addrs}, nil
}

// CreateIface creates a veth pair: hostName on bridge br in the current
// namespace with hostMTU, and ethwe in the container with mtu, both up (and
// the container's lo up). On error nothing is left behind.
func (c *Container) CreateIface(hostName string, br *Bridge, mtu, hostMTU int) (*Iface, error) {
	veth, err := newBridgedVeth(hostName, c.Ref.IfaceName(), br, mtu, hostMTU)
	if err != nil {
		return nil, err
	}
	veth.PeerNamespace = netlink.NsFd(int(c.ns))
	if err := netlink.LinkAdd(veth); err != nil {
		return nil, fmt.Errorf("create veth %s: %w", hostName, err)
	}
	iface, err := c.upIface(hostName)
	if err != nil {
		if derr := DeleteLink(hostName); derr != nil {
			err = errors.Join(err, derr)
		}
		return nil, err
	}
	return iface, nil
}

func (c *Container) upIface(hostName string) (*Iface, error) {
	host, err := netlink.LinkByName(hostName)
	if err != nil {
		return nil, err
	}
	if err := netlink.LinkSetUp(host); err != nil {
		return nil, fmt.Errorf("set %s up: %w", hostName, err)
	}
	link, err := c.h.LinkByName(c.Ref.IfaceName())
	if err != nil {
		return nil, err
	}
	if err := c.h.LinkSetUp(link); err != nil {
		return nil, fmt.Errorf("set %s up: %w", c.Ref.IfaceName(), err)
	}
	if lo, err := c.h.LinkByName("lo"); err == nil {
		if err := c.h.LinkSetUp(lo); err != nil {
			return nil, fmt.Errorf("set lo up: %w", err)
		}
	}
	// The kernel activates a device's queue and the bridge port a moment
	// after carrier comes on (in its link-watch work); until then frames
	// are dropped, so wait for both ends to be operationally up before
	// anyone (Announce) sends. A slow kernel is not an error: frames flow
	// once it catches up.
	deadline := time.Now().Add(linkUpWait)
	for time.Now().Before(deadline) {
		h, herr := netlink.LinkByName(hostName)
		cl, cerr := c.h.LinkByName(c.Ref.IfaceName())
		if herr == nil && cerr == nil && h.Attrs().OperState == netlink.OperUp && cl.Attrs().OperState == netlink.OperUp {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	return c.Iface()
}

// linkUpWait bounds how long CreateIface waits for a new veth to come up.
const linkUpWait = 2 * time.Second

// AddAddrs adds addresses to ethwe; the kernel adds the subnet route each
// implies. All or nothing: on error the ones added are removed again.
func (c *Container) AddAddrs(addrs []netip.Prefix) error {
	link, err := c.h.LinkByName(c.Ref.IfaceName())
	if err != nil {
		return err
	}
	for i, a := range addrs {
		if err := c.h.AddrAdd(link, toNetlinkAddr(a)); err != nil {
			for _, done := range addrs[:i] {
				c.h.AddrDel(link, toNetlinkAddr(done))
			}
			return fmt.Errorf("add %s: %w", a, err)
		}
	}
	return nil
}

// DelAddrs removes addresses from ethwe; absent ones are skipped.
func (c *Container) DelAddrs(addrs []netip.Prefix) error {
	link, err := c.h.LinkByName(c.Ref.IfaceName())
	if err != nil {
		return err
	}
	var errs []error
	for _, a := range addrs {
		if err := c.h.AddrDel(link, toNetlinkAddr(a)); err != nil && !errors.Is(err, unix.EADDRNOTAVAIL) {
			errs = append(errs, fmt.Errorf("remove %s: %w", a, err))
		}
	}
	return errors.Join(errs...)
}

// DeleteIface deletes ethwe, and with it the host end of the veth pair.
// A missing ethwe is not an error.
func (c *Container) DeleteIface() error {
	link, err := c.h.LinkByName(c.Ref.IfaceName())
	if isNotFound(err) {
		return nil
	}
	if err != nil {
		return err
	}
	if err := c.h.LinkDel(link); err != nil && !isNotFound(err) {
		return fmt.Errorf("delete %s: %w", c.Ref.IfaceName(), err)
	}
	return nil
}

// Do runs fn on a locked OS thread inside the container's namespace.
// Sockets fn opens stay in that namespace after Do returns.
func (c *Container) Do(fn func() error) error { return DoInNetns(c.ns, fn) }

// DoInNetns runs fn on a locked OS thread switched into ns, then switches
// back. If switching back fails the thread is left locked, so the runtime
// discards it rather than reuse a thread in the wrong namespace.
func DoInNetns(ns netns.NsHandle, fn func() error) error {
	runtime.LockOSThread()
	orig, err := netns.Get()
	if err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("get current namespace: %w", err)
	}
	defer orig.Close()
	if err := netns.Set(ns); err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("enter namespace: %w", err)
	}
	ferr := fn()
	if err := netns.Set(orig); err != nil {
		return errors.Join(ferr, fmt.Errorf("return to own namespace: %w", err))
	}
	runtime.UnlockOSThread()
	return ferr
}
