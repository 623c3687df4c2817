package ipam

import (
	"net/netip"
	"slices"

	"github.com/weavelab/weave/mesh/identity"
)

// Status is the allocator's state as `weave status ipam` shows it.
type Status struct {
	Range         netip.Prefix `json:"range"`
	DefaultSubnet netip.Prefix `json:"default_subnet"`
	// State is "ready" (the ring is seeded), "idle" (no ring, and nobody
	// asked for an address yet), "awaiting consensus" or "observer".
	State        string              `json:"state"`
	Quorum       int                 `json:"quorum"`
	Seeds        []identity.PeerName `json:"seeds,omitempty"`
	Participants []identity.PeerName `json:"participants,omitempty"` // of the consensus, before the ring is seeded
	Peers        []PeerShare         `json:"peers"`
	// Allocated counts our live allocations, Held those of dead
	// containers waiting out the grace period, Pending the requests
	// waiting for space.
	Allocated int `json:"allocated"`
	Held      int `json:"held"`
	Pending   int `json:"pending"`
}

// PeerShare is one peer's part of the ring.
type PeerShare struct {
	Peer      identity.PeerName `json:"peer"`
	Size      uint64            `json:"size"`
	Free      uint64            `json:"free"`
	Reachable bool              `json:"reachable"`
	Us        bool              `json:"us,omitempty"`
}

// Status summarises the Core (Pending and DefaultSubnet are the caller's).
func (c *Core) Status() Status {
	st := Status{Range: c.cfg.Range.Masked(), Quorum: c.cons.quorum, Seeds: slices.Clone(c.ring.Seeds), Peers: []PeerShare{}}
	switch {
	case c.ring.Seeded():
		st.State = "ready"
	case c.cfg.Observer:
		st.State = "observer"
	case c.cons.active():
		st.State = "awaiting consensus"
		st.Participants = c.cons.participants()
	default:
		st.State = "idle"
	}
	for p, sh := range c.ring.Shares() {
		us := p == c.cfg.Us
		st.Peers = append(st.Peers, PeerShare{Peer: p, Size: sh.Size, Free: sh.Free, Reachable: us || c.cfg.Reachable(p), Us: us})
	}
	slices.SortFunc(st.Peers, func(a, b PeerShare) int {
		switch {
		case a.Peer < b.Peer:
			return -1
		case a.Peer > b.Peer:
			return 1
		}
		return 0
	})
	for _, a := range c.allocs {
		if a.ReleaseAt.IsZero() {
			st.Allocated++
		} else {
			st.Held++
		}
	}
	return st
}
