package main

import (
	"net/netip"
	"slices"
	"strings"
	"testing"
)

// TestDNSNames checks that weave and dnsmasq get the same names: the hosts
// file lists exactly the weave names with their addresses.
func TestDNSNames(t *testing.T) {
	weave, fwd := dnsNames(300)
	if len(weave) != 300 || len(fwd) != 300 {
		t.Fatalf("%d weave names, %d forwarded", len(weave), len(fwd))
	}
	if weave[0].name != "n0.weave.local." || weave[0].want != netip.MustParseAddr("10.2.0.1") || fwd[299].name != "n299.ext.test." || fwd[0].want.IsValid() {
		t.Errorf("names %v ... %v", weave[0], fwd[299])
	}
	seen := map[netip.Addr]bool{}
	for _, n := range weave {
		if seen[n.want] {
			t.Fatalf("address %v given twice", n.want)
		}
		seen[n.want] = true
	}
	var fromHosts []queryName
	for _, line := range strings.Split(strings.TrimSpace(hostsFile(weave)), "\n") {
		f := strings.Fields(line)
		fromHosts = append(fromHosts, queryName{name: f[1] + ".", want: netip.MustParseAddr(f[0])})
	}
	if !slices.Equal(fromHosts, weave) {
		t.Error("the hosts file does not list the weave names")
	}
	args := strings.Join(dnsmasqArgs(netip.MustParseAddr("169.254.53.53"), 5353, "/x/hosts", "192.168.79.2:53", 0), " ")
	for _, want := range []string{"--server=192.168.79.2#53", "--port=5353", "--listen-address=169.254.53.53", "--cache-size=0", "--addn-hosts=/x/hosts", "--no-resolv"} {
		if !strings.Contains(args, want) {
			t.Errorf("dnsmasq args lack %q: %s", want, args)
		}
	}
}
