package docker

import (
	"context"
	"errors"
	"fmt"
	"strings"

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

// EnsureNetwork creates the local network name with driver as its network
// and IPAM driver, unless a network of that name exists already (whatever
// its driver: created is false and the caller may check).
func (e *Engine) EnsureNetwork(ctx context.Context, name, driver string) (created bool, existingDriver string, err error) {
	nw, err := e.cli.NetworkInspect(ctx, name, network.InspectOptions{})
	if err == nil {
		return false, nw.Driver, nil
	}
	if werr := e.wrap(ctx, "inspect network "+name, err); !errors.Is(werr, ErrNotFound) {
		return false, "", werr
	}
	_, err = e.cli.NetworkCreate(ctx, name, network.CreateOptions{Driver: driver, IPAM: &network.IPAM{Driver: driver}})
	if err != nil {
		return false, "", e.wrap(ctx, "create network "+name, err)
	}
	return true, driver, nil
}
