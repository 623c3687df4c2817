package server

import (
	"fmt"
	"net/netip"

	"github.com/miekg/dns"
)

// resolvedConf is where systemd-resolved writes the servers it forwards to.
const resolvedConf = "/run/systemd/resolve/resolv.conf"

// UpstreamsFromResolvConf returns the name servers of the resolv.conf file
// at path (normally /etc/resolv.conf, read at launch), as "IP:53" in the
// file's order, without duplicates. A file without nameserver lines gives
// none and no error (glibc would then try 127.0.0.1; we do not guess).
//
// Loopback resolvers: the router forwards from its own network namespace,
// which is normally the host's, where a resolver on 127.0.0.1 (dnsmasq,
// unbound) works; they are kept. systemd-resolved's stub (127.0.0.53, and
// 127.0.0.54) is kept too, and followed by the servers resolved itself
// uses (from /run/systemd/resolve/resolv.conf, when there): in the host's
// namespace the stub answers, with resolved's per-link routing; in a
// namespace of its own (several routers on one machine) nothing listens
// there, the kernel refuses the datagram at once, and the next upstream,
// reachable from anywhere with a route out, answers within the same
// UpstreamTimeout. Docker's embedded resolver (127.0.0.11) only exists
// inside a container's namespace and is kept like any other: it works
// when the router runs in that container and fails fast otherwise. The
// server's own address is not removed here but by New, which knows it.
// Where none of this fits, pass upstreams explicitly (--dns-upstream).
func UpstreamsFromResolvConf(path string) ([]string, error) {
	return upstreamsFromResolvConf(path, resolvedConf)
}

func upstreamsFromResolvConf(path, resolvedPath string) ([]string, error) {
	servers, err := nameservers(path)
	if err != nil {
		return nil, err
	}
	var out []string
	seen := make(map[netip.AddrPort]bool)
	add := func(a netip.Addr) {
		ap := netip.AddrPortFrom(a, 53)
		if !seen[ap] {
			seen[ap] = true
			out = append(out, ap.String())
		}
	}
	for _, a := range servers {
		add(a)
		if isResolvedStub(a) {
			real, err := nameservers(resolvedPath)
			if err != nil {
				continue
			}
			for _, r := range real {
				if !isResolvedStub(r) {
					add(r)
				}
			}
		}
	}
	return out, nil
}

// nameservers parses path's nameserver lines; unparsable entries are
// skipped, as the C library does.
func nameservers(path string) ([]netip.Addr, error) {
	cc, err := dns.ClientConfigFromFile(path)
	if err != nil {
		return nil, fmt.Errorf("dns: read %s: %w", path, err)
	}
	var out []netip.Addr
	for _, s := range cc.Servers {
		a, err := netip.ParseAddr(s)
		if err != nil {
			continue
		}
		out = append(out, a.Unmap())
	}
	return out, nil
}

func isResolvedStub(a netip.Addr) bool {
	return a == netip.AddrFrom4([4]byte{127, 0, 0, 53}) || a == netip.AddrFrom4([4]byte{127, 0, 0, 54})
}
