package router

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
)

// ErrNeedIPAM is returned by ParseAddr and ParseAddrs, which take static
// addresses only, for the forms that IPAM allocates (net:CIDR,
// net:default, or no ADDR at all); use ParseAddrSpecs for those.
var ErrNeedIPAM = errors.New("this command takes static addresses only (CIDR or ip:CIDR)")

// AddrSpec is one parsed ADDR: a static address, or a subnet to allocate
// from (the zero Subnet meaning the default subnet).
type AddrSpec struct {
	Static netip.Prefix // CIDR or ip:CIDR
	Subnet netip.Prefix // net:CIDR, masked
	// Default is net:default (or no ADDR at all).
	Default bool
}

// IsStatic reports whether the spec is a static address.
func (a AddrSpec) IsStatic() bool { return a.Static.IsValid() }

func (a AddrSpec) String() string {
	switch {
	case a.IsStatic():
		return a.Static.String()
	case a.Default:
		return "net:default"
	}
	return "net:" + a.Subnet.String()
}

// ParseAddrSpec parses one ADDR of any form.
func ParseAddrSpec(s string) (AddrSpec, error) {
	if rest, ok := strings.CutPrefix(s, "net:"); ok {
		if rest == "default" {
			return AddrSpec{Default: true}, nil
		}
		p, err := netip.ParsePrefix(rest)
		if err != nil {
			return AddrSpec{}, fmt.Errorf("address %q: malformed CIDR", s)
		}
		if !p.Addr().Is4() {
			return AddrSpec{}, fmt.Errorf("address %q: only IPv4 is supported", s)
		}
		return AddrSpec{Subnet: p.Masked()}, nil
	}
	p, err := ParseAddr(s)
	if err != nil {
		return AddrSpec{}, err
	}
	return AddrSpec{Static: p}, nil
}

// ParseAddrSpecs parses a list of ADDR; an empty list is net:default. A
// static address or a subnet given twice is an error.
func ParseAddrSpecs(ss []string) ([]AddrSpec, error) {
	if len(ss) == 0 {
		return []AddrSpec{{Default: true}}, nil
	}
	out := make([]AddrSpec, 0, len(ss))
	for _, s := range ss {
		a, err := ParseAddrSpec(s)
		if err != nil {
			return nil, err
		}
		for _, o := range out {
			if a.IsStatic() && o.IsStatic() && a.Static.Addr() == o.Static.Addr() {
				return nil, fmt.Errorf("address %s given twice", a.Static.Addr())
			}
			if !a.IsStatic() && a == o {
				return nil, fmt.Errorf("%s given twice", a)
			}
		}
		out = append(out, a)
	}
	return out, nil
}

// ParseAddr parses one ADDR: CIDR | ip:CIDR | net:CIDR | net:default. Only
// the static forms are supported; net:* returns an error wrapping
// ErrNeedIPAM. The result keeps the host address (10.2.1.4/24, not
// 10.2.1.0/24). It must be IPv4 and neither the network nor the broadcast
// address of its subnet.
func ParseAddr(s string) (netip.Prefix, error) {
	cidr := s
	if kind, rest, ok := strings.Cut(s, ":"); ok && !strings.Contains(rest, ":") {
		switch kind {
		case "ip":
			cidr = rest
		case "net":
			if rest == "default" {
				return netip.Prefix{}, fmt.Errorf("address %q: %w", s, ErrNeedIPAM)
			}
			if _, err := netip.ParsePrefix(rest); err != nil {
				return netip.Prefix{}, fmt.Errorf("address %q: malformed CIDR", s)
			}
			return netip.Prefix{}, fmt.Errorf("address %q: %w", s, ErrNeedIPAM)
		default:
			return netip.Prefix{}, fmt.Errorf("address %q: unknown kind %q (want CIDR, ip:CIDR, net:CIDR or net:default)", s, kind)
		}
	}
	p, err := netip.ParsePrefix(cidr)
	if err != nil {
		if _, aerr := netip.ParseAddr(cidr); aerr == nil {
			return netip.Prefix{}, fmt.Errorf("address %q: malformed CIDR: missing /prefix-length", s)
		}
		return netip.Prefix{}, fmt.Errorf("address %q: malformed CIDR", s)
	}
	ip := p.Addr()
	switch {
	case !ip.Is4():
		return netip.Prefix{}, fmt.Errorf("address %q: only IPv4 is supported", s)
	case ip.IsUnspecified() || ip.IsLoopback() || ip.IsMulticast() || ip == netip.AddrFrom4([4]byte{255, 255, 255, 255}):
		return netip.Prefix{}, fmt.Errorf("address %q: not a usable host address", s)
	}
	if p.Bits() <= 30 {
		if ip == p.Masked().Addr() {
			return netip.Prefix{}, fmt.Errorf("address %q: is the network address of %s", s, p.Masked())
		}
		if ip == broadcast(p) {
			return netip.Prefix{}, fmt.Errorf("address %q: is the broadcast address of %s", s, p.Masked())
		}
	}
	return p, nil
}

// ParseAddrs parses a list of ADDR. An empty list needs IPAM (an error
// wrapping ErrNeedIPAM), as does any net:* entry; an address given twice is
// an error.
func ParseAddrs(ss []string) ([]netip.Prefix, error) {
	if len(ss) == 0 {
		return nil, fmt.Errorf("no address given: %w", ErrNeedIPAM)
	}
	out := make([]netip.Prefix, 0, len(ss))
	seen := make(map[netip.Addr]bool, len(ss))
	for _, s := range ss {
		p, err := ParseAddr(s)
		if err != nil {
			return nil, err
		}
		if seen[p.Addr()] {
			return nil, fmt.Errorf("address %s given twice", p.Addr())
		}
		seen[p.Addr()] = true
		out = append(out, p)
	}
	return out, nil
}

func broadcast(p netip.Prefix) netip.Addr {
	a := p.Masked().Addr().As4()
	host := uint32(1)<<(32-p.Bits()) - 1
	v := uint32(a[0])<<24 | uint32(a[1])<<16 | uint32(a[2])<<8 | uint32(a[3]) | host
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}
