package ipam

import (
	"errors"
	"net/netip"
	"testing"
)

func mustAddr(s string) Addr { return AddrFrom(netip.MustParseAddr(s)) }

func rangeOf(s string) Range { return RangeOf(netip.MustParsePrefix(s)) }

func TestAddrConversions(t *testing.T) {
	for _, s := range []string{"0.0.0.0", "10.32.0.1", "255.255.255.255", "192.168.1.200"} {
		a := mustAddr(s)
		if got := a.IP().String(); got != s || a.String() != s {
			t.Errorf("%s -> %d -> %s / %s", s, a, got, a.String())
		}
	}
	if got := AddrFrom(netip.MustParseAddr("::ffff:10.1.2.3")); got != mustAddr("10.1.2.3") {
		t.Errorf("IPv4-mapped address converted to %s", got)
	}
	if a, b := mustAddr("10.0.0.255"), mustAddr("10.0.1.0"); b != a+1 {
		t.Errorf("addresses are not consecutive numbers: %d %d", a, b)
	}
}

func TestRange(t *testing.T) {
	tests := []struct {
		prefix     string
		start, end string // end is the last address
		size       uint64
	}{
		{"10.32.0.0/12", "10.32.0.0", "10.47.255.255", 1 << 20},
		{"10.32.1.7/24", "10.32.1.0", "10.32.1.255", 256}, // masked
		{"10.0.0.4/30", "10.0.0.4", "10.0.0.7", 4},
		{"10.0.0.9/32", "10.0.0.9", "10.0.0.9", 1},
		{"0.0.0.0/0", "0.0.0.0", "255.255.255.255", 1 << 32},
		{"255.255.255.0/24", "255.255.255.0", "255.255.255.255", 256},
	}
	for _, tt := range tests {
		t.Run(tt.prefix, func(t *testing.T) {
			r := rangeOf(tt.prefix)
			if r.Start != mustAddr(tt.start) || r.End != uint64(mustAddr(tt.end))+1 || r.Size() != tt.size {
				t.Errorf("RangeOf = %s (%d..%d, size %d), want %s-%s size %d", r, r.Start, r.End, r.Size(), tt.start, tt.end, tt.size)
			}
			if want := tt.start + "-" + tt.end; r.String() != want {
				t.Errorf("String = %q, want %q", r.String(), want)
			}
			if !r.Contains(mustAddr(tt.start)) || !r.Contains(mustAddr(tt.end)) {
				t.Error("does not contain its ends")
			}
			if r.Start > 0 && r.Contains(r.Start-1) {
				t.Error("contains the address before it")
			}
			if r.End < 1<<32 && r.Contains(Addr(r.End)) {
				t.Error("contains the address after it")
			}
		})
	}
}

func TestRangeSetOperations(t *testing.T) {
	r := rangeOf("10.0.0.0/24")
	tests := []struct {
		name     string
		o        Range
		contains bool
		inter    Range
	}{
		{"itself", r, true, r},
		{"inside", rangeOf("10.0.0.64/26"), true, rangeOf("10.0.0.64/26")},
		{"overlapping", Range{Start: mustAddr("10.0.0.200"), End: uint64(mustAddr("10.0.1.10"))}, false, Range{Start: mustAddr("10.0.0.200"), End: r.End}},
		{"adjacent", rangeOf("10.0.1.0/24"), false, Range{}},
		{"containing", rangeOf("10.0.0.0/16"), false, r},
		{"empty", Range{Start: mustAddr("10.0.0.5"), End: uint64(mustAddr("10.0.0.5"))}, true, Range{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := r.ContainsRange(tt.o); got != tt.contains {
				t.Errorf("ContainsRange(%s) = %v", tt.o, got)
			}
			got := r.Intersect(tt.o)
			if tt.inter.Size() == 0 {
				if got.Size() != 0 || got.String() != "(empty)" {
					t.Errorf("Intersect(%s) = %s, want empty", tt.o, got)
				}
				return
			}
			if got != tt.inter {
				t.Errorf("Intersect(%s) = %s, want %s", tt.o, got, tt.inter)
			}
		})
	}
	if (Range{Start: 10, End: 5}).Size() != 0 {
		t.Error("an inverted range has addresses")
	}
}

func TestSubnetReserved(t *testing.T) {
	tests := []struct {
		subnet   string
		addr     string
		reserved bool
	}{
		{"10.32.0.0/24", "10.32.0.0", true},
		{"10.32.0.0/24", "10.32.0.255", true},
		{"10.32.0.0/24", "10.32.0.1", false},
		{"10.32.0.0/24", "10.32.0.254", false},
		{"10.32.0.4/30", "10.32.0.4", true},
		{"10.32.0.4/30", "10.32.0.7", true},
		{"10.32.0.4/30", "10.32.0.5", false},
		{"10.32.0.4/31", "10.32.0.4", false}, // point-to-point: both usable
		{"10.32.0.4/32", "10.32.0.4", false},
	}
	for _, tt := range tests {
		s := Subnet(netip.MustParsePrefix(tt.subnet))
		if got := s.reserved(mustAddr(tt.addr)); got != tt.reserved {
			t.Errorf("%s.reserved(%s) = %v, want %v", tt.subnet, tt.addr, got, tt.reserved)
		}
	}
	s := Subnet(netip.MustParsePrefix("10.32.0.0/24"))
	if s.Range() != rangeOf("10.32.0.0/24") || s.String() != "10.32.0.0/24" {
		t.Errorf("Subnet helpers: %s %s", s.Range(), s)
	}
}

func TestCheckRangeAndSubnet(t *testing.T) {
	for _, tt := range []struct {
		rng string
		ok  bool
	}{
		{"10.32.0.0/12", true},
		{"10.32.0.0/30", true},
		{"10.32.0.0/31", false},
		{"0.0.0.0/0", false},
		{"fd00::/64", false},
	} {
		_, err := NewCore(CoreConfig{Us: 1, Range: netip.MustParsePrefix(tt.rng)})
		if (err == nil) != tt.ok {
			t.Errorf("NewCore with range %s: %v", tt.rng, err)
		}
	}
	if _, err := NewCore(CoreConfig{Us: 1}); err == nil {
		t.Error("NewCore with no range succeeded")
	}

	c := newTestCore(t, 1, "10.32.0.0/16", 1)
	for _, tt := range []struct {
		subnet, want string
		err          error
	}{
		{"10.32.4.0/24", "10.32.4.0/24", nil},
		{"10.32.4.9/24", "10.32.4.0/24", nil}, // masked
		{"10.32.0.0/16", "10.32.0.0/16", nil},
		{"10.33.0.0/24", "", ErrOutOfRange},
		{"10.0.0.0/8", "", ErrOutOfRange},
		{"10.32.0.0/31", "", nil},
		{"fd00::/120", "", nil},
	} {
		s, err := c.CheckSubnet(netip.MustParsePrefix(tt.subnet))
		switch {
		case tt.want != "":
			if err != nil || s.String() != tt.want {
				t.Errorf("CheckSubnet(%s) = %s, %v; want %s", tt.subnet, s, err, tt.want)
			}
		case err == nil:
			t.Errorf("CheckSubnet(%s) = %s, want an error", tt.subnet, s)
		case tt.err != nil && !errors.Is(err, tt.err):
			t.Errorf("CheckSubnet(%s) = %v, want %v", tt.subnet, err, tt.err)
		}
	}
	if !c.InRange(netip.MustParseAddr("10.32.200.1")) || c.InRange(netip.MustParseAddr("10.33.0.1")) || c.InRange(netip.MustParseAddr("fd00::1")) {
		t.Error("InRange is wrong")
	}
}
