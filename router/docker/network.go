package docker

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/network"
)

// ErrNoContainer means a network endpoint has no container (yet): the
// Engine records the container once the endpoint has joined it.
var ErrNoContainer = errors.New("endpoint has no container")

// NetworkContainer returns the ID and name of the container that endpoint
// endpointID of network networkID belongs to, or an error wrapping
// ErrNoContainer while the Engine has not recorded one.
func (e *Engine) NetworkContainer(ctx context.Context, networkID, endpointID string) (id, name string, err error) {
	nw, err := e.cli.NetworkInspect(ctx, networkID, network.InspectOptions{})
	if err != nil {
		return "", "", e.wrap(ctx, "inspect network "+ShortID(networkID), err)
	}
	for cid, ep := range nw.Containers {
		if ep.EndpointID == endpointID && !strings.HasPrefix(cid, "ep-") {
			return cid, ep.Name, nil
		}
	}
	return "", "", fmt.Errorf("network %s, endpoint %s: %w", ShortID(networkID), ShortID(endpointID), ErrNoContainer)
}

// NetworkEndpoints is the Engine's record of one network: its name, the
// container each joined endpoint belongs to, and every endpoint it has.
type NetworkEndpoints struct {
	Name       string
	Containers map[string]string // endpoint ID -> full container ID
	// All holds the ID of every endpoint on the network, joined to a
	// container or not (created, not yet joined: the Engine lists those
	// under "ep-" keys).
	All map[string]bool
}

// NetworkEndpoints returns the Engine's record of network networkID (an
// error wrapping ErrNotFound when it has no such network). Endpoints
// whose container the Engine has not recorded yet are missing.
func (e *Engine) NetworkEndpoints(ctx context.Context, networkID string) (NetworkEndpoints, error) {
	nw, err := e.cli.NetworkInspect(ctx, networkID, network.InspectOptions{})
	if err != nil {
		return NetworkEndpoints{}, e.wrap(ctx, "inspect network "+ShortID(networkID), err)
	}
	out := NetworkEndpoints{Name: nw.Name, Containers: make(map[string]string, len(nw.Containers)), All: make(map[string]bool, len(nw.Containers))}
	for cid, ep := range nw.Containers {
		if ep.EndpointID == "" {
			continue
		}
		out.All[ep.EndpointID] = true
		// "ep-..." keys are the Engine's endpoints of no container:
		// created and not (yet) joined, or load balancers of swarm
		// services.
		if !strings.HasPrefix(cid, "ep-") {
			out.Containers[ep.EndpointID] = cid
		}
	}
	return out, nil
}

// NetworkInfo is the Engine's summary of one network.
type NetworkInfo struct {
	ID, Name, Driver string
	// Endpoints counts the network's endpoints (containers joined, and
	// endpoints created and not yet joined).
	Endpoints int
}

// EnsureNetwork creates the local network name with driver as its network
// and IPAM driver, unless a network of that name exists already, whatever
// its driver: then created is false and nw describes it, for the caller to
// check.
func (e *Engine) EnsureNetwork(ctx context.Context, name, driver string) (created bool, nw NetworkInfo, err error) {
	got, err := e.cli.NetworkInspect(ctx, name, network.InspectOptions{})
	if err == nil {
		return false, NetworkInfo{ID: got.ID, Name: got.Name, Driver: got.Driver, Endpoints: len(got.Containers)}, nil
	}
	if werr := e.wrap(ctx, "inspect network "+name, err); !errors.Is(werr, ErrNotFound) {
		return false, NetworkInfo{}, werr
	}
	resp, err := e.cli.NetworkCreate(ctx, name, network.CreateOptions{Driver: driver, IPAM: &network.IPAM{Driver: driver}})
	if err != nil {
		return false, NetworkInfo{}, e.wrap(ctx, "create network "+name, err)
	}
	return true, NetworkInfo{ID: resp.ID, Name: name, Driver: driver}, nil
}

// NetworksOf lists the networks whose driver is driver.
func (e *Engine) NetworksOf(ctx context.Context, driver string) ([]NetworkInfo, error) {
	list, err := e.cli.NetworkList(ctx, network.ListOptions{Filters: filters.NewArgs(filters.Arg("driver", driver))})
	if err != nil {
		return nil, e.wrap(ctx, "list networks", err)
	}
	out := make([]NetworkInfo, 0, len(list))
	for _, nw := range list {
		if nw.Driver != driver { // the filter matches by prefix
			continue
		}
		// The list leaves Containers empty: inspect each for its count.
		n := NetworkInfo{ID: nw.ID, Name: nw.Name, Driver: nw.Driver}
		if got, err := e.cli.NetworkInspect(ctx, nw.ID, network.InspectOptions{}); err == nil {
			n.Endpoints = len(got.Containers)
		}
		out = append(out, n)
	}
	return out, nil
}

// RemoveNetwork removes network id (name or ID).
func (e *Engine) RemoveNetwork(ctx context.Context, id string) error {
	if err := e.cli.NetworkRemove(ctx, id); err != nil {
		return e.wrap(ctx, "remove network "+id, err)
	}
	return nil
}
