package daemon

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"sync"

	"github.com/weavelab/weave/mesh/identity"
	"github.com/weavelab/weave/router"
	"github.com/weavelab/weave/router/api"
	"github.com/weavelab/weave/router/docker"
	"github.com/weavelab/weave/router/ipam"
	"github.com/weavelab/weave/router/netdev"
)

// ipamPart is the address allocator; *ipam.Allocator is the real one.
type ipamPart interface {
	Allocate(ctx context.Context, id string, subnet netip.Prefix) (netip.Prefix, error)
	Claim(ctx context.Context, id string, p netip.Prefix) error
	Release(id string, ips ...netip.Addr) []netip.Addr
	Hold(id string) int
	Lookup(id string) []ipam.Alloc
	Allocs() []ipam.Alloc
	RmPeer(peer identity.PeerName) (uint64, error)
	Leave(ctx context.Context) (identity.PeerName, error)
	Status() ipam.Status
	CheckSubnet(p netip.Prefix) (netip.Prefix, error)
	InRange(ip netip.Addr) bool
}

var _ ipamPart = (*ipam.Allocator)(nil)

// containers remembers, for containers that died, the addresses they had,
// so that one that restarts is attached again: with the same addresses
// within the grace period (the allocator holds the IPAM ones that long),
// after it with fresh ones from the same subnets.
type containers struct {
	mu   sync.Mutex
	dead map[string][]netip.Prefix
}

func (cs *containers) remember(id string, addrs []netip.Prefix) {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	if cs.dead == nil {
		cs.dead = make(map[string][]netip.Prefix)
	}
	cs.dead[id] = slices.Clone(addrs)
}

func (cs *containers) take(id string) []netip.Prefix {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	a := cs.dead[id]
	delete(cs.dead, id)
	return a
}

func (cs *containers) forget(id string) {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	delete(cs.dead, id)
}

// onGone is router.Config.OnGone: a container's namespace went away.
// Its addresses wait out the grace period for it to come back.
func (n *node) onGone(id string, addrs []netip.Prefix) {
	n.gone.remember(id, addrs)
	n.dnsGone(id)
	if n.ipam != nil {
		if held := n.ipam.Hold(id); held > 0 {
			n.log.Info("container gone; holding its addresses for the grace period", "container", id, "addrs", addrs)
		}
	}
}

// resolve turns a CONTAINER argument into a namespace reference and the ID
// its addresses are allocated under: netns:/pid: references as they are,
// anything else as a Docker container name or ID (which must be running).
func (n *node) resolve(ctx context.Context, container string) (netdev.ContainerRef, string, error) {
	ref, err := netdev.ParseContainer(container)
	if err == nil {
		return ref, ref.String(), nil
	}
	if !errors.Is(err, netdev.ErrNotNamespaceRef) {
		return netdev.ContainerRef{}, "", err
	}
	c, err := n.inspect(ctx, container)
	if err != nil {
		return netdev.ContainerRef{}, "", err
	}
	if _, err := c.NetnsPath(); err != nil {
		return netdev.ContainerRef{}, "", err
	}
	return netdev.DockerContainer(c.ID, c.PID), c.ID, nil
}

// inspect looks a Docker container up, with errors that say what to do.
func (n *node) inspect(ctx context.Context, container string) (docker.Container, error) {
	if n.docker == nil {
		return docker.Container{}, fmt.Errorf("%q is not netns:NAME, netns:PATH or pid:N, and Docker is not available to this router", container)
	}
	return n.docker.Inspect(ctx, container)
}

func (n *node) Attach(ctx context.Context, container string, addrs []string, withoutDNS bool) ([]string, error) {
	return n.AttachIface(ctx, container, "", addrs, withoutDNS)
}

// AttachIface is Attach with the container's interface named ifName
// (empty: ethwe) when it is created.
func (n *node) AttachIface(ctx context.Context, container, ifName string, addrs []string, withoutDNS bool) ([]string, error) {
	specs, err := router.ParseAddrSpecs(addrs)
	if err != nil {
		return nil, fmt.Errorf("attach %s: %w", container, err)
	}
	ref, id, err := n.resolve(ctx, container)
	if err != nil {
		return nil, fmt.Errorf("attach %s: %w", container, err)
	}
	ref.IfName = ifName
	got, err := n.attach(ctx, ref, id, specs)
	if err != nil {
		return nil, fmt.Errorf("attach %s: %w", container, err)
	}
	n.gone.forget(id)
	n.dnsAfterAttach(ctx, ref, id, withoutDNS)
	return prefixStrings(got), nil
}

// attach obtains the addresses (claiming static ones in the range,
// allocating the rest) and attaches the container; on failure it releases
// what it newly obtained.
func (n *node) attach(ctx context.Context, ref netdev.ContainerRef, id string, specs []router.AddrSpec) ([]netip.Prefix, error) {
	prefixes, undo, err := n.obtain(ctx, id, specs)
	if err != nil {
		return nil, err
	}
	got, err := n.net.AttachRef(ctx, ref, prefixes)
	if err != nil {
		undo()
		return nil, err
	}
	// Attaching may have found an earlier incarnation of the container
	// (same ID) gone, which put its addresses on hold: they are this
	// one's now.
	if n.ipam != nil {
		for _, p := range got {
			if n.ipam.InRange(p.Addr()) {
				if err := n.ipam.Claim(ctx, id, p); err != nil {
					n.log.Warn("attached address not recorded as ours", "container", id, "addr", p, "err", err)
				}
			}
		}
	}
	return got, nil
}

// obtain turns ADDR specs into addresses: static ones in the allocation
// range are claimed (they must be in our space and free), subnets are
// allocated from. undo releases what was not the container's before.
func (n *node) obtain(ctx context.Context, id string, specs []router.AddrSpec) ([]netip.Prefix, func(), error) {
	var had []netip.Addr
	if n.ipam != nil {
		for _, a := range n.ipam.Lookup(id) {
			had = append(had, a.Addr)
		}
	}
	var fresh []netip.Addr
	undo := func() {
		if len(fresh) > 0 {
			n.ipam.Release(id, fresh...)
		}
	}
	note := func(p netip.Prefix) {
		if !slices.Contains(had, p.Addr()) {
			fresh = append(fresh, p.Addr())
		}
	}
	var out []netip.Prefix
	for _, s := range specs {
		if s.IsStatic() {
			if n.ipam != nil && n.ipam.InRange(s.Static.Addr()) {
				if err := n.ipam.Claim(ctx, id, s.Static); err != nil {
					undo()
					return nil, nil, err
				}
				note(s.Static)
			}
			out = append(out, s.Static)
			continue
		}
		if n.ipam == nil {
			undo()
			return nil, nil, fmt.Errorf("%s: automatic allocation is off on this router", s)
		}
		p, err := n.ipam.Allocate(ctx, id, s.Subnet)
		if err != nil {
			undo()
			return nil, nil, err
		}
		note(p)
		out = append(out, p)
	}
	return out, undo, nil
}

func (n *node) Detach(ctx context.Context, container string, addrs []string) error {
	if err := n.detach(ctx, container, addrs); err != nil {
		return fmt.Errorf("detach %s: %w", container, err)
	}
	return nil
}

func (n *node) detach(ctx context.Context, container string, addrs []string) error {
	var listed, subnets []netip.Prefix
	for _, s := range addrs {
		spec, err := router.ParseAddrSpec(s)
		if err != nil {
			return err
		}
		switch {
		case spec.IsStatic():
			listed = append(listed, spec.Static)
		case spec.Default && n.ipam != nil:
			def, _ := n.ipam.CheckSubnet(netip.Prefix{})
			subnets = append(subnets, def)
		case spec.Default:
			return errors.New("net:default: automatic allocation is off on this router")
		default:
			subnets = append(subnets, spec.Subnet)
		}
	}
	pick := func(p netip.Prefix) bool {
		if len(addrs) == 0 {
			return true
		}
		return slices.ContainsFunc(subnets, func(s netip.Prefix) bool { return s.Contains(p.Addr()) && p.Bits() == s.Bits() })
	}
	ref, id, err := n.resolve(ctx, container)
	if errors.Is(err, docker.ErrNotRunning) {
		// A stopped container: release what it holds.
		c, ierr := n.inspect(ctx, container)
		if ierr != nil {
			return err
		}
		return n.releaseStopped(c.ID, pick, listed)
	}
	if err != nil {
		return err
	}
	removed, err := n.net.DetachRef(ctx, ref, pick, listed)
	if errors.Is(err, netdev.ErrNoNamespace) && len(addrs) == 0 {
		// The namespace went first (a CNI runtime may delete it before
		// DEL): release now what would otherwise wait out the grace.
		return n.releaseVanished(id, err)
	}
	if err != nil {
		return err
	}
	as, _ := n.net.PSRefs(ctx, ref)
	n.dnsAfterDetach(ref, id, removed, len(as) == 0)
	if n.ipam != nil {
		ips := make([]netip.Addr, len(removed))
		for i, p := range removed {
			ips[i] = p.Addr()
		}
		n.ipam.Release(id, ips...)
	}
	if len(as) == 0 {
		n.gone.forget(id)
	}
	return nil
}

// releaseVanished frees the addresses and names of a container whose
// namespace has gone; notFound is the error when it holds none.
func (n *node) releaseVanished(id string, notFound error) error {
	if err := n.net.Reconcile(); err != nil {
		n.log.Warn("reconcile failed", "err", err)
	}
	n.dnsGone(id)
	n.gone.forget(id)
	var ips []netip.Addr
	if n.ipam != nil {
		for _, a := range n.ipam.Lookup(id) {
			ips = append(ips, a.Addr)
		}
	}
	if len(ips) == 0 {
		return notFound
	}
	n.ipam.Release(id, ips...)
	n.log.Info("released the addresses of a container whose namespace has gone", "container", id, "addrs", ips)
	return nil
}

// releaseStopped frees the addresses a stopped container holds.
func (n *node) releaseStopped(id string, pick func(netip.Prefix) bool, listed []netip.Prefix) error {
	var ips []netip.Addr
	if n.ipam != nil {
		for _, a := range n.ipam.Lookup(id) {
			if pick(a.Prefix()) || slices.Contains(listed, a.Prefix()) {
				ips = append(ips, a.Addr)
			}
		}
	}
	if len(ips) == 0 {
		return errors.New("not attached (the container is not running and holds no addresses)")
	}
	n.ipam.Release(id, ips...)
	if len(n.ipam.Lookup(id)) == 0 {
		n.gone.forget(id)
	}
	n.log.Info("released the addresses of a stopped container", "container", id, "addrs", ips)
	return nil
}

// PS lists the containers weave attached (all, or those named) and those
// on the Docker plugin's networks (see pluginPS), in the order of the
// arguments when there are some. A container named is an error unless it
// is in one or the other.
func (n *node) PS(ctx context.Context, containers []string) ([]api.Container, error) {
	refs := make([]netdev.ContainerRef, 0, len(containers))
	ids := make([]string, 0, len(containers))
	for _, c := range containers {
		ref, id, err := n.resolve(ctx, c)
		if err != nil {
			return nil, fmt.Errorf("ps %s: %w", c, err)
		}
		refs, ids = append(refs, ref), append(ids, id)
	}
	entry := func(a router.Attachment) api.Container {
		return api.Container{ID: a.ID, MAC: a.MAC, Addrs: prefixStrings(a.Addrs)}
	}
	plugged := n.pluginPS(ctx)
	if len(containers) == 0 {
		as, err := n.net.PSRefs(ctx)
		if err != nil {
			return nil, err
		}
		out := make([]api.Container, 0, len(as)+len(plugged)+1)
		if n.bridgeMAC != nil {
			// Like Weave, ps shows the host's own addresses on the network.
			if exposed, err := n.net.Exposed(); err == nil && len(exposed) > 0 {
				out = append(out, api.Container{ID: ExposeID, MAC: n.bridgeMAC(), Addrs: prefixStrings(exposed)})
			}
		}
		for _, a := range as {
			out = append(out, entry(a))
		}
		return append(out, plugged...), nil
	}
	var out []api.Container
	for i, ref := range refs {
		mine := slices.DeleteFunc(slices.Clone(plugged), func(c api.Container) bool { return c.ID != ids[i] })
		as, err := n.net.PSRefs(ctx, ref)
		if errors.Is(err, router.ErrNotAttached) && len(mine) > 0 {
			err = nil // only on plugin networks
		}
		if err != nil {
			return nil, err
		}
		for _, a := range as {
			out = append(out, entry(a))
		}
		out = append(out, mine...)
	}
	return out, nil
}

// RmPeer hands the address space of peers that are gone for good to us.
// Peers are named by peer name or nickname; all are checked first.
func (n *node) RmPeer(ctx context.Context, peers []string) ([]api.RmPeerResult, error) {
	if n.ipam == nil {
		return nil, errors.New("rmpeer: automatic allocation is off on this router")
	}
	if len(peers) == 0 {
		return nil, errors.New("rmpeer: no peers given")
	}
	names := make([]identity.Peer, 0, len(peers))
	for _, s := range peers {
		p, err := n.peerByName(s)
		if err != nil {
			return nil, fmt.Errorf("rmpeer %s: %w", s, err)
		}
		names = append(names, p)
	}
	var out []api.RmPeerResult
	for _, p := range names {
		count, err := n.ipam.RmPeer(p.Name)
		if err != nil {
			return out, fmt.Errorf("rmpeer %s: %w", p, err)
		}
		out = append(out, api.RmPeerResult{Peer: p, Addresses: count})
	}
	return out, nil
}

// peerByName finds a peer by name (MAC form) or by the nickname the mesh
// knows for it.
func (n *node) peerByName(s string) (identity.Peer, error) {
	known := n.knownPeers()
	if name, err := identity.ParsePeerName(s); err == nil {
		if p, ok := known[name]; ok {
			return p, nil
		}
		return identity.Peer{Name: name}, nil
	}
	var found []identity.Peer
	for _, p := range known {
		if p.NickName == s {
			found = append(found, p)
		}
	}
	switch len(found) {
	case 0:
		return identity.Peer{}, errors.New("no peer of that name or nickname is known (give its peer name, as in weave status ipam)")
	case 1:
		return found[0], nil
	}
	return identity.Peer{}, errors.New("several peers have that nickname: give the peer name")
}

// Leave hands our address space to a reachable peer (weave reset).
func (n *node) Leave(ctx context.Context) (api.LeaveResponse, error) {
	if n.ipam == nil {
		return api.LeaveResponse{}, nil
	}
	heir, err := n.ipam.Leave(ctx)
	if err != nil || heir == 0 {
		return api.LeaveResponse{}, err
	}
	p, _ := n.peerByName(heir.String())
	return api.LeaveResponse{Heir: &p}, nil
}

// ipamStatus is the allocator's status with the peers' nicknames.
func (n *node) ipamStatus() *api.IPAM {
	if n.ipam == nil {
		return nil
	}
	st := n.ipam.Status()
	known := n.knownPeers()
	who := func(name identity.PeerName) identity.Peer {
		if p, ok := known[name]; ok {
			return p
		}
		return identity.Peer{Name: name}
	}
	out := &api.IPAM{
		Range: st.Range.String(), DefaultSubnet: st.DefaultSubnet.String(), State: st.State, Quorum: st.Quorum,
		Allocated: st.Allocated, Held: st.Held, Pending: st.Pending, Peers: []api.IPAMPeer{},
	}
	for _, s := range st.Seeds {
		out.Seeds = append(out.Seeds, who(s))
	}
	for _, s := range st.Participants {
		out.Participants = append(out.Participants, who(s))
	}
	for _, p := range st.Peers {
		out.Peers = append(out.Peers, api.IPAMPeer{Peer: who(p.Peer), Size: p.Size, Free: p.Free, Reachable: p.Reachable, Us: p.Us})
	}
	return out
}

// peerCache remembers the nicknames of peers the mesh has shown us, so that
// a peer that has gone (and left the topology) can still be named by its
// nickname, in rmpeer and status ipam.
type peerCache struct {
	mu sync.Mutex
	m  map[identity.PeerName]identity.Peer
}

// knownPeers returns every peer the mesh shows now or has shown.
func (n *node) knownPeers() map[identity.PeerName]identity.Peer {
	peers := n.mesh.Status().Peers
	n.peers.mu.Lock()
	defer n.peers.mu.Unlock()
	if n.peers.m == nil {
		n.peers.m = make(map[identity.PeerName]identity.Peer)
	}
	for _, p := range peers {
		n.peers.m[p.Name] = p.Peer
	}
	out := make(map[identity.PeerName]identity.Peer, len(n.peers.m))
	for k, v := range n.peers.m {
		out[k] = v
	}
	return out
}
