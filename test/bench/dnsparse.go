package main

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
)

// parseNameserver returns the first nameserver of a resolv.conf.
func parseNameserver(resolvConf string) (netip.Addr, error) {
	for _, line := range strings.Split(resolvConf, "\n") {
		f := strings.Fields(line)
		if len(f) >= 2 && f[0] == "nameserver" {
			ip, err := netip.ParseAddr(f[1])
			if err != nil {
				return netip.Addr{}, fmt.Errorf("nameserver %q: %w", f[1], err)
			}
			return ip, nil
		}
	}
	return netip.Addr{}, errors.New("no nameserver line")
}

// parseDnsmasqVersion returns "2.90" from `dnsmasq --version`'s "Dnsmasq
// version 2.90  Copyright ...", or "".
func parseDnsmasqVersion(out string) string {
	f := strings.Fields(out)
	for i := 0; i+2 < len(f); i++ {
		if strings.EqualFold(f[i], "dnsmasq") && f[i+1] == "version" {
			return f[i+2]
		}
	}
	return ""
}
