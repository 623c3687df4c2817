package ipam

import (
	"fmt"
	"net/netip"
)

// Addr is an IPv4 address as a number, so that ranges are arithmetic.
type Addr uint32

// AddrFrom converts an IPv4 address (IPv4-mapped IPv6 too) to an Addr.
func AddrFrom(ip netip.Addr) Addr {
	b := ip.Unmap().As4()
	return Addr(uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3]))
}

// IP converts a back to a netip.Addr.
func (a Addr) IP() netip.Addr {
	return netip.AddrFrom4([4]byte{byte(a >> 24), byte(a >> 16), byte(a >> 8), byte(a)})
}

func (a Addr) String() string { return a.IP().String() }

// Range is the half-open interval [Start, End) of addresses. End is a
// uint64 so that a range may end at the top of the address space.
type Range struct {
	Start Addr
	End   uint64
}

// RangeOf returns the addresses of a prefix, network and broadcast
// addresses included.
func RangeOf(p netip.Prefix) Range {
	p = p.Masked()
	start := AddrFrom(p.Addr())
	return Range{Start: start, End: uint64(start) + 1<<(32-p.Bits())}
}

// Size is the number of addresses in r.
func (r Range) Size() uint64 {
	if r.End <= uint64(r.Start) {
		return 0
	}
	return r.End - uint64(r.Start)
}

// Contains reports whether a is in r.
func (r Range) Contains(a Addr) bool { return a >= r.Start && uint64(a) < r.End }

// ContainsRange reports whether o lies within r.
func (r Range) ContainsRange(o Range) bool { return o.Start >= r.Start && o.End <= r.End }

// Intersect returns the overlap of r and o (empty when there is none).
func (r Range) Intersect(o Range) Range {
	s, e := max(r.Start, o.Start), min(r.End, o.End)
	if e <= uint64(s) {
		return Range{Start: s, End: uint64(s)}
	}
	return Range{Start: s, End: e}
}

func (r Range) String() string {
	if r.Size() == 0 {
		return "(empty)"
	}
	return fmt.Sprintf("%s-%s", r.Start, Addr(r.End-1))
}

// Subnet is a prefix addresses are allocated from: every address of it
// but the network and broadcast addresses (for prefixes of /30 and wider).
type Subnet netip.Prefix

// Prefix returns s as a netip.Prefix.
func (s Subnet) Prefix() netip.Prefix { return netip.Prefix(s) }

func (s Subnet) String() string { return s.Prefix().String() }

// Range is the subnet's whole address range.
func (s Subnet) Range() Range { return RangeOf(s.Prefix()) }

// reserved reports whether a is the network or broadcast address of s, which
// are never handed out.
func (s Subnet) reserved(a Addr) bool {
	if s.Prefix().Bits() > 30 {
		return false
	}
	r := s.Range()
	return a == r.Start || uint64(a) == r.End-1
}
