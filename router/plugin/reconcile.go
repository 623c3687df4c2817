package plugin

import (
	"context"
	"errors"
	"slices"
	"time"
)

// Checking the records of the state file against the Engine. While the
// router is down the Engine cannot reach the plugin: the Leave,
// DeleteEndpoint, ReleaseAddress and DeleteNetwork calls of containers and
// networks removed meanwhile fail, and the Engine does not make them
// again. So once Serve starts, the Server asks the Engine about each
// network it loaded and drops what the Engine no longer has: the
// endpoint's record, its Observer.Joined (and Left, for its names), its
// veth and its address; the network's record once none of its endpoints
// are left.
//
// Only a positive answer drops anything: the Engine says it has no such
// network, or lists the network's endpoints without this one (the list
// holds every endpoint, joined or not). An Engine that does not answer,
// or answers with another error, is asked again with backoff for
// Config.EngineRetryFor; until it answers, and after that if it never
// does, the records are kept.
//
// Only records loaded from the state file are ever dropped, and only
// while they are still the record loaded (the same pointer, under s.mu):
// the Engine stores an endpoint only after the driver's CreateEndpoint
// has returned, so a list it sends while it creates one may well lack
// it. An endpoint created since the start is never a candidate; one the
// Engine deletes while the check runs is dropped once, by whichever comes
// first, and its address is released by its own IPAM id (Endpoint.AllocID)
// so that an address the Engine released and someone else got meanwhile
// stays theirs.

// engineTimeout bounds each question to the Engine.
const engineTimeout = 10 * time.Second

// startCheck starts checkRestored on a goroutine of the Server's, when
// there is an Engine to ask and something to ask about.
func (s *Server) startCheck() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cfg.Engine == nil || s.ctx.Err() != nil || len(s.restoredNets) == 0 && len(s.restoredEps) == 0 {
		return
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		s.checkRestored(s.ctx)
	}()
}

// checkRestored asks the Engine about every network of the state file
// until each has had an answer, ctx ends or EngineRetryFor has passed.
func (s *Server) checkRestored(ctx context.Context) {
	start := time.Now()
	wait := s.cfg.EngineRetry
	for attempt := 1; ; attempt++ {
		var lastErr error
		for _, id := range s.pendingNetworks() {
			cctx, cancel := context.WithTimeout(ctx, engineTimeout)
			eps, err := s.cfg.Engine.NetworkEndpoints(cctx, id)
			cancel()
			switch {
			case err == nil:
				s.dropGone(id, eps, false)
			case errors.Is(err, ErrNoNetwork):
				s.dropGone(id, nil, true)
			case ctx.Err() != nil:
				return
			default:
				lastErr = err
			}
		}
		if lastErr == nil {
			return
		}
		if time.Since(start)+wait > s.cfg.EngineRetryFor {
			s.log.Warn("docker plugin: docker does not say which networks and endpoints from before the restart it still has; keeping them", "err", lastErr)
			s.mu.Lock()
			clear(s.restoredNets)
			clear(s.restoredEps)
			s.mu.Unlock()
			return
		}
		if attempt == 1 {
			s.log.Info("docker plugin: cannot ask docker which networks and endpoints from before the restart it still has; retrying", "err", lastErr)
		} else {
			s.log.Debug("docker plugin: asking docker again", "err", lastErr, "attempt", attempt)
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		wait = min(2*wait, s.cfg.EngineRetryMax)
	}
}

// pendingNetworks returns the IDs of the networks that restored records
// are on, sorted.
func (s *Server) pendingNetworks() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var ids []string
	for id := range s.restoredNets {
		ids = append(ids, id)
	}
	for _, ep := range s.restoredEps {
		ids = append(ids, ep.NetworkID)
	}
	slices.Sort(ids)
	return slices.Compact(ids)
}

// dropGone settles the restored records of network nid on the Engine's
// answer: has holds the endpoints it has there, or networkGone says it
// has no such network. Restored endpoints it lacks are dropped, and so is
// the network when it is gone and nothing is left on it.
func (s *Server) dropGone(nid string, has map[string]bool, networkGone bool) {
	type dropped struct {
		ep   Endpoint
		join *join
	}
	var gone []dropped
	s.mu.Lock()
	for id, ep := range s.restoredEps {
		if ep.NetworkID != nid {
			continue
		}
		delete(s.restoredEps, id)
		if s.endpoints[id] != ep || !networkGone && has[id] {
			continue // deleted by the Engine meanwhile, or still there
		}
		delete(s.endpoints, id)
		d := dropped{ep: *ep, join: s.joins[id]}
		delete(s.joins, id)
		gone = append(gone, d)
	}
	dropNet := false
	if nw := s.restoredNets[nid]; nw != nil {
		delete(s.restoredNets, nid)
		dropNet = networkGone && s.networks[nid] == nw && !s.hasEndpointsLocked(nid)
		if dropNet {
			delete(s.networks, nid)
		}
	}
	if len(gone) > 0 || dropNet {
		if err := s.saveLocked(); err != nil {
			s.log.Warn("save plugin state", "err", err)
		}
	}
	s.mu.Unlock()

	for _, d := range gone {
		s.dropEndpoint(d.ep, d.join)
	}
	if dropNet {
		s.log.Info("docker plugin: network removed from docker while the router was down; dropped it", "network", short(nid))
	}
}

// hasEndpointsLocked says whether any endpoint is on network nid. s.mu
// must be held.
func (s *Server) hasEndpointsLocked(nid string) bool {
	for _, ep := range s.endpoints {
		if ep.NetworkID == nid {
			return true
		}
	}
	return false
}

// dropEndpoint undoes what the Engine would have had the plugin undo for
// an endpoint that is gone, whose record is removed already: its
// Observer.Joined ends (j, if running) and Left is told, its veth goes
// and its address returns to IPAM.
func (s *Server) dropEndpoint(ep Endpoint, j *join) {
	if j != nil {
		j.cancel()
		<-j.done
	}
	if ep.Sandbox != "" && s.cfg.Observer != nil {
		s.cfg.Observer.Left(ep)
	}
	if err := s.cfg.Links.DeleteLink(ep.EndpointID, ep.Addr); err != nil {
		s.log.Warn("docker plugin: cannot delete a gone endpoint's veth", "endpoint", short(ep.EndpointID), "veth", ep.Link.Host, "err", err)
	}
	released := false
	if s.cfg.IPAM != nil {
		id := ep.AllocID
		if id == "" { // a state file from before AllocID
			id = s.allocID(ep.Addr.Addr())
		}
		released = id != "" && len(s.cfg.IPAM.Release(id, ep.Addr.Addr())) > 0
	}
	s.log.Info("docker plugin: endpoint removed from docker while the router was down; dropped it",
		"network", short(ep.NetworkID), "endpoint", short(ep.EndpointID), "addr", ep.Addr, "veth", ep.Link.Host,
		"joined", ep.Sandbox != "", "address_released", released)
}
