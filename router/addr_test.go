package router

import (
	"errors"
	"net/netip"
	"strings"
	"testing"
)

func TestParseAddr(t *testing.T) {
	tests := []struct {
		in      string
		want    string
		err     string // substring of the error
		needIPA bool
	}{
		{in: "10.2.1.4/24", want: "10.2.1.4/24"},
		{in: "ip:10.2.1.4/24", want: "10.2.1.4/24"},
		{in: "10.2.1.4/32", want: "10.2.1.4/32"},
		{in: "10.2.1.5/31", want: "10.2.1.5/31"},
		{in: "10.2.1.4/31", want: "10.2.1.4/31"},
		{in: "net:10.2.0.0/16", needIPA: true},
		{in: "net:default", needIPA: true},
		{in: "net:10.2.0.300/16", err: "malformed CIDR"},
		{in: "10.2.1.300/24", err: "malformed CIDR"},
		{in: "10.2.1.4", err: "missing /prefix-length"},
		{in: "ip:10.2.1.4", err: "missing /prefix-length"},
		{in: "10.2.1.4/33", err: "malformed CIDR"},
		{in: "", err: "malformed CIDR"},
		{in: "foo:10.2.1.4/24", err: "unknown kind"},
		{in: "10.2.1.0/24", err: "network address of 10.2.1.0/24"},
		{in: "10.2.1.255/24", err: "broadcast address of 10.2.1.0/24"},
		{in: "10.255.255.255/8", err: "broadcast address"},
		{in: "fd00::1/64", err: "only IPv4"},
		{in: "127.0.0.2/8", err: "not a usable host address"},
		{in: "224.0.0.5/24", err: "not a usable host address"},
		{in: "0.0.0.0/0", err: "not a usable host address"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseAddr(tt.in)
			switch {
			case tt.needIPA:
				if !errors.Is(err, ErrNeedIPAM) {
					t.Fatalf("ParseAddr(%q) = %v, %v; want ErrNeedIPAM", tt.in, got, err)
				}
			case tt.err != "":
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("ParseAddr(%q) = %v, %v; want error containing %q", tt.in, got, err, tt.err)
				}
			default:
				if err != nil || got != netip.MustParsePrefix(tt.want) {
					t.Fatalf("ParseAddr(%q) = %v, %v; want %s", tt.in, got, err, tt.want)
				}
			}
		})
	}
}

func TestParseAddrs(t *testing.T) {
	if _, err := ParseAddrs(nil); !errors.Is(err, ErrNeedIPAM) {
		t.Errorf("ParseAddrs(nil) = %v, want ErrNeedIPAM", err)
	}
	if _, err := ParseAddrs([]string{"10.2.1.4/24", "ip:10.2.1.4/16"}); err == nil || !strings.Contains(err.Error(), "given twice") {
		t.Errorf("duplicate address: %v", err)
	}
	if _, err := ParseAddrs([]string{"10.2.1.4/24", "bad"}); err == nil {
		t.Error("a bad entry did not fail the list")
	}
	got, err := ParseAddrs([]string{"10.2.1.4/24", "ip:10.3.0.1/16"})
	if err != nil || len(got) != 2 || got[1] != netip.MustParsePrefix("10.3.0.1/16") {
		t.Errorf("ParseAddrs = %v, %v", got, err)
	}
}

func TestTAPName(t *testing.T) {
	for bridge, want := range map[string]string{"weave": "weave-tap", "h5br0": "h5br0-tap", "averylongbridge": "averylongbr-tap"} {
		if got := tapName(bridge); got != want || len(got) > 15 {
			t.Errorf("tapName(%q) = %q, want %q", bridge, got, want)
		}
	}
	cfg := Config{}.withDefaults()
	if cfg.Bridge != "weave" || cfg.TAPName != "weave-tap" || cfg.MTU != DefaultMTU || cfg.Logger == nil {
		t.Errorf("defaults = %+v", cfg)
	}
}

func TestHostVethName(t *testing.T) {
	a := hostVethName("weave", "netns:c1")
	if len(a) != 15 || !strings.HasPrefix(a, hostVethPrefix) {
		t.Fatalf("hostVethName = %q", a)
	}
	if a != hostVethName("weave", "netns:c1") {
		t.Error("hostVethName is not deterministic")
	}
	if a == hostVethName("weave", "netns:c2") || a == hostVethName("h5br0", "netns:c1") {
		t.Error("hostVethName collides across containers or bridges")
	}
}
