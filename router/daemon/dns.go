package daemon

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"sync"

	"github.com/weavelab/weave/dns"
	"github.com/weavelab/weave/dns/table"
	"github.com/weavelab/weave/mesh/identity"
	"github.com/weavelab/weave/router/api"
	"github.com/weavelab/weave/router/docker"
	"github.com/weavelab/weave/router/netdev"
	"github.com/weavelab/weave/router/plugin"
)

// dnsPart is weaveDNS; *dns.Service is the real one.
type dnsPart interface {
	Domain() string
	Address() netip.AddrPort
	Upstreams() []string
	InDomain(fqdn string) bool
	Add(container, fqdn string, ips []netip.Addr) ([]table.Entry, error)
	Remove(m table.Match) ([]table.Entry, error)
	RemoveContainer(container string) []string
	Lookup(name string) []netip.Addr
	Entries() []table.Entry
	Stats() any
	Self() identity.PeerName
}

var _ dnsPart = (*dns.Service)(nil)

// errNoDNS is returned by DNS operations on a router run with --no-dns.
var errNoDNS = errors.New("weaveDNS is off on this router (--no-dns)")

// dnsAfterAttach registers a container's name (a Docker container whose
// hostname is in the domain) with its addresses and, unless withoutDNS,
// points its resolver at weaveDNS.
func (n *node) dnsAfterAttach(ctx context.Context, ref netdev.ContainerRef, id string, withoutDNS bool) {
	if n.dns == nil {
		return
	}
	n.noDNS.set(id, withoutDNS)
	as, err := n.net.PSRefs(ctx, ref)
	if err != nil || len(as) == 0 {
		return
	}
	var ips []netip.Addr
	for _, p := range as[0].Addrs {
		ips = append(ips, p.Addr())
	}
	resolv := ""
	switch {
	case ref.Kind == netdev.KindDocker && n.docker != nil:
		c, err := n.docker.Inspect(ctx, id)
		if err != nil {
			n.log.Warn("weaveDNS: cannot inspect container", "container", id, "err", err)
			return
		}
		if fqdn := c.FQDN(); fqdn != "" && n.dns.InDomain(fqdn) {
			if _, err := n.dns.Add(id, fqdn, ips); err != nil {
				n.log.Warn("weaveDNS: cannot register container", "container", id, "name", fqdn, "err", err)
			} else {
				n.log.Info("weaveDNS: registered", "container", id, "name", fqdn, "addrs", ips)
			}
		}
		if len(c.DNS) == 0 { // the user's own --dns wins
			resolv = c.ResolvConfPath
		}
	case ref.Kind == netdev.KindNetns && ref.Name != "":
		resolv = dns.NetnsResolvConf(ref.Name)
	}
	if resolv != "" && !withoutDNS {
		if err := dns.WriteResolvConf(resolv, n.dns.Address().Addr(), n.dns.Domain()); err != nil {
			n.log.Warn("weaveDNS: cannot point the container's resolver at weaveDNS", "container", id, "err", err)
		}
	}
}

// dnsAfterDetach removes the names of a container's addresses that went
// (all its names when it left the network).
func (n *node) dnsAfterDetach(ref netdev.ContainerRef, id string, removed []netip.Prefix, all bool) {
	if n.dns == nil {
		return
	}
	if all {
		if names := n.dns.RemoveContainer(id); len(names) > 0 {
			n.log.Info("weaveDNS: removed", "container", id, "names", names)
		}
		if ref.Kind == netdev.KindNetns && ref.Name != "" {
			dns.RemoveResolvConf(dns.NetnsResolvConf(ref.Name))
		}
		n.noDNS.set(id, false)
		return
	}
	var ips []netip.Addr
	for _, p := range removed {
		ips = append(ips, p.Addr())
	}
	if len(ips) > 0 {
		n.dns.Remove(table.Match{Container: id, Addrs: ips})
	}
}

// dnsGone removes the names of a container that died or whose namespace
// vanished: a stopped container is no longer answered for, anywhere.
func (n *node) dnsGone(id string) {
	if n.dns == nil {
		return
	}
	if ref, err := netdev.ParseContainer(id); err == nil && ref.Kind == netdev.KindNetns && ref.Name != "" {
		dns.RemoveResolvConf(dns.NetnsResolvConf(ref.Name))
	}
	if names := n.dns.RemoveContainer(id); len(names) > 0 {
		n.log.Info("weaveDNS: container gone; removed its names", "container", id, "names", names)
	}
}

// DNSAdd is weave dns-add: IPs (default: the container's addresses) under
// FQDN (default: the container's hostname).
func (n *node) DNSAdd(ctx context.Context, req api.DNSRequest) ([]api.DNSEntry, error) {
	id, fqdn, ips, err := n.dnsRequest(ctx, "dns-add", req)
	if err != nil {
		return nil, err
	}
	if fqdn == "" {
		return nil, fmt.Errorf("dns-add %s: the container has no hostname in %s: give -h FQDN", req.Container, n.dns.Domain())
	}
	if !n.dns.InDomain(fqdn) {
		return nil, fmt.Errorf("dns-add: %s is not a name in the domain %s", fqdn, n.dns.Domain())
	}
	if len(ips) == 0 {
		return nil, fmt.Errorf("dns-add %s: the container has no address on the network", req.Container)
	}
	es, err := n.dns.Add(id, fqdn, ips)
	if err != nil {
		return nil, fmt.Errorf("dns-add: %w", err)
	}
	return n.apiEntries(es), nil
}

// DNSRemove is weave dns-remove.
func (n *node) DNSRemove(ctx context.Context, req api.DNSRequest) ([]api.DNSEntry, error) {
	m := table.Match{Container: req.Container}
	if req.Container != "" {
		id, _, _, err := n.dnsRequest(ctx, "dns-remove", api.DNSRequest{Container: req.Container, FQDN: "-"})
		if err != nil {
			return nil, err
		}
		m.Container = id
	}
	if n.dns == nil {
		return nil, errNoDNS
	}
	if req.FQDN != "" {
		name, err := table.CanonicalName(req.FQDN)
		if err != nil {
			return nil, fmt.Errorf("dns-remove: %w", err)
		}
		m.Name = name
	}
	for _, s := range req.IPs {
		ip, err := netip.ParseAddr(s)
		if err != nil {
			return nil, fmt.Errorf("dns-remove: %q is not an IP address", s)
		}
		m.Addrs = append(m.Addrs, ip)
	}
	if m.Container == "" && m.Name == "" && len(m.Addrs) == 0 {
		return nil, errors.New("dns-remove: say what to remove: a container, -h FQDN or addresses")
	}
	es, err := n.dns.Remove(m)
	if err != nil {
		return nil, fmt.Errorf("dns-remove: %w", err)
	}
	if len(es) == 0 {
		return nil, errors.New("dns-remove: no such name on this router")
	}
	return n.apiEntries(es), nil
}

// dnsRequest resolves a DNS request's container to the ID its names are
// kept under, and fills in its default name and addresses.
func (n *node) dnsRequest(ctx context.Context, cmd string, req api.DNSRequest) (id, fqdn string, ips []netip.Addr, err error) {
	if n.dns == nil {
		return "", "", nil, errNoDNS
	}
	fqdn = req.FQDN
	for _, s := range req.IPs {
		ip, err := netip.ParseAddr(s)
		if err != nil {
			return "", "", nil, fmt.Errorf("%s: %q is not an IP address", cmd, s)
		}
		ips = append(ips, ip)
	}
	switch req.Container {
	case "":
		return table.ContainerExtern, fqdn, ips, nil
	case table.ContainerExpose:
		return table.ContainerExpose, fqdn, ips, nil
	}
	ref, id, err := n.resolve(ctx, req.Container)
	if err != nil {
		if fqdn == "-" && errors.Is(err, docker.ErrNotRunning) {
			if c, ierr := n.inspect(ctx, req.Container); ierr == nil {
				return c.ID, "", nil, nil // removing a stopped container's names
			}
		}
		return "", "", nil, fmt.Errorf("%s %s: %w", cmd, req.Container, err)
	}
	if fqdn == "-" {
		return id, "", nil, nil
	}
	if fqdn == "" && ref.Kind == netdev.KindDocker && n.docker != nil {
		if c, err := n.docker.Inspect(ctx, id); err == nil {
			fqdn = c.FQDN()
		}
	}
	if len(ips) == 0 {
		as, err := n.net.PSRefs(ctx, ref)
		if err != nil {
			return "", "", nil, fmt.Errorf("%s %s: %w", cmd, req.Container, err)
		}
		if len(as) > 0 {
			for _, p := range as[0].Addrs {
				ips = append(ips, p.Addr())
			}
		}
	}
	return id, fqdn, ips, nil
}

// DNSLookup is weave dns-lookup: the addresses weaveDNS has for name (in
// the domain unless qualified).
func (n *node) DNSLookup(ctx context.Context, name string) ([]string, error) {
	if n.dns == nil {
		return nil, errNoDNS
	}
	if !strings.HasSuffix(name, ".") && !n.dns.InDomain(name) {
		name = name + "." + n.dns.Domain()
	}
	var out []string
	for _, ip := range n.dns.Lookup(name) {
		out = append(out, ip.String())
	}
	slices.Sort(out)
	return out, nil
}

// dnsStatus is weaveDNS's state for status.
func (n *node) dnsStatus() *api.DNS {
	if n.dns == nil {
		return nil
	}
	st := &api.DNS{Domain: n.dns.Domain(), Address: n.dns.Address().String(), Upstreams: n.dns.Upstreams(), Stats: n.dns.Stats()}
	if st.Upstreams == nil {
		st.Upstreams = []string{}
	}
	st.Entries = n.apiEntries(n.dns.Entries())
	return st
}

func (n *node) apiEntries(es []table.Entry) []api.DNSEntry {
	known := n.knownPeers()
	out := make([]api.DNSEntry, 0, len(es))
	for _, e := range es {
		p, ok := known[e.Origin]
		if !ok {
			p = identity.Peer{Name: e.Origin}
		}
		out = append(out, api.DNSEntry{Name: e.Name, Addr: e.Addr.String(), Container: e.Container, Origin: p})
	}
	slices.SortFunc(out, func(a, b api.DNSEntry) int {
		if c := strings.Compare(a.Name, b.Name); c != 0 {
			return c
		}
		return strings.Compare(a.Addr, b.Addr)
	})
	return out
}

// idSet is a set of container IDs, safe for concurrent use.
type idSet struct {
	mu sync.Mutex
	m  map[string]bool
}

func (s *idSet) set(id string, on bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !on {
		delete(s.m, id)
		return
	}
	if s.m == nil {
		s.m = make(map[string]bool)
	}
	s.m[id] = true
}

func (s *idSet) has(id string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.m[id]
}

// dnsForgetDead removes, at start, the names of our containers that went
// while the router was down (the router dropped their records when it
// started). Names added by hand and the host's stay, and so do those of
// the containers that the plugin psrv (nil: none) has joined endpoints
// for, which it registers again as it starts. The plugin knows an
// endpoint by its address, not its container: a container keeps its
// names when one of them is at a joined endpoint's address. Those that
// went while the router was down lose their names once the plugin finds
// that Docker no longer has them.
func (n *node) dnsForgetDead(ctx context.Context, psrv *plugin.Server) {
	as, err := n.net.PSRefs(ctx)
	if err != nil {
		return
	}
	live := map[string]bool{table.ContainerExtern: true, table.ContainerExpose: true}
	for _, a := range as {
		live[a.ID] = true
	}
	entries := n.dns.Entries()
	if psrv != nil {
		joined := map[netip.Addr]bool{}
		for _, ep := range psrv.Joined() {
			joined[ep.Addr.Addr()] = true
		}
		for _, e := range entries {
			if e.Origin == n.dns.Self() && joined[e.Addr] {
				live[e.Container] = true
			}
		}
	}
	for _, e := range entries {
		if e.Origin == n.dns.Self() && !live[e.Container] {
			n.dnsGone(e.Container)
		}
	}
}
