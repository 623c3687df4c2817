package mesh

import (
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
)

// ParsePeerAddr checks a PEER (host[:port]) and returns it in canonical
// form, host:port: an IP address as netip prints it (IPv6 in brackets), a
// host name in lower case, defaultPort when none is given. A bare IPv6
// address needs no brackets; with a port it does ([fd00::1]:6790). Zoned
// addresses, ports outside 1-65535 and names that are not RFC 1123 host
// names (ValidHostName) are refused with an error wrapping ErrBadPeerAddr.
//
// It is the one parser of peer addresses: the router's Connect and Forget,
// discovery and the daemon's flags and saved peers all use it.
func ParsePeerAddr(s string, defaultPort int) (string, error) {
	bad := func(why string) (string, error) {
		return "", fmt.Errorf("%w %q: %s (want host[:port])", ErrBadPeerAddr, s, why)
	}
	if s == "" {
		return bad("empty")
	}
	if a, err := netip.ParseAddr(s); err == nil {
		if a.Zone() != "" {
			return bad("zoned addresses are not supported")
		}
		return netip.AddrPortFrom(a, uint16(defaultPort)).String(), nil
	}
	host, port := s, strconv.Itoa(defaultPort)
	if strings.Contains(s, ":") {
		h, p, err := net.SplitHostPort(s)
		if err != nil {
			return bad("malformed")
		}
		host, port = h, p
	}
	n, err := strconv.Atoi(port)
	if err != nil || n < 1 || n > 65535 || strings.HasPrefix(port, "+") {
		return bad("port must be a number from 1 to 65535")
	}
	if host == "" {
		return bad("no host")
	}
	if a, err := netip.ParseAddr(host); err == nil {
		if a.Zone() != "" {
			return bad("zoned addresses are not supported")
		}
		return netip.AddrPortFrom(a, uint16(n)).String(), nil
	}
	if !ValidHostName(host) {
		return bad("not an IP address or host name")
	}
	return net.JoinHostPort(strings.ToLower(host), strconv.Itoa(n)), nil
}

// ValidHostName accepts RFC 1123 host names: dot-separated labels of
// letters, digits and inner hyphens, at most 253 bytes. All-numeric dotted
// names (malformed IPv4 addresses like 1.2.3.999) are refused.
func ValidHostName(h string) bool {
	if h == "" || len(h) > 253 {
		return false
	}
	allNumeric := true
	for _, label := range strings.Split(h, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for _, r := range label {
			switch {
			case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r == '-':
				allNumeric = false
			case r >= '0' && r <= '9':
			default:
				return false
			}
		}
	}
	return !allNumeric
}
