package daemon

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/weavelab/weave/dns/table"
	"github.com/weavelab/weave/mesh"
	"github.com/weavelab/weave/router"
	"github.com/weavelab/weave/router/api"
	"github.com/weavelab/weave/router/docker"
	"github.com/weavelab/weave/router/netdev"
	"github.com/weavelab/weave/router/overlay"
	"github.com/weavelab/weave/router/plugin"
)

// The daemon's parts as the API needs them. The real ones are *mesh.Router,
// *router.Router and *overlay.Overlay; tests pass fakes.
type (
	// meshPart is the control plane.
	meshPart interface {
		Connect(peers []string, replace bool) error
		Forget(peers []string) error
		Targets() []string
		Status() mesh.Status
	}
	// netPart is the host's container network.
	netPart interface {
		AttachRef(ctx context.Context, ref netdev.ContainerRef, prefixes []netip.Prefix) ([]netip.Prefix, error)
		DetachRef(ctx context.Context, ref netdev.ContainerRef, pick func(netip.Prefix) bool, listed []netip.Prefix) ([]netip.Prefix, error)
		PSRefs(ctx context.Context, refs ...netdev.ContainerRef) ([]router.Attachment, error)
		Reconcile() error
		Gone(id string) error
		Expose(addrs []string) ([]netip.Prefix, error)
		Hide(addrs []string) error
		Exposed() ([]netip.Prefix, error)
	}
	// statsPart is the data plane's counters.
	statsPart interface {
		Stats() overlay.Stats
	}
)

var (
	_ meshPart  = (*mesh.Router)(nil)
	_ netPart   = (*router.Router)(nil)
	_ statsPart = (*overlay.Overlay)(nil)
)

// node implements Control over the daemon's parts and keeps the targets in
// the state dir in step with the mesh's.
type node struct {
	info  nodeInfo
	mesh  meshPart
	net   netPart
	stats statsPart
	state *State
	log   *slog.Logger
	// ipam allocates addresses; docker resolves Docker containers (nil
	// when there is no Docker client).
	ipam   ipamPart
	docker docker.Client
	gone   containers
	peers  peerCache
	// dns is weaveDNS (nil with --no-dns); noDNS holds the containers
	// attached with --without-dns.
	dns   dnsPart
	noDNS idSet
	// plugin is the Docker plugin once it serves (for status and ps);
	// pluginNets says which containers its endpoints belong to (nil: ps
	// leaves them out). pluginNets is set before the API serves.
	plugin     atomic.Pointer[plugin.Server]
	pluginNets pluginNetworks
	// bridgeMAC returns the bridge's MAC for ps's weave:expose line; nil
	// leaves it out.
	bridgeMAC func() string

	// mu serialises connect and forget so that the targets saved are
	// those of the last change.
	mu sync.Mutex
}

// nodeInfo is what status and report show about the daemon itself.
type nodeInfo struct {
	Version    string
	PID        int
	Port       int
	Discovery  bool
	Encryption bool
	Salt       string         // api.SaltNetwork or api.SaltDefault when Encryption
	Cipher     string         // the data-plane cipher policy (auto, aes-gcm, nacl)
	Config     map[string]any // the effective configuration, for report
}

var _ Control = (*node)(nil)

// ExposeID is the ps entry of the host's own addresses (weave expose).
const ExposeID = api.ExposeID

func (n *node) Connect(ctx context.Context, peers []string, replace bool) error {
	peers, err := ParsePeers(peers)
	if err != nil {
		return err
	}
	if len(peers) == 0 && !replace {
		return fmt.Errorf("connect: no peers given")
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if err := n.mesh.Connect(peers, replace); err != nil {
		return fmt.Errorf("connect: %w", err)
	}
	n.log.Info("connect", "peers", peers, "replace", replace)
	return n.saveTargetsLocked()
}

func (n *node) Forget(ctx context.Context, peers []string) error {
	peers, err := ParsePeers(peers)
	if err != nil {
		return err
	}
	if len(peers) == 0 {
		return fmt.Errorf("forget: no peers given")
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if err := n.mesh.Forget(peers); err != nil {
		return fmt.Errorf("forget: %w", err)
	}
	n.log.Info("forget", "peers", peers)
	return n.saveTargetsLocked()
}

func (n *node) saveTargetsLocked() error {
	if n.state == nil {
		return nil
	}
	return n.state.SetTargets(n.mesh.Targets())
}

// Expose gives the host addresses on the network: static ones, or (with
// no ADDR, net:default or net:CIDR) ones allocated by IPAM, as in Weave.
func (n *node) Expose(ctx context.Context, addrs []string) ([]string, error) {
	specs, err := router.ParseAddrSpecs(addrs)
	if err != nil {
		return nil, fmt.Errorf("expose: %w", err)
	}
	prefixes, undo, err := n.obtain(ctx, ExposeID, specs)
	if err != nil {
		return nil, fmt.Errorf("expose: %w", err)
	}
	got, err := n.net.Expose(prefixStrings(prefixes))
	if err != nil {
		undo()
		return nil, err
	}
	return prefixStrings(got), nil
}

// Hide removes the host's addresses (all when none given), frees those
// IPAM gave it and drops their names.
func (n *node) Hide(ctx context.Context, addrs []string) error {
	before, _ := n.net.Exposed()
	if err := n.net.Hide(addrs); err != nil {
		return err
	}
	after, _ := n.net.Exposed()
	var gone []netip.Addr
	for _, p := range before {
		if !slices.Contains(after, p) {
			gone = append(gone, p.Addr())
		}
	}
	if len(gone) == 0 {
		return nil
	}
	if n.ipam != nil {
		n.ipam.Release(ExposeID, gone...)
	}
	if n.dns != nil {
		n.dns.Remove(table.Match{Container: ExposeID, Addrs: gone})
	}
	return nil
}

func (n *node) Status(ctx context.Context) (api.Status, error) {
	var st overlay.Stats
	if n.stats != nil {
		st = n.stats.Stats()
	}
	out := buildStatus(n.info, n.mesh.Status(), st)
	out.IPAM = n.ipamStatus()
	out.DNS = n.dnsStatus()
	if p := n.plugin.Load(); p != nil {
		out.Plugin = &api.Plugin{Name: p.Name(), Socket: p.SocketPath(), Networks: len(p.Networks()), Endpoints: len(p.Endpoints())}
	}
	return out, nil
}

func (n *node) Report(ctx context.Context) (api.Report, error) {
	status, err := n.Status(ctx)
	if err != nil {
		return api.Report{}, err
	}
	rep := api.Report{Status: status, Config: n.info.Config}
	as, err := n.net.PSRefs(ctx)
	if err != nil {
		return api.Report{}, err
	}
	rep.Containers = []api.Container{}
	for _, a := range as {
		rep.Containers = append(rep.Containers, api.Container{ID: a.ID, MAC: a.MAC, Addrs: prefixStrings(a.Addrs)})
	}
	exposed, err := n.net.Exposed()
	if err != nil {
		return api.Report{}, err
	}
	rep.Exposed = prefixStrings(exposed)
	if n.stats != nil {
		rep.DataPlane = n.stats.Stats()
	}
	return rep, nil
}

func prefixStrings(ps []netip.Prefix) []string {
	out := make([]string, len(ps))
	for i, p := range ps {
		out[i] = p.String()
	}
	return out
}
