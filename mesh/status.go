package mesh

import (
	"slices"
	"time"

	"github.com/weavelab/weave/mesh/identity"
	"github.com/weavelab/weave/mesh/topology"
)

// Connection states as Status reports them.
const (
	StateConnecting  = "connecting"  // dialling
	StateHandshake   = "handshake"   // TCP up; handshake or data path pending
	StateEstablished = "established" // the overlay says the data path works
	StateFailed      = "failed"      // the last attempt failed (see Reason)
	// StateSelf: a target that turned out to be this router's own
	// address; listed once, never dialled again (see TargetSelf).
	StateSelf = "self"
)

// Target states as Status reports them.
const (
	TargetConnecting = "connecting" // an attempt is under way
	TargetConnected  = "connected"  // we have a connection to its peer
	TargetWaiting    = "waiting"    // backing off until NextTry
	// TargetSelf: the address reached this router itself (the same peer
	// list given to every host includes our own address); it is not
	// dialled again.
	TargetSelf = "self"
)

// Status is a snapshot of the router for `weave status` and `weave report`.
type Status struct {
	Peer        identity.Peer      `json:"peer"`
	Encryption  bool               `json:"encryption"`
	Discovery   bool               `json:"discovery"`
	Port        int                `json:"port"`
	Peers       []PeerStatus       `json:"peers"`
	Connections []ConnectionStatus `json:"connections"`
	Targets     []TargetStatus     `json:"targets"`
}

// PeerStatus is one peer as our topology knows it.
type PeerStatus struct {
	identity.Peer
	Version uint64          `json:"version"`
	Conns   []topology.Conn `json:"conns"`
}

// ConnectionStatus is one of our connections, or a recent failed attempt.
type ConnectionStatus struct {
	Peer     identity.Peer `json:"peer"` // zero until the handshake says who it is
	Addr     string        `json:"addr"`
	Outbound bool          `json:"outbound"`
	State    string        `json:"state"`
	Reason   string        `json:"reason,omitempty"`
	Since    time.Time     `json:"since,omitzero"`
	// Cipher is the data-plane cipher suite of an encrypted connection.
	Cipher string `json:"cipher,omitempty"`
}

// TargetStatus is an address the router keeps connecting to.
type TargetStatus struct {
	Addr       string    `json:"addr"`
	Discovered bool      `json:"discovered,omitempty"` // learnt by gossip, not given by Connect
	State      string    `json:"state"`
	Attempts   int       `json:"attempts,omitempty"`
	LastError  string    `json:"last_error,omitempty"`
	NextTry    time.Time `json:"next_try,omitzero"`
}

// maxFailed bounds the failed attempts that Status remembers.
const maxFailed = 32

// Status returns a snapshot of the router. It returns the zero Status with
// only our identity once the router is closed or before Start.
func (r *Router) Status() Status {
	st := Status{
		Peer:       r.cfg.Peer,
		Encryption: r.cfg.PSK != nil,
		Discovery:  !r.cfg.NoDiscovery,
		Port:       r.cfg.Port,
	}
	r.call(func() {
		st.Port = r.port
		for _, p := range r.topo.Peers() {
			st.Peers = append(st.Peers, PeerStatus{Peer: p.Peer, Version: p.Version, Conns: p.Conns})
		}
		for c := range r.attempts {
			st.Connections = append(st.Connections, c.status())
		}
		st.Connections = append(st.Connections, r.failed...)
		for _, t := range r.targets {
			st.Targets = append(st.Targets, t.status(r))
			if t.self {
				st.Connections = append(st.Connections, ConnectionStatus{
					Peer: r.cfg.Peer, Addr: t.addr, Outbound: true, State: StateSelf,
					Reason: "this router's own address; not dialled again",
				})
			}
		}
	})
	slices.SortFunc(st.Connections, func(a, b ConnectionStatus) int {
		if a.Peer.Name != b.Peer.Name {
			if a.Peer.Name < b.Peer.Name {
				return -1
			}
			return 1
		}
		return a.Since.Compare(b.Since)
	})
	slices.SortFunc(st.Targets, func(a, b TargetStatus) int {
		switch {
		case a.Addr < b.Addr:
			return -1
		case a.Addr > b.Addr:
			return 1
		}
		return 0
	})
	return st
}
