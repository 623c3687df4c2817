package server

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"time"

	"github.com/miekg/dns"
)

// Defaults, also used by the daemon's flag help.
const (
	// DefaultDomain is the zone the server answers from its name table.
	DefaultDomain = "weave.local."
	// DefaultListenAddr is loopback only, so that a server started with
	// the defaults is never an open resolver; the daemon replaces it with
	// an address its containers can reach.
	DefaultListenAddr = "127.0.0.1:53"
	// DefaultTTL is the TTL of local answers and of negative answers
	// (the SOA's minimum). Names come and go with containers and must
	// disappear everywhere within a second or two, so caches downstream
	// may keep an answer for one second at most; a weave answer costs a
	// map lookup, so the extra queries are cheap. Weave Net 2.x also
	// used 1 s (its first versions 30 s).
	DefaultTTL = time.Second
	// DefaultUpstreamTimeout bounds the whole forwarding of one query,
	// over all upstreams. It is below the 5 s that glibc and dig wait
	// for one try, so a client always gets our SERVFAIL rather than
	// timing out and retrying (which would double the upstream load),
	// and it leaves a healthy upstream (typically < 100 ms, a cold
	// recursive lookup < 1 s) room to answer.
	DefaultUpstreamTimeout = 2 * time.Second
)

// Names is the name table the server answers from. It is called on every
// query in the domain and for every PTR query, from many goroutines at
// once: it must be safe for concurrent use and must not block on I/O.
// The server neither keeps nor modifies the returned slices.
type Names interface {
	// LookupName returns the addresses registered under fqdn (fully
	// qualified, lower case; implementations may match case-insensitively
	// anyway), IPv4 and IPv6 mixed, in the order to answer them (the
	// implementation shuffles when there are several). Nil when fqdn is
	// not registered.
	LookupName(fqdn string) []netip.Addr
	// LookupAddr returns the FQDNs registered for ip, or nil.
	LookupAddr(ip netip.Addr) []string
}

// Config configures a Server. Zero fields take the defaults of
// DefaultConfig, except Names, which is required.
type Config struct {
	// Domain is the zone answered from Names (default "weave.local.").
	Domain string
	// ListenAddr is the IP:port to listen on, UDP and TCP on the same
	// port; port 0 picks a free one (see Server.Addr); an empty IP
	// listens on every address.
	ListenAddr string
	// Names is the name table. Required.
	Names Names
	// Upstreams are the resolvers, "IP:port" (or a bare IP, port 53),
	// that names outside Domain are forwarded to, tried in order. Any
	// that is this server's own listen address is dropped (see New).
	// None: forwarded names get SERVFAIL. See UpstreamsFromResolvConf.
	Upstreams []string
	// UpstreamTimeout bounds the forwarding of one query over all
	// upstreams; when it passes the client gets SERVFAIL.
	UpstreamTimeout time.Duration
	// TTL of local answers, whole seconds.
	TTL time.Duration
	// Logger receives the server's logs (default: discarded).
	Logger *slog.Logger
}

// DefaultConfig returns the defaults; set Names, and usually ListenAddr and
// Upstreams.
func DefaultConfig() Config {
	return Config{
		Domain:          DefaultDomain,
		ListenAddr:      DefaultListenAddr,
		UpstreamTimeout: DefaultUpstreamTimeout,
		TTL:             DefaultTTL,
	}
}

// fill validates c, applies defaults and returns the parsed upstreams.
func (c *Config) fill() ([]netip.AddrPort, error) {
	d := DefaultConfig()
	if c.Names == nil {
		return nil, errors.New("dns server config: names required")
	}
	if c.Domain == "" {
		c.Domain = d.Domain
	}
	if _, ok := dns.IsDomainName(c.Domain); !ok || c.Domain == "." {
		return nil, fmt.Errorf("dns server config: domain %q is not a domain name", c.Domain)
	}
	c.Domain = dns.CanonicalName(c.Domain)
	if c.ListenAddr == "" {
		c.ListenAddr = d.ListenAddr
	}
	if _, err := parseListenAddr(c.ListenAddr); err != nil {
		return nil, fmt.Errorf("dns server config: %w", err)
	}
	if c.UpstreamTimeout == 0 {
		c.UpstreamTimeout = d.UpstreamTimeout
	}
	if c.UpstreamTimeout < 0 {
		return nil, fmt.Errorf("dns server config: upstream timeout %s is negative", c.UpstreamTimeout)
	}
	if c.TTL == 0 {
		c.TTL = d.TTL
	}
	if c.TTL < time.Second || c.TTL > 24*time.Hour {
		return nil, fmt.Errorf("dns server config: ttl %s out of range 1s..24h", c.TTL)
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	ups := make([]netip.AddrPort, 0, len(c.Upstreams))
	for _, s := range c.Upstreams {
		ap, err := ParseUpstream(s)
		if err != nil {
			return nil, fmt.Errorf("dns server config: %w", err)
		}
		ups = append(ups, ap)
	}
	return ups, nil
}

// ParseUpstream parses an upstream resolver address, "IP:port" or a bare
// IP (port 53); IPv6 with a port in brackets. Host names are refused: a
// resolver's address cannot depend on a resolver.
func ParseUpstream(s string) (netip.AddrPort, error) {
	if ap, err := netip.ParseAddrPort(s); err == nil {
		if ap.Port() == 0 {
			return netip.AddrPort{}, fmt.Errorf("upstream %q: port 0", s)
		}
		return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()), nil
	}
	if a, err := netip.ParseAddr(strings.Trim(s, "[]")); err == nil {
		return netip.AddrPortFrom(a.Unmap(), 53), nil
	}
	return netip.AddrPort{}, fmt.Errorf("upstream %q: want IP:port or IP", s)
}

// parseListenAddr checks "IP:port" or ":port" and returns the IP (invalid
// for an empty host, meaning every address).
func parseListenAddr(s string) (netip.Addr, error) {
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return netip.Addr{}, fmt.Errorf("listen address %q: %w", s, err)
	}
	if _, err := net.LookupPort("udp", port); err != nil {
		return netip.Addr{}, fmt.Errorf("listen address %q: bad port", s)
	}
	if host == "" {
		return netip.Addr{}, nil
	}
	a, err := netip.ParseAddr(host)
	if err != nil {
		return netip.Addr{}, fmt.Errorf("listen address %q: want an IP address", s)
	}
	return a.Unmap(), nil
}
