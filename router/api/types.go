// Package api owns the contract between the weave CLI and the router daemon:
// the JSON request and response types of the HTTP API that the daemon serves
// on its Unix socket, a client for it, and the text forms of the status
// documents that `weave status` prints.
//
// Endpoints (JSON bodies; errors are {"error": "one line"} with a 4xx):
//
//	GET  /version                      Version
//	GET  /status                       Status
//	GET  /status/{peers|connections|targets}  that section of Status
//	GET  /report                       Report
//	GET  /ps[?container=C...]          []Container
//	POST /connect  ConnectRequest      {}
//	POST /forget   ForgetRequest       {}
//	POST /attach   AttachRequest       AddrsResponse
//	POST /detach   AttachRequest       {}
//	POST /expose   AddrsRequest        AddrsResponse
//	POST /hide     AddrsRequest        {}
//	POST /rmpeer   PeersRequest        RmPeerResponse
//	POST /dns/add     DNSRequest       DNSResponse
//	POST /dns/remove  DNSRequest       DNSResponse
//	GET  /dns/lookup?name=N            AddrsResponse
//	POST /ipam/leave                   LeaveResponse (weave reset: hand our space over)
//	POST /plugin/remove-networks       RemoveNetworksResponse (weave reset: the plugin's Docker networks)
//	POST /stop                         {} (the daemon then shuts down)
//
// The types here are the daemon's public view of its parts (mesh, data
// plane, container network); they are deliberately separate from those
// packages' own types so that the CLI output stays stable while they change.
package api

import (
	"time"

	"github.com/weavelab/weave/mesh/identity"
)

// Paths of the API served on the Unix socket.
const (
	PathVersion = "/version"
	PathStatus  = "/status" // GET; /status/{peers,connections,targets} for one section
	PathReport  = "/report"
	PathConnect = "/connect"
	PathForget  = "/forget"
	PathAttach  = "/attach"
	PathDetach  = "/detach"
	PathPS      = "/ps"
	PathExpose  = "/expose"
	PathHide    = "/hide"
	PathStop    = "/stop"
	PathRmPeer  = "/rmpeer"
	PathLeave   = "/ipam/leave"
	// PathRemoveNetworks removes the Docker plugin's networks from Docker
	// (weave reset, while the plugin still answers Docker's calls).
	PathRemoveNetworks = "/plugin/remove-networks"
	PathDNSAdd         = "/dns/add"
	PathDNSRemove      = "/dns/remove"
	PathDNSLookup      = "/dns/lookup"
)

// Status sections that `weave status SECTION` and GET /status/SECTION accept.
var Sections = []string{"peers", "connections", "targets", "ipam", "dns"}

// unavailableSections are the sections of the CLI contract whose feature
// comes with a later version, with the feature's name for the error.
var unavailableSections = map[string]string{}

// Connection states as status reports them.
const (
	StateConnecting  = "connecting"
	StateHandshake   = "handshake"
	StateEstablished = "established"
	StateFailed      = "failed"
)

// Values of Status.Salt.
const (
	SaltNetwork = "network"
	SaltDefault = "default"
)

// Version answers GET /version.
type Version struct {
	Version string `json:"version"`
	PID     int    `json:"pid"`
}

// Status answers GET /status: the router's identity and its view of the mesh.
type Status struct {
	Version    string        `json:"version"`
	PID        int           `json:"pid"`
	Peer       identity.Peer `json:"peer"`
	Encryption bool          `json:"encryption"`
	// Salt says which salt stretched the password when Encryption is on:
	// SaltNetwork (--network-salt) or SaltDefault.
	Salt string `json:"salt,omitempty"`
	// Cipher is the data-plane cipher policy (auto, aes-gcm or nacl) and
	// HardwareAES whether this CPU runs AES-GCM in hardware, which decides
	// what auto prefers. Each connection shows the suite it uses.
	Cipher      string       `json:"cipher,omitempty"`
	HardwareAES bool         `json:"hardware_aes"`
	Discovery   bool         `json:"discovery"`
	Port        int          `json:"port"`
	MTU         int          `json:"mtu,omitempty"` // container MTU, 0 if unknown
	Peers       []Peer       `json:"peers"`
	Connections []Connection `json:"connections"`
	Targets     []Target     `json:"targets"` // given by connect or launch (and kept in the state dir)
	// Discovered are addresses learnt by gossip that the router also
	// connects to (unless discovery is off); not shown by `status targets`.
	Discovered []Target `json:"discovered,omitempty"`
	// IPAM is the address allocator's state; nil when it is not running.
	IPAM *IPAM `json:"ipam,omitempty"`
	// DNS is weaveDNS's state; nil when it is off (--no-dns).
	DNS *DNS `json:"dns,omitempty"`
	// Plugin is the Docker network and IPAM plugin; nil when it is not
	// serving (no Docker, or its name taken).
	Plugin *Plugin `json:"plugin,omitempty"`
}

// Plugin is the Docker network and IPAM plugin as `weave status` shows it.
type Plugin struct {
	Name      string `json:"name"`   // the driver name (--plugin-name)
	Socket    string `json:"socket"` // where the Engine finds it
	Networks  int    `json:"networks"`
	Endpoints int    `json:"endpoints"`
}

// IPAM is the address allocator as `weave status ipam` shows it.
type IPAM struct {
	Range         string `json:"range"`
	DefaultSubnet string `json:"default_subnet"`
	// State is "ready" (the ring is seeded), "idle" (not seeded, and no
	// address asked for yet), "awaiting consensus" or "observer".
	State string `json:"state"`
	// Quorum of the seeding consensus; Seeds the peers it seeded the ring
	// with; Participants those taking part while it runs.
	Quorum       int             `json:"quorum"`
	Seeds        []identity.Peer `json:"seeds,omitempty"`
	Participants []identity.Peer `json:"participants,omitempty"`
	// Peers are the owners of the ring's space, us included.
	Peers []IPAMPeer `json:"peers"`
	// Our allocations: live, held for dead containers during the grace
	// period, and requests waiting for space.
	Allocated int `json:"allocated"`
	Held      int `json:"held"`
	Pending   int `json:"pending"`
}

// IPAMPeer is one peer's share of the range.
type IPAMPeer struct {
	Peer      identity.Peer `json:"peer"`
	Size      uint64        `json:"size"`
	Free      uint64        `json:"free"`
	Reachable bool          `json:"reachable"`
	Us        bool          `json:"us,omitempty"`
}

// Peer is one peer of the mesh as our topology knows it.
type Peer struct {
	identity.Peer
	Version uint64     `json:"version"`
	Conns   []PeerConn `json:"conns"`
}

// PeerConn is one connection as the peer owning it reports it.
type PeerConn struct {
	Remote      identity.Peer `json:"remote"` // nickname empty if we do not know the peer
	Addr        string        `json:"addr,omitempty"`
	Outbound    bool          `json:"outbound"`
	Established bool          `json:"established"`
}

// Connection is one of our own connections (or attempts).
type Connection struct {
	Peer     *identity.Peer `json:"peer,omitempty"` // nil until the handshake tells who it is
	Addr     string         `json:"addr"`
	Outbound bool           `json:"outbound"`
	State    string         `json:"state"`
	Reason   string         `json:"reason,omitempty"`
	Since    time.Time      `json:"since,omitzero"`
	Cipher   string         `json:"cipher,omitempty"` // data-plane cipher suite, when encrypted
	// Path is how unicast frames to the peer travel: "fastdp" (kernel
	// VXLAN) or "sleeve" (the userspace overlay), and PathReason why not
	// fastdp. Empty until the data plane has a connection.
	Path       string     `json:"path,omitempty"`
	PathReason string     `json:"path_reason,omitempty"`
	Stats      *PeerStats `json:"stats,omitempty"` // data-plane counters for this peer
}

// Target is an address the router keeps connecting to.
type Target struct {
	Addr      string    `json:"addr"`
	State     string    `json:"state,omitempty"`
	Attempts  int       `json:"attempts,omitempty"`
	LastError string    `json:"last_error,omitempty"`
	NextTry   time.Time `json:"next_try,omitzero"`
}

// PeerStats are data-plane counters for traffic with one peer.
type PeerStats struct {
	FramesIn  uint64            `json:"frames_in"`
	FramesOut uint64            `json:"frames_out"`
	BytesIn   uint64            `json:"bytes_in"`
	BytesOut  uint64            `json:"bytes_out"`
	Drops     map[string]uint64 `json:"drops,omitempty"` // by reason
	PMTU      int               `json:"pmtu,omitempty"`  // path MTU found by probing, 0 until probed
}

// Report answers GET /report: everything the daemon knows, as one document.
type Report struct {
	Status     Status         `json:"status"`
	Config     map[string]any `json:"config"`
	Containers []Container    `json:"containers"`
	Exposed    []string       `json:"exposed,omitempty"`
	DataPlane  any            `json:"data_plane,omitempty"` // the data plane's counters and connection states
}

// ConnectRequest is the body of POST /connect.
type ConnectRequest struct {
	Peers   []string `json:"peers"`
	Replace bool     `json:"replace,omitempty"`
}

// ForgetRequest is the body of POST /forget.
type ForgetRequest struct {
	Peers []string `json:"peers"`
}

// AttachRequest is the body of POST /attach and POST /detach.
type AttachRequest struct {
	Container string   `json:"container"`
	Addrs     []string `json:"addrs,omitempty"`
	// WithoutDNS: do not point the container's resolver at weaveDNS.
	WithoutDNS bool `json:"without_dns,omitempty"`
	// IfName names the container's interface when it is created (attach
	// only; default ethwe): the CNI plugin passes the runtime's, e.g. eth0.
	IfName string `json:"ifname,omitempty"`
}

// DNSRequest is the body of POST /dns/add and /dns/remove: weave dns-add
// and dns-remove. Container may be empty (names not tied to a container),
// IPs empty (the container's addresses), FQDN empty (the container's
// hostname; for remove, every name).
type DNSRequest struct {
	Container string   `json:"container,omitempty"`
	IPs       []string `json:"ips,omitempty"`
	FQDN      string   `json:"fqdn,omitempty"`
}

// DNSResponse answers POST /dns/add and /dns/remove with the entries
// added or removed.
type DNSResponse struct {
	Entries []DNSEntry `json:"entries"`
}

// DNS is weaveDNS as `weave status dns` shows it.
type DNS struct {
	Domain  string `json:"domain"`
	Address string `json:"address"` // where containers reach it, ip:port
	// Upstreams are the resolvers other names go to.
	Upstreams []string   `json:"upstreams"`
	Entries   []DNSEntry `json:"entries"`
	Stats     any        `json:"stats,omitempty"`
}

// DNSEntry is one name in weaveDNS's table.
type DNSEntry struct {
	Name      string        `json:"name"`
	Addr      string        `json:"addr"`
	Container string        `json:"container"`
	Origin    identity.Peer `json:"origin"`
}

// PeersRequest is the body of POST /rmpeer.
type PeersRequest struct {
	Peers []string `json:"peers"`
}

// RmPeerResponse answers POST /rmpeer: per peer removed, the number of
// addresses taken over, in the order asked.
type RmPeerResponse struct {
	Removed []RmPeerResult `json:"removed"`
}

// RmPeerResult is one peer removed by rmpeer.
type RmPeerResult struct {
	Peer      identity.Peer `json:"peer"`
	Addresses uint64        `json:"addresses"`
}

// LeaveResponse answers POST /ipam/leave: the peer that took our space
// (nil when none was reachable, or we had none).
type LeaveResponse struct {
	Heir *identity.Peer `json:"heir,omitempty"`
}

// AddrsRequest is the body of POST /expose and POST /hide.
type AddrsRequest struct {
	Addrs []string `json:"addrs,omitempty"`
}

// AddrsResponse answers POST /attach and POST /expose with the addresses
// (CIDR form) now in place.
type AddrsResponse struct {
	Addrs []string `json:"addrs"`
}

// ExposeID is the ID of the ps entry holding the host's own addresses
// (weave expose).
const ExposeID = "weave:expose"

// Container is one attached container as `weave ps` shows it: one
// interface of it (a container attached by weave and also on a network of
// the Docker plugin has an entry for each).
type Container struct {
	ID    string   `json:"id"`
	MAC   string   `json:"mac"`
	Addrs []string `json:"addrs"`
	// Via says how the interface was made: empty (and absent from the
	// JSON) when weave attached it (attach, run, the proxy, CNI),
	// ViaPlugin for an endpoint of the Docker network plugin, on the
	// Docker network named Network.
	Via     string `json:"via,omitempty"`
	Network string `json:"network,omitempty"`
}

// ViaPlugin is Container.Via of a Docker network plugin endpoint.
const ViaPlugin = "plugin"

// Error is the body of every non-2xx response.
type Error struct {
	Message string `json:"error"`
}

// RemoveNetworksResponse answers POST /plugin/remove-networks: the Docker
// networks of the plugin removed, and those Docker refused to remove (one
// line each, saying why: containers still on them, say).
type RemoveNetworksResponse struct {
	Removed []string `json:"removed"`
	Failed  []string `json:"failed,omitempty"`
}
