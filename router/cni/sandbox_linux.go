package cni

import (
	"errors"
	"fmt"
	"net"
	"net/netip"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// kernelSandbox is the Sandbox of the kernel: netlink handles opened in
// the pod's namespace by path, so no thread ever switches namespace.
type kernelSandbox struct{}

// NewSandbox returns the kernel's Sandbox.
func NewSandbox() Sandbox { return kernelSandbox{} }

var _ Sandbox = kernelSandbox{}

// open returns a netlink handle in the namespace at path.
func (kernelSandbox) open(path string) (*netlink.Handle, func(), error) {
	if path == "" {
		return nil, nil, fmt.Errorf("no CNI_NETNS: %w", ErrNoNetns)
	}
	ns, err := netns.GetFromPath(path)
	if errors.Is(err, unix.ENOENT) {
		return nil, nil, fmt.Errorf("%s: %w", path, ErrNoNetns)
	}
	if err != nil {
		return nil, nil, fmt.Errorf("open %s: %w", path, err)
	}
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		ns.Close()
		return nil, nil, fmt.Errorf("netlink in %s: %w", path, err)
	}
	return h, func() { h.Close(); ns.Close() }, nil
}

func isNotFound(err error) bool {
	var nf netlink.LinkNotFoundError
	return errors.As(err, &nf)
}

func (s kernelSandbox) Link(path, ifName string) (*Link, error) {
	h, done, err := s.open(path)
	if err != nil {
		return nil, err
	}
	defer done()
	l, err := h.LinkByName(ifName)
	if isNotFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w", ifName, err)
	}
	a := l.Attrs()
	out := &Link{MAC: a.HardwareAddr.String(), MTU: a.MTU, Up: a.Flags&net.FlagUp != 0}
	addrs, err := h.AddrList(l, netlink.FAMILY_V4)
	if err != nil {
		return nil, fmt.Errorf("addresses of %s: %w", ifName, err)
	}
	for _, ad := range addrs {
		if p, ok := prefixOf(*ad.IPNet); ok {
			out.Addrs = append(out.Addrs, p)
		}
	}
	routes, err := h.RouteList(l, netlink.FAMILY_V4)
	if err != nil {
		return nil, fmt.Errorf("routes of %s: %w", ifName, err)
	}
	for _, r := range routes {
		rt := Route{Dst: netip.MustParsePrefix("0.0.0.0/0")}
		if r.Dst != nil {
			if p, ok := prefixOf(*r.Dst); ok {
				rt.Dst = p
			}
		}
		if r.Gw != nil {
			rt.Gw, _ = netip.AddrFromSlice(r.Gw.To4())
		}
		out.Routes = append(out.Routes, rt)
	}
	return out, nil
}

func (s kernelSandbox) AddRoutes(path, ifName string, routes []Route) error {
	h, done, err := s.open(path)
	if err != nil {
		return err
	}
	defer done()
	l, err := h.LinkByName(ifName)
	if err != nil {
		return fmt.Errorf("%s: %w", ifName, err)
	}
	for _, r := range routes {
		dst := ipNet(r.Dst)
		nr := &netlink.Route{LinkIndex: l.Attrs().Index, Dst: &dst}
		if r.Gw.IsValid() {
			nr.Gw = net.IP(r.Gw.AsSlice())
		} else {
			nr.Scope = netlink.SCOPE_LINK
		}
		if err := h.RouteReplace(nr); err != nil {
			return fmt.Errorf("route %s via %v dev %s: %w", r.Dst, r.Gw, ifName, err)
		}
	}
	return nil
}

func (s kernelSandbox) DeleteLink(path, ifName string) error {
	h, done, err := s.open(path)
	if errors.Is(err, ErrNoNetns) {
		return nil
	}
	if err != nil {
		return err
	}
	defer done()
	l, err := h.LinkByName(ifName)
	if isNotFound(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("%s: %w", ifName, err)
	}
	if err := h.LinkDel(l); err != nil && !isNotFound(err) {
		return fmt.Errorf("delete %s: %w", ifName, err)
	}
	return nil
}
