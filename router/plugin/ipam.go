package plugin

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strings"
)

// The IPAM driver. Pools are subnets of the router's range; pool IDs name
// the subnet (and the --ip-range sub-pool), so they need no state. The
// Engine does not say which endpoint an address is for, and IPAM gives one
// id one address per subnet: each address gets an id of its own,
// AllocPrefix(name) and a random suffix, found again by the address when
// the Engine releases it.

// poolPrefix starts every pool ID.
const poolPrefix = "weave-pool:"

// AllocPrefix starts the IPAM ids of plugin name's addresses.
func AllocPrefix(name string) string { return "docker-plugin:" + name + ":" }

// newAllocID returns a fresh IPAM id for one address.
func (s *Server) newAllocID() string {
	var b [8]byte
	rand.Read(b[:])
	return AllocPrefix(s.cfg.Name) + hex.EncodeToString(b[:])
}

func (s *Server) ipamHandlers(handle func(string, func([]byte) (any, error))) {
	handle("IpamDriver.GetCapabilities", func([]byte) (any, error) {
		return ipamCapabilitiesResponse{}, nil
	})
	handle("IpamDriver.GetDefaultAddressSpaces", func([]byte) (any, error) {
		return addressSpacesResponse{LocalDefaultAddressSpace: LocalAddressSpace, GlobalDefaultAddressSpace: GlobalAddressSpace}, nil
	})
	handle("IpamDriver.RequestPool", s.requestPool)
	handle("IpamDriver.ReleasePool", func(b []byte) (any, error) {
		var req poolRequest
		if err := decode(b, &req); err != nil {
			return nil, err
		}
		if _, _, err := parsePoolID(req.PoolID); err != nil {
			return nil, fmt.Errorf("release pool: %w", err)
		}
		return struct{}{}, nil
	})
	handle("IpamDriver.RequestAddress", s.requestAddress)
	handle("IpamDriver.ReleaseAddress", s.releaseAddress)
}

func (s *Server) requestPool(body []byte) (any, error) {
	var req requestPoolRequest
	if err := decode(body, &req); err != nil {
		return nil, err
	}
	if req.V6 {
		return nil, errors.New("request pool: IPv6 is not supported by the weave IPAM driver")
	}
	if req.AddressSpace != LocalAddressSpace && req.AddressSpace != GlobalAddressSpace {
		return nil, fmt.Errorf("request pool: address space %q is not the weave IPAM driver's (%s or %s)", req.AddressSpace, LocalAddressSpace, GlobalAddressSpace)
	}
	if len(req.Options) > 0 {
		keys := slices.Sorted(maps.Keys(req.Options))
		return nil, fmt.Errorf("request pool: IPAM option %q is not known to the weave IPAM driver, which takes none", keys[0])
	}
	if s.cfg.IPAM == nil {
		return nil, errors.New("request pool: automatic allocation is off on this router")
	}
	var want netip.Prefix
	if req.Pool != "" {
		p, err := netip.ParsePrefix(req.Pool)
		if err != nil || !p.Addr().Is4() {
			return nil, fmt.Errorf("request pool: subnet %q is not an IPv4 CIDR", req.Pool)
		}
		want = p
	}
	pool, err := s.cfg.IPAM.CheckSubnet(want)
	if err != nil {
		return nil, fmt.Errorf("request pool: %w", err)
	}
	id := poolPrefix + pool.String()
	if req.SubPool != "" {
		sub, err := netip.ParsePrefix(req.SubPool)
		if err != nil || !sub.Addr().Is4() {
			return nil, fmt.Errorf("request pool: ip range %q is not an IPv4 CIDR", req.SubPool)
		}
		sub = sub.Masked()
		if sub.Bits() < pool.Bits() || !pool.Contains(sub.Addr()) {
			return nil, fmt.Errorf("request pool: ip range %s is not inside the subnet %s", sub, pool)
		}
		if _, err := s.cfg.IPAM.CheckSubnet(sub); err != nil {
			return nil, fmt.Errorf("request pool: ip range: %w", err)
		}
		id += "," + sub.String()
	}
	return requestPoolResponse{PoolID: id, Pool: pool.String(), Data: map[string]string{}}, nil
}

// parsePoolID returns the pool and the sub-pool to allocate from (the
// pool itself when there is none).
func parsePoolID(id string) (pool, from netip.Prefix, err error) {
	rest, ok := strings.CutPrefix(id, poolPrefix)
	if !ok {
		return pool, from, fmt.Errorf("pool %q is not a weave pool", id)
	}
	ps, ss, hasSub := strings.Cut(rest, ",")
	if pool, err = netip.ParsePrefix(ps); err != nil {
		return pool, from, fmt.Errorf("pool %q is not a weave pool", id)
	}
	from = pool
	if hasSub {
		if from, err = netip.ParsePrefix(ss); err != nil || !pool.Contains(from.Addr()) {
			return pool, from, fmt.Errorf("pool %q is not a weave pool", id)
		}
	}
	return pool, from, nil
}

func (s *Server) requestAddress(body []byte) (any, error) {
	var req requestAddressRequest
	if err := decode(body, &req); err != nil {
		return nil, err
	}
	pool, from, err := parsePoolID(req.PoolID)
	if err != nil {
		return nil, fmt.Errorf("request address: %w", err)
	}
	if s.cfg.IPAM == nil {
		return nil, errors.New("request address: automatic allocation is off on this router")
	}
	id := s.newAllocID()
	ctx, cancel := context.WithTimeout(s.ctx, ipamTimeout)
	defer cancel()
	gateway := req.Options[optRequestAddrType] == addrTypeGateway
	if req.Address != "" {
		ip, err := netip.ParseAddr(req.Address)
		if err != nil || !ip.Is4() {
			return nil, fmt.Errorf("request address: %q is not an IPv4 address", req.Address)
		}
		if !pool.Contains(ip) {
			return nil, fmt.Errorf("request address: %s is outside the subnet %s", ip, pool)
		}
		p := netip.PrefixFrom(ip, pool.Bits())
		if err := s.cfg.IPAM.Claim(ctx, id, p); err != nil {
			return nil, fmt.Errorf("request address %s: %w", ip, err)
		}
		return requestAddressResponse{Address: p.String(), Data: map[string]string{}}, nil
	}
	if gateway {
		// The Engine wants a gateway for every network; the overlay has
		// none (it is on-link). The subnet's own network address, which
		// IPAM never gives out, fills the slot without spending an
		// address.
		return requestAddressResponse{Address: pool.String(), Data: map[string]string{}}, nil
	}
	got, err := s.cfg.IPAM.Allocate(ctx, id, from)
	if err != nil {
		return nil, fmt.Errorf("request address in %s: %w", from, err)
	}
	p := netip.PrefixFrom(got.Addr(), pool.Bits())
	s.log.Info("address allocated", "addr", p)
	return requestAddressResponse{Address: p.String(), Data: map[string]string{}}, nil
}

// allocID returns the IPAM id that holds ip if it is one of the
// plugin's, else "".
func (s *Server) allocID(ip netip.Addr) string {
	if s.cfg.IPAM == nil {
		return ""
	}
	if id := s.cfg.IPAM.Owner(ip); strings.HasPrefix(id, AllocPrefix(s.cfg.Name)) {
		return id
	}
	return ""
}

func (s *Server) releaseAddress(body []byte) (any, error) {
	var req releaseAddressRequest
	if err := decode(body, &req); err != nil {
		return nil, err
	}
	pool, _, err := parsePoolID(req.PoolID)
	if err != nil {
		return nil, fmt.Errorf("release address: %w", err)
	}
	ip, err := netip.ParseAddr(req.Address)
	if err != nil {
		// Docker sends the address with or without its prefix length.
		p, perr := netip.ParsePrefix(req.Address)
		if perr != nil {
			return nil, fmt.Errorf("release address: %q is not an IP address", req.Address)
		}
		ip = p.Addr()
	}
	if !pool.Contains(ip) {
		return nil, fmt.Errorf("release address: %s is outside the subnet %s", ip, pool)
	}
	if s.cfg.IPAM == nil {
		return struct{}{}, nil
	}
	// Only the plugin's own addresses: the gateway's is no allocation.
	if id := s.allocID(ip); id != "" {
		if freed := s.cfg.IPAM.Release(id, ip); len(freed) > 0 {
			s.log.Info("address released", "addr", ip)
		}
	}
	return struct{}{}, nil
}
