package daemon

import (
	"maps"
	"slices"

	"github.com/weavelab/weave/mesh"
	"github.com/weavelab/weave/mesh/handshake"
	"github.com/weavelab/weave/mesh/identity"
	"github.com/weavelab/weave/router/api"
	"github.com/weavelab/weave/router/overlay"
)

// buildStatus merges the mesh's status and the data plane's counters into
// the API's status: peers sorted with us first, nicknames filled in for
// their connections, and each of our connections carrying the counters
// (and, while it is not established, the data plane's reason) of its peer.
func buildStatus(info nodeInfo, ms mesh.Status, ds overlay.Stats) api.Status {
	st := api.Status{
		Version:     info.Version,
		PID:         info.PID,
		Peer:        ms.Peer,
		Encryption:  ms.Encryption,
		Salt:        info.Salt,
		Cipher:      info.Cipher,
		HardwareAES: handshake.HardwareAES(),
		Discovery:   ms.Discovery,
		Port:        ms.Port,
		MTU:         ds.ContainerMTU,
		Peers:       []api.Peer{},
		Connections: []api.Connection{},
		Targets:     []api.Target{},
	}
	known := map[identity.PeerName]identity.Peer{}
	for _, p := range ms.Peers {
		known[p.Name] = p.Peer
	}
	lookup := func(n identity.PeerName) identity.Peer {
		if p, ok := known[n]; ok {
			return p
		}
		return identity.Peer{Name: n}
	}
	for _, p := range ms.Peers {
		ap := api.Peer{Peer: p.Peer, Version: p.Version, Conns: []api.PeerConn{}}
		for _, c := range p.Conns {
			ap.Conns = append(ap.Conns, api.PeerConn{
				Remote: lookup(c.Remote), Addr: c.RemoteAddr, Outbound: c.Outbound, Established: c.Established,
			})
		}
		st.Peers = append(st.Peers, ap)
	}
	slices.SortStableFunc(st.Peers, func(a, b api.Peer) int {
		switch {
		case a.Name == b.Name:
			return 0
		case a.Name == ms.Peer.Name:
			return -1
		case b.Name == ms.Peer.Name:
			return 1
		case a.Name < b.Name:
			return -1
		}
		return 1
	})

	byPeer := map[identity.PeerName]overlay.PeerStats{}
	for _, ps := range ds.Peers {
		byPeer[ps.Peer] = ps
	}
	for _, c := range latestAttempts(ms.Connections) {
		ac := api.Connection{
			Addr: c.Addr, Outbound: c.Outbound, State: c.State, Reason: c.Reason, Since: c.Since,
			Cipher: c.Cipher,
		}
		if c.Peer.Name != identity.UnknownPeer {
			p := c.Peer
			if k, ok := known[p.Name]; ok && p.NickName == "" {
				p.NickName = k.NickName
			}
			ac.Peer = &p
			if ps, ok := byPeer[c.Peer.Name]; ok && c.State != mesh.StateFailed {
				s := peerStats(ps)
				ac.Stats = &s
				ac.Path, ac.PathReason = ps.Path, ps.PathReason
				if ac.Reason == "" && c.State != mesh.StateEstablished && ps.Reason != "" {
					ac.Reason = ps.Reason
				}
			}
		}
		st.Connections = append(st.Connections, ac)
	}
	for _, t := range ms.Targets {
		at := api.Target{Addr: t.Addr, State: t.State, Attempts: t.Attempts, LastError: t.LastError, NextTry: t.NextTry}
		if t.Discovered {
			st.Discovered = append(st.Discovered, at)
		} else {
			st.Targets = append(st.Targets, at)
		}
	}
	return st
}

// latestAttempts drops failed attempts that a later attempt to the same
// address (or a live connection there) supersedes, so that status shows
// one line per address and the most recent reason. Order is kept.
func latestAttempts(conns []mesh.ConnectionStatus) []mesh.ConnectionStatus {
	type key struct {
		outbound bool
		addr     string
	}
	live := map[key]bool{}
	latest := map[key]int{}
	for i, c := range conns {
		k := key{c.Outbound, c.Addr}
		if c.State != mesh.StateFailed {
			live[k] = true
			continue
		}
		if j, ok := latest[k]; !ok || !c.Since.Before(conns[j].Since) {
			latest[k] = i
		}
	}
	out := make([]mesh.ConnectionStatus, 0, len(conns))
	for i, c := range conns {
		k := key{c.Outbound, c.Addr}
		if c.State == mesh.StateFailed && (live[k] || latest[k] != i) {
			continue
		}
		out = append(out, c)
	}
	return out
}

func peerStats(ps overlay.PeerStats) api.PeerStats {
	out := api.PeerStats{
		FramesIn: ps.FramesIn, FramesOut: ps.FramesOut, BytesIn: ps.BytesIn, BytesOut: ps.BytesOut,
		PMTU: ps.PMTU,
	}
	if len(ps.Drops) > 0 {
		out.Drops = maps.Clone(ps.Drops)
	}
	return out
}
