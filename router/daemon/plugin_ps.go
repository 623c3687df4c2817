package daemon

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/weavelab/weave/router/api"
	"github.com/weavelab/weave/router/docker"
)

// `weave ps` lists the containers on the Docker plugin's networks too: an
// entry per joined endpoint, after those weave attached itself. A
// container attached by weave and also on a plugin network has an entry
// for each of its interfaces, under the same ID; the JSON tells them apart
// by Via and Network.

// pluginNetworks is the Engine's record of which container each endpoint
// of a network belongs to; *docker.Engine implements it.
type pluginNetworks interface {
	NetworkEndpoints(ctx context.Context, networkID string) (docker.NetworkEndpoints, error)
	// RemoveNetwork removes a network (weave reset).
	RemoveNetwork(ctx context.Context, id string) error
}

var _ pluginNetworks = (*docker.Engine)(nil)

// pluginPSTimeout bounds ps's questions to the Engine, so that an Engine
// that hangs does not hang ps (which lists weave's own containers without
// it).
const pluginPSTimeout = 5 * time.Second

// pluginPS returns the ps entries of the plugin's endpoints that are
// joined to a container, sorted by container ID and network name. The
// plugin knows an endpoint's sandbox, not its container: the Engine's
// record of each network (one inspect per network) says whose it is. An
// endpoint the Engine has no container for (joined this instant, or gone
// while the router was down) is left out, and so are all of a network's
// when the Engine does not answer for it, with a warning: ps still lists
// what weave attached.
func (n *node) pluginPS(ctx context.Context) []api.Container {
	srv := n.plugin.Load()
	if srv == nil || n.pluginNets == nil {
		return nil
	}
	eps := srv.Joined()
	if len(eps) == 0 {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, pluginPSTimeout)
	defer cancel()
	nets := map[string]docker.NetworkEndpoints{}
	var out []api.Container
	for _, ep := range eps {
		nw, ok := nets[ep.NetworkID]
		if !ok {
			var err error
			nw, err = n.pluginNets.NetworkEndpoints(ctx, ep.NetworkID)
			if err != nil && !errors.Is(err, docker.ErrNotFound) && ctx.Err() == nil {
				n.log.Warn("ps: docker does not say which containers are on a plugin network; leaving them out", "network", docker.ShortID(ep.NetworkID), "err", err)
			}
			nets[ep.NetworkID] = nw
		}
		id, ok := nw.Containers[ep.EndpointID]
		if !ok {
			continue
		}
		out = append(out, api.Container{ID: id, MAC: ep.MAC.String(), Addrs: []string{ep.Addr.String()}, Via: api.ViaPlugin, Network: nw.Name})
	}
	slices.SortStableFunc(out, func(a, b api.Container) int {
		return cmp.Or(cmp.Compare(a.ID, b.ID), cmp.Compare(a.Network, b.Network))
	})
	return out
}

// RemoveNetworks removes the plugin's networks from Docker while the
// plugin still answers Docker's calls (`weave reset` asks before it stops
// the router: with the router's state gone, nothing could serve them, and
// once the plugin is down Docker's removal waits on it). A network Docker
// refuses to remove (containers still on it) is reported, not an error.
func (n *node) RemoveNetworks(ctx context.Context) (api.RemoveNetworksResponse, error) {
	resp := api.RemoveNetworksResponse{Removed: []string{}}
	srv := n.plugin.Load()
	if srv == nil || n.pluginNets == nil {
		return resp, nil
	}
	for _, nw := range srv.Networks() {
		name := docker.ShortID(nw.ID)
		if info, err := n.pluginNets.NetworkEndpoints(ctx, nw.ID); err == nil && info.Name != "" {
			name = info.Name
		}
		switch err := n.pluginNets.RemoveNetwork(ctx, nw.ID); {
		case err == nil, errors.Is(err, docker.ErrNotFound):
			resp.Removed = append(resp.Removed, name)
			n.log.Info("docker plugin: removed network (weave reset)", "network", name)
		default:
			resp.Failed = append(resp.Failed, fmt.Sprintf("docker network %s: %v", name, err))
		}
	}
	return resp, nil
}
