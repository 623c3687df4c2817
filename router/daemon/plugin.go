package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/weavelab/weave/dns/table"
	"github.com/weavelab/weave/router"
	"github.com/weavelab/weave/router/docker"
	"github.com/weavelab/weave/router/plugin"
)

// The Docker network and IPAM plugin: the daemon gives the plugin server
// the router's bridge (pluginLinks) and IPAM, registers the DNS names of
// containers that join its networks (pluginObserver), and creates the
// default network at launch.

// pluginStateFile keeps the plugin's networks and endpoints in the state dir.
const pluginStateFile = "docker-plugin.json"

// Timings of the plugin's side work.
const (
	// pluginJoinWait bounds the wait for the Engine to move a joined
	// endpoint's interface and to record its container.
	pluginJoinWait = 30 * time.Second
	// defaultNetworkRetry is the first wait between attempts at creating
	// the default network while the Engine is not there; it doubles up to
	// a minute.
	defaultNetworkRetry = time.Second
)

// newPlugin makes the plugin server, which loads its state file: the
// daemon makes it before weaveDNS forgets the names of containers that
// went while the router was down, so that those of the plugin's joined
// endpoints stay (see dnsForgetDead). Nil, with a warning, when it
// cannot: the router works without the plugin.
func newPlugin(cfg Config, n *node, rt *router.Router, eng *docker.Engine, log *slog.Logger) *plugin.Server {
	pcfg := plugin.DefaultConfig()
	pcfg.Name = cfg.PluginName
	if cfg.PluginDir != "" {
		pcfg.Dir = cfg.PluginDir
	}
	if n.ipam != nil {
		pcfg.IPAM = pluginIPAM{n.ipam}
	}
	pcfg.Links = pluginLinks{rt}
	pcfg.Observer = &pluginObserver{n: n, rt: rt, eng: eng, log: log}
	pcfg.Engine = pluginEngine{eng}
	if n.dns != nil {
		pcfg.ServiceAddr = rt.ServiceAddr()
	}
	pcfg.StateFile = filepath.Join(cfg.StateDir, pluginStateFile)
	pcfg.Logger = log
	srv, err := plugin.New(pcfg)
	if err != nil {
		log.Warn("docker plugin: not started", "err", err)
		return nil
	}
	return srv
}

// startPlugin serves srv on the Engine's plugin socket and, unless
// --no-default-network, creates the default network; wg waits for both.
// Failing to listen is a warning: the router works without the plugin.
func startPlugin(ctx context.Context, cfg Config, n *node, srv *plugin.Server, eng *docker.Engine, wg *sync.WaitGroup, log *slog.Logger) {
	if err := srv.Listen(); err != nil {
		log.Warn("docker plugin: not started", "err", err)
		srv.Close()
		return
	}
	n.plugin.Store(srv)
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer n.plugin.Store(nil)
		if err := srv.Serve(ctx); err != nil {
			log.Warn("docker plugin stopped", "err", err)
		}
	}()
	if !cfg.NoDefaultNetwork {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ensureDefaultNetwork(ctx, eng, cfg.PluginName, srv.Knows, log)
		}()
	}
}

// DefaultNetwork is the Docker network the router creates at launch.
const DefaultNetwork = "weave"

// ensureDefaultNetwork creates the Docker network `weave` on the plugin,
// retrying while the Engine is unreachable, until it exists or ctx ends.
// known says whether the plugin holds a record of a network ID: a default
// network of an earlier router whose state is gone (`weave reset`, or the
// state dir removed) is unusable, so it is made again when no container
// is on it. Then it warns about any other network of the plugin's that the
// plugin has no record of.
func ensureDefaultNetwork(ctx context.Context, eng *docker.Engine, driver string, known func(networkID string) bool, log *slog.Logger) {
	wait := defaultNetworkRetry
	for {
		cctx, cancel := context.WithTimeout(ctx, time.Minute)
		created, nw, err := eng.EnsureNetwork(cctx, DefaultNetwork, driver)
		if err == nil && !created && nw.Driver == driver && !known(nw.ID) && nw.Endpoints == 0 {
			// Docker's record of a network this plugin does not know:
			// remove it (the plugin answers for it meanwhile) and make
			// it again.
			if err := eng.RemoveNetwork(cctx, nw.ID); err != nil {
				cancel()
				log.Warn("docker plugin: the default network is one this router has no record of (weave reset, or the state dir removed) and removing it failed; `docker network rm "+DefaultNetwork+"` and relaunch", "err", err)
				return
			}
			created, nw, err = eng.EnsureNetwork(cctx, DefaultNetwork, driver)
			if err == nil && created {
				log.Info("docker plugin: made the default network again: the router's record of it was gone (weave reset, or the state dir removed)", "network", DefaultNetwork)
			}
		}
		cancel()
		switch {
		case err == nil && created:
			log.Info("docker plugin: created the default network", "network", DefaultNetwork, "driver", driver)
		case err == nil && nw.Driver != driver:
			log.Warn("docker plugin: a network named "+DefaultNetwork+" exists with another driver; not creating the default network", "driver", nw.Driver)
		case err == nil && !known(nw.ID):
			log.Warn("docker plugin: the default network has containers but this router has no record of it (weave reset, or the state dir removed); disconnect them, then `docker network rm "+DefaultNetwork+"` and relaunch", "network", DefaultNetwork, "endpoints", nw.Endpoints)
		case err == nil:
			log.Info("docker plugin: the default network exists", "network", DefaultNetwork)
		case ctx.Err() != nil:
			return
		case errors.Is(err, docker.ErrUnavailable):
			log.Debug("docker plugin: default network: docker not there yet", "err", err)
		default:
			log.Warn("docker plugin: cannot create the default network; retrying", "err", err)
		}
		if err == nil {
			warnUnknownNetworks(ctx, eng, driver, known, log)
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		wait = min(2*wait, time.Minute)
	}
}

// warnUnknownNetworks warns about each Docker network of the plugin's
// driver that the plugin holds no record of: Docker's calls for it fail
// until it is made again.
func warnUnknownNetworks(ctx context.Context, eng *docker.Engine, driver string, known func(string) bool, log *slog.Logger) {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	nws, err := eng.NetworksOf(ctx, driver)
	if err != nil {
		log.Debug("docker plugin: cannot list the plugin's networks", "err", err)
		return
	}
	for _, nw := range nws {
		if !known(nw.ID) {
			log.Warn("docker plugin: a network of this plugin that the router has no record of (weave reset, or the state dir removed); containers cannot join it until it is removed and created again", "network", nw.Name, "endpoints", nw.Endpoints)
		}
	}
}

// pluginIPAM is the router's allocator as the plugin needs it.
type pluginIPAM struct{ ipamPart }

var _ plugin.IPAM = pluginIPAM{}

// Owner returns the id that holds ip here, or "".
func (p pluginIPAM) Owner(ip netip.Addr) string {
	for _, a := range p.Allocs() {
		if a.Addr == ip {
			return a.ID
		}
	}
	return ""
}

// pluginEngine is the Engine's record of networks as the plugin checks
// its restored endpoints against it.
type pluginEngine struct{ nets pluginNetworks }

var _ plugin.Engine = pluginEngine{}

// NetworkEndpoints returns every endpoint the Engine has on network id;
// its not-found answer is plugin.ErrNoNetwork.
func (e pluginEngine) NetworkEndpoints(ctx context.Context, id string) (map[string]bool, error) {
	nw, err := e.nets.NetworkEndpoints(ctx, id)
	if errors.Is(err, docker.ErrNotFound) {
		return nil, fmt.Errorf("%w: %w", plugin.ErrNoNetwork, err)
	}
	if err != nil {
		return nil, err
	}
	return nw.All, nil
}

// pluginLinks makes the plugin's endpoints on the router's bridge.
type pluginLinks struct{ rt *router.Router }

var _ plugin.Links = pluginLinks{}

func (l pluginLinks) CreateLink(id string, addr netip.Prefix, mac net.HardwareAddr) (plugin.Link, error) {
	e, err := l.rt.CreateEndpoint(id, addr, mac)
	return plugin.Link{Host: e.Host, Peer: e.Peer, MAC: e.MAC}, err
}

func (l pluginLinks) DeleteLink(id string, addr netip.Prefix) error {
	return l.rt.DeleteEndpoint(id, addr)
}

// pluginObserver gives joined containers the way to weaveDNS and
// registers their names: the container's name and its hostname when that
// is in the domain, under the container's ID.
type pluginObserver struct {
	n   *node
	rt  *router.Router
	eng *docker.Engine
	log *slog.Logger

	mu         sync.Mutex
	containers map[string]string // endpoint ID -> container ID, once registered
}

var _ plugin.Observer = (*pluginObserver)(nil)

func (o *pluginObserver) Joined(ctx context.Context, ep plugin.Endpoint) {
	log := o.log.With("endpoint", docker.ShortID(ep.EndpointID), "addr", ep.Addr)
	if o.n.dns == nil {
		return // no weaveDNS: neither a name nor a way to it
	}
	c, err := o.joinedContainer(ctx, ep)
	if err != nil {
		if ctx.Err() == nil {
			log.Warn("docker plugin: cannot find the endpoint's container; no DNS name", "err", err)
		}
		return
	}
	log = log.With("container", docker.ShortID(c.ID))
	// The container's namespace by its process: the sandbox's path is a
	// mount that the Engine keeps private to its own mount namespace.
	ns := ep.Sandbox
	if p, err := c.NetnsPath(); err == nil {
		ns = p
	}
	if err := o.rt.EndpointJoined(ns, ep.MAC, pluginJoinWait); err != nil && ctx.Err() == nil {
		log.Warn("docker plugin: no way to weaveDNS for the container", "err", err)
	}
	names := []string{c.Name + "." + strings.TrimSuffix(o.n.dns.Domain(), ".") + "."}
	if fqdn := c.FQDN(); fqdn != "" && o.n.dns.InDomain(fqdn) {
		names = append(names, fqdn)
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	if ctx.Err() != nil {
		return // left meanwhile
	}
	if o.containers == nil {
		o.containers = make(map[string]string)
	}
	o.containers[ep.EndpointID] = c.ID
	seen := map[string]bool{}
	for _, fqdn := range names {
		key := strings.ToLower(strings.TrimSuffix(fqdn, "."))
		if seen[key] {
			continue
		}
		seen[key] = true
		if _, err := o.n.dns.Add(c.ID, fqdn, []netip.Addr{ep.Addr.Addr()}); err != nil {
			log.Warn("weaveDNS: cannot register container", "name", fqdn, "err", err)
			continue
		}
		log.Info("weaveDNS: registered", "name", fqdn)
	}
}

// joinedContainer waits for the Engine to record the container of a
// joined endpoint and for it to run (the Engine joins networks before it
// starts the container's process), up to pluginJoinWait.
func (o *pluginObserver) joinedContainer(ctx context.Context, ep plugin.Endpoint) (docker.Container, error) {
	ctx, cancel := context.WithTimeout(ctx, pluginJoinWait)
	defer cancel()
	for {
		id, _, err := o.eng.NetworkContainer(ctx, ep.NetworkID, ep.EndpointID)
		if err == nil {
			var c docker.Container
			if c, err = o.n.docker.Inspect(ctx, id); err == nil && c.Running {
				return c, nil
			} else if err == nil {
				err = fmt.Errorf("container %s: %w", docker.ShortID(id), docker.ErrNotRunning)
			}
		}
		select {
		case <-ctx.Done():
			return docker.Container{}, err
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func (o *pluginObserver) Left(ep plugin.Endpoint) {
	o.mu.Lock()
	id := o.containers[ep.EndpointID]
	delete(o.containers, ep.EndpointID)
	o.mu.Unlock()
	if o.n.dns == nil {
		return
	}
	m := table.Match{Container: id, Addrs: []netip.Addr{ep.Addr.Addr()}}
	if es, err := o.n.dns.Remove(m); err != nil {
		o.log.Warn("weaveDNS: cannot remove an endpoint's names", "endpoint", docker.ShortID(ep.EndpointID), "err", err)
	} else if len(es) > 0 {
		o.log.Info("weaveDNS: removed", "container", docker.ShortID(id), "addr", ep.Addr.Addr(), "names", len(es))
	}
}
