package server

import (
	"bytes"
	"net"
	"net/netip"

	"github.com/miekg/dns"
)

// Loop prevention: the server must never forward a query to itself, directly
// or through other resolvers. Three layers:
//
// 1. Static: New drops every upstream that is this server's own listen
//    address (isSelf).
// 2. Marked queries: every query we forward carries an EDNS0 option in the
//    local-use range holding a token that is random per Server. A query
//    that arrives with our token is one of ours that came back, through
//    any forwarder that passes EDNS options on (forwarders that relay the
//    query as received, such as CoreDNS's forward, and another weave
//    router, which keeps the options of the queries it forwards): it is
//    answered REFUSED at once, which makes the sender (and every
//    forwarder on the way) move on to its next upstream. The marker never
//    reaches our clients: relay strips it from replies.
// 3. Coalescing: identical questions forwarded at the same time share one
//    upstream exchange (forward.go). A resolver that rebuilds queries
//    and drops unknown options (systemd-resolved, unbound) and forwards
//    back to us asks the same question, usually with the same flags,
//    while we are waiting for it; it joins our flight, and the cycle
//    ends with SERVFAIL when the first exchange times out, instead of
//    nesting one more forward per round trip for ever. (If it changes
//    the flags, say sets DO, one more lap starts, and the resolver's own
//    coalescing of identical transactions closes it the same way.) A
//    cap of maxExchanges concurrent upstream exchanges bounds whatever
//    slips through.

// loopOption is the EDNS0 option code of the loop marker, in the range
// RFC 6891 reserves for local and experimental use.
const loopOption = 0xFE57

// loopTokenLen is the marker's length: random per Server, so that two
// routers never take each other's queries for their own.
const loopTokenLen = 8

// marked reports whether opt carries the loop marker with token.
func marked(opt *dns.OPT, token []byte) bool {
	if opt == nil {
		return false
	}
	for _, o := range opt.Option {
		if l, ok := o.(*dns.EDNS0_LOCAL); ok && l.Code == loopOption && bytes.Equal(l.Data, token) {
			return true
		}
	}
	return false
}

// isSelf reports whether forwarding to up would reach the server listening
// on own. When own is a wildcard (every address), local lists this host's
// addresses.
func isSelf(up, own netip.AddrPort, local []netip.Addr) bool {
	if up.Port() != own.Port() {
		return false
	}
	ua, oa := up.Addr().Unmap().WithZone(""), own.Addr().Unmap()
	if ua == oa {
		return true
	}
	if ua.IsUnspecified() {
		// Sending to 0.0.0.0 or :: reaches the local host.
		return oa.IsUnspecified() || oa.IsLoopback()
	}
	if !oa.IsUnspecified() {
		return false
	}
	if ua.IsLoopback() {
		return true
	}
	for _, l := range local {
		if l.Unmap() == ua {
			return true
		}
	}
	return false
}

// localAddrs lists this host's interface addresses; nil on error (the loop
// marker still catches what isSelf then misses).
func localAddrs() []netip.Addr {
	ifas, err := net.InterfaceAddrs()
	if err != nil {
		return nil
	}
	var out []netip.Addr
	for _, ifa := range ifas {
		if p, err := netip.ParsePrefix(ifa.String()); err == nil {
			out = append(out, p.Addr().Unmap())
		}
	}
	return out
}
