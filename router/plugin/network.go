package plugin

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net"
	"net/netip"
	"slices"
	"sort"
)

// The network driver: networks are lists of pools, endpoints veth pairs on
// the bridge whose peer the Engine moves into the container as ethweN.

func (s *Server) networkHandlers(handle func(string, func([]byte) (any, error))) {
	empty := func(fn func([]byte) error) func([]byte) (any, error) {
		return func(b []byte) (any, error) { return struct{}{}, fn(b) }
	}
	handle("NetworkDriver.GetCapabilities", func([]byte) (any, error) {
		return capabilitiesResponse{Scope: "local", ConnectivityScope: "local"}, nil
	})
	handle("NetworkDriver.CreateNetwork", empty(s.createNetwork))
	handle("NetworkDriver.DeleteNetwork", empty(s.deleteNetwork))
	handle("NetworkDriver.CreateEndpoint", s.createEndpoint)
	handle("NetworkDriver.EndpointOperInfo", s.endpointInfo)
	handle("NetworkDriver.DeleteEndpoint", empty(s.deleteEndpoint))
	handle("NetworkDriver.Join", s.join)
	handle("NetworkDriver.Leave", empty(s.leave))
	// Nothing to do for these: discovery and external connectivity
	// (port mappings) are not the overlay's business, and
	// AllocateNetwork is for swarm-scoped drivers.
	for _, m := range []string{"DiscoverNew", "DiscoverDelete", "ProgramExternalConnectivity", "RevokeExternalConnectivity", "FreeNetwork"} {
		handle("NetworkDriver."+m, func([]byte) (any, error) { return struct{}{}, nil })
	}
	handle("NetworkDriver.AllocateNetwork", func([]byte) (any, error) {
		return allocateNetworkResponse{Options: map[string]string{}}, nil
	})
}

func (s *Server) createNetwork(body []byte) error {
	var req createNetworkRequest
	if err := decode(body, &req); err != nil {
		return err
	}
	if req.NetworkID == "" {
		return errors.New("create network: no NetworkID")
	}
	if g, ok := req.Options[optGeneric].(map[string]any); ok && len(g) > 0 {
		keys := slices.Sorted(maps.Keys(g))
		return fmt.Errorf("create network: driver option %q is not known to the weave driver, which takes none", keys[0])
	}
	if v6, _ := req.Options[optEnableIPv6].(bool); v6 || len(req.IPv6Data) > 0 {
		return errors.New("create network: IPv6 is not supported by the weave driver")
	}
	if len(req.IPv4Data) == 0 {
		return errors.New("create network: no IPv4 subnet (use --ipam-driver " + s.cfg.Name + ")")
	}
	nw := &Network{ID: req.NetworkID}
	for _, d := range req.IPv4Data {
		p, err := netip.ParsePrefix(d.Pool)
		if err != nil || !p.Addr().Is4() {
			return fmt.Errorf("create network: pool %q is not an IPv4 CIDR", d.Pool)
		}
		nw.Pools = append(nw.Pools, p.Masked())
		if d.AddressSpace != LocalAddressSpace && d.AddressSpace != GlobalAddressSpace {
			s.log.Warn("network's addresses do not come from weave IPAM: they may clash with other hosts' (use --ipam-driver "+s.cfg.Name+")", "network", req.NetworkID, "pool", p)
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.networks[req.NetworkID]; ok {
		return fmt.Errorf("create network %s: it exists already", short(req.NetworkID))
	}
	s.networks[req.NetworkID] = nw
	if err := s.saveLocked(); err != nil {
		delete(s.networks, req.NetworkID)
		return err
	}
	s.log.Info("network created", "network", short(req.NetworkID), "pools", nw.Pools)
	return nil
}

func (s *Server) deleteNetwork(body []byte) error {
	var req networkRequest
	if err := decode(body, &req); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.networks[req.NetworkID]; !ok {
		return nil // the Engine retries deletes: nothing left to do
	}
	for _, ep := range s.endpoints {
		if ep.NetworkID == req.NetworkID {
			return fmt.Errorf("delete network %s: endpoint %s is still on it", short(req.NetworkID), short(ep.EndpointID))
		}
	}
	delete(s.networks, req.NetworkID)
	s.log.Info("network deleted", "network", short(req.NetworkID))
	return s.saveLocked()
}

func (s *Server) createEndpoint(body []byte) (any, error) {
	var req createEndpointRequest
	if err := decode(body, &req); err != nil {
		return nil, err
	}
	if req.EndpointID == "" {
		return nil, errors.New("create endpoint: no EndpointID")
	}
	iface := req.Interface
	if iface == nil {
		iface = &endpointInterface{}
	}
	if iface.AddressIPv6 != "" {
		return nil, errors.New("create endpoint: IPv6 is not supported by the weave driver")
	}
	if iface.Address == "" {
		return nil, errors.New("create endpoint: no IPv4 address given (create the network with --ipam-driver " + s.cfg.Name + ")")
	}
	addr, err := netip.ParsePrefix(iface.Address)
	if err != nil || !addr.Addr().Is4() {
		return nil, fmt.Errorf("create endpoint: address %q is not IPv4 CIDR", iface.Address)
	}
	mac := MACFor(addr.Addr())
	if iface.MacAddress != "" {
		if mac, err = net.ParseMAC(iface.MacAddress); err != nil {
			return nil, fmt.Errorf("create endpoint: MAC %q: %w", iface.MacAddress, err)
		}
	}
	s.mu.Lock()
	nw, ok := s.networks[req.NetworkID]
	_, dup := s.endpoints[req.EndpointID]
	s.mu.Unlock()
	switch {
	case !ok:
		return nil, fmt.Errorf("create endpoint: network %s is unknown to the weave plugin %s", short(req.NetworkID), s.cfg.Name)
	case dup:
		return nil, fmt.Errorf("create endpoint %s: it exists already", short(req.EndpointID))
	case !slices.ContainsFunc(nw.Pools, func(p netip.Prefix) bool { return p.Contains(addr.Addr()) }):
		return nil, fmt.Errorf("create endpoint: address %s is outside the network's subnets %v", addr, nw.Pools)
	}
	link, err := s.cfg.Links.CreateLink(req.EndpointID, addr, mac)
	if err != nil {
		return nil, fmt.Errorf("create endpoint %s: %w", short(req.EndpointID), err)
	}
	ep := &Endpoint{NetworkID: req.NetworkID, EndpointID: req.EndpointID, Addr: addr, MAC: link.MAC, Link: link, AllocID: s.allocID(addr.Addr())}
	s.mu.Lock()
	if _, ok := s.networks[req.NetworkID]; !ok {
		// Dropped meanwhile (checkRestored: the Engine has no such
		// network): the endpoint would be on none.
		err = fmt.Errorf("create endpoint: network %s is unknown to the weave plugin %s", short(req.NetworkID), s.cfg.Name)
	} else {
		s.endpoints[req.EndpointID] = ep
		if err = s.saveLocked(); err != nil {
			delete(s.endpoints, req.EndpointID)
		}
	}
	s.mu.Unlock()
	if err != nil {
		s.cfg.Links.DeleteLink(req.EndpointID, addr)
		return nil, err
	}
	s.log.Info("endpoint created", "network", short(req.NetworkID), "endpoint", short(req.EndpointID), "addr", addr, "veth", link.Host)
	resp := createEndpointResponse{}
	if iface.MacAddress == "" {
		resp.Interface = &endpointInterface{MacAddress: link.MAC.String()}
	}
	return resp, nil
}

func (s *Server) endpointInfo(body []byte) (any, error) {
	var req endpointRequest
	if err := decode(body, &req); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	ep, ok := s.endpoints[req.EndpointID]
	if !ok {
		return nil, fmt.Errorf("endpoint %s is unknown to the weave plugin %s", short(req.EndpointID), s.cfg.Name)
	}
	return endpointInfoResponse{Value: map[string]any{"address": ep.Addr.String(), "mac": ep.MAC.String(), "veth": ep.Link.Host}}, nil
}

func (s *Server) deleteEndpoint(body []byte) error {
	var req endpointRequest
	if err := decode(body, &req); err != nil {
		return err
	}
	s.stopJoin(req.EndpointID)
	s.mu.Lock()
	ep, ok := s.endpoints[req.EndpointID]
	var deleted Endpoint
	if ok {
		deleted = *ep
	}
	s.mu.Unlock()
	// Unknown endpoints are deleted too: the names derive from the ID.
	if err := s.cfg.Links.DeleteLink(req.EndpointID, deleted.Addr); err != nil {
		return fmt.Errorf("delete endpoint %s: %w", short(req.EndpointID), err)
	}
	if !ok {
		return nil
	}
	s.mu.Lock()
	cur, still := s.endpoints[req.EndpointID]
	joined := still && cur.Sandbox != ""
	delete(s.endpoints, req.EndpointID)
	err := s.saveLocked()
	s.mu.Unlock()
	if !still {
		return err // dropped meanwhile (checkRestored)
	}
	// Still joined: the Engine's Leave was lost (made while the router
	// was down), so the Observer hears of the leave now.
	if joined && s.cfg.Observer != nil {
		s.cfg.Observer.Left(deleted)
	}
	s.log.Info("endpoint deleted", "endpoint", short(req.EndpointID), "addr", deleted.Addr)
	return err
}

func (s *Server) join(body []byte) (any, error) {
	var req joinRequest
	if err := decode(body, &req); err != nil {
		return nil, err
	}
	if req.SandboxKey == "" {
		return nil, errors.New("join: no SandboxKey")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	ep, ok := s.endpoints[req.EndpointID]
	if !ok || ep.NetworkID != req.NetworkID {
		return nil, fmt.Errorf("join: endpoint %s of network %s is unknown to the weave plugin %s", short(req.EndpointID), short(req.NetworkID), s.cfg.Name)
	}
	ep.Sandbox = req.SandboxKey
	if err := s.saveLocked(); err != nil {
		ep.Sandbox = ""
		return nil, err
	}
	resp := joinResponse{InterfaceName: interfaceName{SrcName: ep.Link.Peer, DstPrefix: IfPrefix}}
	// No gateway: the overlay is on-link, and a container also on
	// Docker's bridge network keeps its default route there. weaveDNS's
	// address is on-link too.
	if svc := s.cfg.ServiceAddr; svc.IsValid() {
		resp.StaticRoutes = []staticRoute{{Destination: netip.PrefixFrom(svc, 32).String(), RouteType: routeConnected}}
	}
	s.observeJoinLocked(ep)
	s.log.Info("endpoint joined", "endpoint", short(ep.EndpointID), "sandbox", req.SandboxKey, "addr", ep.Addr)
	return resp, nil
}

// observeJoinLocked runs Observer.Joined for ep on a goroutine of the
// Server's, ending the one that runs for it already. s.mu must be held.
func (s *Server) observeJoinLocked(ep *Endpoint) {
	if s.cfg.Observer == nil || s.ctx.Err() != nil {
		return
	}
	ctx, cancel := context.WithCancel(s.ctx)
	j := &join{cancel: cancel, done: make(chan struct{})}
	if old := s.joins[ep.EndpointID]; old != nil {
		old.cancel()
	}
	s.joins[ep.EndpointID] = j
	s.wg.Add(1)
	joined := *ep
	go func() {
		defer s.wg.Done()
		defer close(j.done)
		s.cfg.Observer.Joined(ctx, joined)
	}()
}

// rejoin tells the Observer again of the endpoints that the state file
// says are joined: a restarted router registers their names anew (the
// Engine does not repeat its Join), and learns which containers they are,
// so that Leave removes the names of the right one.
func (s *Server) rejoin() {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, ep := range s.endpoints {
		if ep.Sandbox != "" && s.joins[ep.EndpointID] == nil {
			s.observeJoinLocked(ep)
			n++
		}
	}
	if n > 0 {
		s.log.Info("endpoints joined before the restart restored", "endpoints", n)
	}
}

// stopJoin ends endpoint id's Observer.Joined and waits for it.
func (s *Server) stopJoin(id string) {
	s.mu.Lock()
	j := s.joins[id]
	delete(s.joins, id)
	s.mu.Unlock()
	if j != nil {
		j.cancel()
		<-j.done
	}
}

func (s *Server) leave(body []byte) error {
	var req endpointRequest
	if err := decode(body, &req); err != nil {
		return err
	}
	s.stopJoin(req.EndpointID)
	s.mu.Lock()
	ep, ok := s.endpoints[req.EndpointID]
	var left Endpoint
	if ok {
		left = *ep
		ep.Sandbox = ""
		if err := s.saveLocked(); err != nil {
			s.log.Warn("save plugin state", "err", err)
		}
	}
	s.mu.Unlock()
	if !ok {
		return nil // nothing of ours joined
	}
	if s.cfg.Observer != nil {
		s.cfg.Observer.Left(left)
	}
	s.log.Info("endpoint left", "endpoint", short(req.EndpointID), "addr", left.Addr)
	return nil
}

// Networks returns the networks on this host, sorted by ID.
func (s *Server) Networks() []Network {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Network, 0, len(s.networks))
	for _, n := range s.networks {
		out = append(out, Network{ID: n.ID, Pools: slices.Clone(n.Pools)})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// short abbreviates a Docker ID as docker does.
func short(id string) string {
	if len(id) > 12 {
		return id[:12]
	}
	return id
}

// MACFor is the MAC of an endpoint with IPv4 address ip unless Docker
// gives one: 0a:58 and the address, as CNI plugins do. An address that
// goes and comes back (disconnect and connect, a container replaced)
// keeps its MAC, so that its peers' ARP caches stay right.
func MACFor(ip netip.Addr) net.HardwareAddr {
	a := ip.As4()
	return net.HardwareAddr{0x0a, 0x58, a[0], a[1], a[2], a[3]}
}
