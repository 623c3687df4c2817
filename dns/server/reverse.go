package server

import (
	"net/netip"
	"strings"
)

// parseReverse returns the address that a reverse name stands for:
// d.c.b.a.in-addr.arpa. (four decimal labels) or the 32 nibbles of
// ip6.arpa., lower case, fully qualified. Shorter names (zone cuts) and
// anything malformed are not addresses.
func parseReverse(name string) (netip.Addr, bool) {
	if rest, ok := strings.CutSuffix(name, ".in-addr.arpa."); ok {
		labels := strings.Split(rest, ".")
		if len(labels) != 4 {
			return netip.Addr{}, false
		}
		var b [4]byte
		for i, l := range labels {
			n, ok := decimalOctet(l)
			if !ok {
				return netip.Addr{}, false
			}
			b[3-i] = n
		}
		return netip.AddrFrom4(b), true
	}
	if rest, ok := strings.CutSuffix(name, ".ip6.arpa."); ok {
		// 32 one-digit labels: 63 bytes.
		if len(rest) != 63 {
			return netip.Addr{}, false
		}
		var b [16]byte
		for i := 0; i < 32; i++ {
			if i > 0 && rest[2*i-1] != '.' {
				return netip.Addr{}, false
			}
			n, ok := hexNibble(rest[2*i])
			if !ok {
				return netip.Addr{}, false
			}
			// Label i is nibble 31-i, least significant first.
			j := 31 - i
			if j%2 == 0 {
				b[j/2] |= n << 4
			} else {
				b[j/2] |= n
			}
		}
		return netip.AddrFrom16(b), true
	}
	return netip.Addr{}, false
}

// decimalOctet parses 0..255 without leading zeros or signs.
func decimalOctet(s string) (byte, bool) {
	if len(s) == 0 || len(s) > 3 || (len(s) > 1 && s[0] == '0') {
		return 0, false
	}
	n := 0
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, false
		}
		n = n*10 + int(s[i]-'0')
	}
	if n > 255 {
		return 0, false
	}
	return byte(n), true
}

func hexNibble(c byte) (byte, bool) {
	switch {
	case c >= '0' && c <= '9':
		return c - '0', true
	case c >= 'a' && c <= 'f':
		return c - 'a' + 10, true
	}
	return 0, false
}
