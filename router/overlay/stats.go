package overlay

import (
	"sort"
	"sync"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/weavelab/weave/mesh/identity"
)

// dropReason says why a frame or datagram was dropped.
type dropReason int

const (
	dropMalformed   dropReason = iota // datagram or frame record does not parse
	dropUnknownConn                   // receiver index or sender matches no connection
	dropAuth                          // AEAD open failed (forged or corrupted)
	dropReplay                        // counter already seen
	dropTooOld                        // counter behind the replay window
	dropEpoch                         // unknown or expired key epoch
	dropNoRoute                       // no route to the destination peer
	dropNoConn                        // next hop has no usable connection yet
	dropQueueFull                     // a worker queue was full (relay path)
	dropOversize                      // frame larger than any buffer
	dropHopLimit                      // relayed too many times (routes inconsistent)
	dropLoop                          // a frame of ours came back
	dropSendError                     // the UDP send failed
	dropDeviceError                   // writing to the device failed
	dropRunt                          // frame shorter than an Ethernet header
	numDropReasons
)

var dropNames = [numDropReasons]string{
	dropMalformed:   "malformed",
	dropUnknownConn: "unknown_conn",
	dropAuth:        "auth",
	dropReplay:      "replay",
	dropTooOld:      "too_old",
	dropEpoch:       "epoch",
	dropNoRoute:     "no_route",
	dropNoConn:      "no_conn",
	dropQueueFull:   "queue_full",
	dropOversize:    "oversize",
	dropHopLimit:    "hop_limit",
	dropLoop:        "loop",
	dropSendError:   "send_error",
	dropDeviceError: "device_error",
	dropRunt:        "runt",
}

func (r dropReason) String() string { return dropNames[r] }

// counters are one peer's monotonic counters. The overlay keeps them while
// it has a connection to the peer (across reconnects that overlap), so
// every table of them is bounded by the live connections.
type counters struct {
	framesIn, framesOut atomic.Uint64
	bytesIn, bytesOut   atomic.Uint64
	drops               [numDropReasons]atomic.Uint64
}

// PeerStats are the data plane's counters and connection state for one peer.
type PeerStats struct {
	Peer      identity.PeerName `json:"peer"`
	Addr      string            `json:"addr,omitempty"`   // remote UDP address
	State     string            `json:"state"`            // connecting, established, failed, none
	Reason    string            `json:"reason,omitempty"` // why not established
	Encrypted bool              `json:"encrypted"`
	// Cipher is the data-plane cipher suite the handshake settled on
	// (handshake.Suite's name, e.g. "aes-256-gcm"), empty without keys.
	Cipher string `json:"cipher,omitempty"`
	// KeyEpoch is the data key epoch we send with: the number of fresh key
	// exchanges this connection has run (see docs/handshake.md).
	KeyEpoch uint16 `json:"key_epoch,omitempty"`
	MaxFrame int    `json:"max_frame,omitempty"` // largest frame per datagram without fragmentation
	// PMTU is the connection's path MTU in IP bytes: the largest packet
	// that reached the remote in path MTU discovery, or the announced
	// maximum (the smaller underlay MTU) while PMTUProbed is false.
	PMTU       int  `json:"pmtu,omitempty"`
	PMTUProbed bool `json:"pmtu_probed,omitempty"`
	// Path is the way unicast frames to the peer take: "fastdp" (the
	// kernel VXLAN fast path) or "sleeve" (this userspace overlay), and
	// PathReason why not fastdp.
	Path       string            `json:"path,omitempty"`
	PathReason string            `json:"path_reason,omitempty"`
	FramesIn   uint64            `json:"frames_in"`
	FramesOut  uint64            `json:"frames_out"`
	BytesIn    uint64            `json:"bytes_in"`
	BytesOut   uint64            `json:"bytes_out"`
	Drops      map[string]uint64 `json:"drops,omitempty"`
}

// Stats is a snapshot of the data plane's counters.
type Stats struct {
	ContainerMTU int `json:"container_mtu"`
	// Peers has one entry per peer we have a connection to, sorted by
	// peer name. A peer's entry (and its Prometheus series) goes with its
	// last connection.
	Peers []PeerStats `json:"peers"`
	// Drops are all drops by reason: those of the peers in Peers, those
	// not attributable to a connected peer (an unknown receiver index, a
	// frame for a destination we have no route or connection to) and
	// those of peers since gone.
	Drops map[string]uint64 `json:"drops,omitempty"`
	// FragNeeded counts ICMP "fragmentation needed" messages written back
	// to the device for oversized frames with DF set; Fragmented counts
	// oversized frames sent alone in a datagram that the kernel fragments.
	FragNeeded uint64 `json:"frag_needed"`
	Fragmented uint64 `json:"fragmented"`
	// MACs is the number of MAC addresses in the table (at most
	// Config.MACTableSize); MACEvictions counts addresses evicted to make
	// room for new ones.
	MACs         int    `json:"macs"`
	MACEvictions uint64 `json:"mac_evictions"`
}

// statsTable holds the counters of connected peers plus one aggregate
// bucket for everything else, so that no input can grow it: a frame for a
// destination we have no connection to counts in global, not under a new
// entry. Entries come and go with connections (attach, detach).
type statsTable struct {
	mu         sync.RWMutex
	peers      map[identity.PeerName]*peerEntry
	global     counters // drops not attributable to a connected peer
	gone       counters // drops of peers whose last connection went
	fragNeeded atomic.Uint64
	fragmented atomic.Uint64
}

type peerEntry struct {
	counters
	conns int // live connections holding the entry
}

func newStatsTable() *statsTable {
	return &statsTable{peers: make(map[identity.PeerName]*peerEntry)}
}

// attach returns the counters for p, creating them for p's first live
// connection; each attach needs one detach.
func (s *statsTable) attach(p identity.PeerName) *counters {
	s.mu.Lock()
	defer s.mu.Unlock()
	e := s.peers[p]
	if e == nil {
		e = new(peerEntry)
		s.peers[p] = e
	}
	e.conns++
	return &e.counters
}

// detach releases one connection's hold on p's counters; with the last, the
// entry goes and its drops are kept in the gone bucket (so Stats' total
// drops never go back).
func (s *statsTable) detach(p identity.PeerName) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e := s.peers[p]
	if e == nil {
		return
	}
	if e.conns--; e.conns > 0 {
		return
	}
	delete(s.peers, p)
	for r := range numDropReasons {
		s.gone.drops[r].Add(e.drops[r].Load())
	}
}

// lookup returns the counters of p if we have a connection to it, else nil
// (drop then counts in the aggregate bucket). It never creates an entry.
func (s *statsTable) lookup(p identity.PeerName) *counters {
	s.mu.RLock()
	e := s.peers[p]
	s.mu.RUnlock()
	if e == nil {
		return nil
	}
	return &e.counters
}

// drop counts a drop against c (nil: unattributed).
func (s *statsTable) drop(c *counters, r dropReason, n uint64) {
	if c == nil {
		c = &s.global
	}
	c.drops[r].Add(n)
}

func dropMap(c *counters, into map[string]uint64) map[string]uint64 {
	for r := range numDropReasons {
		if v := c.drops[r].Load(); v != 0 {
			if into == nil {
				into = make(map[string]uint64)
			}
			into[dropNames[r]] += v
		}
	}
	return into
}

func (s *statsTable) snapshot() (peers map[identity.PeerName]*counters) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	peers = make(map[identity.PeerName]*counters, len(s.peers))
	for k, v := range s.peers {
		peers[k] = &v.counters
	}
	return peers
}

// len is the number of peer entries.
func (s *statsTable) len() int {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return len(s.peers)
}

func sortPeerStats(ps []PeerStats) {
	sort.Slice(ps, func(i, j int) bool { return ps[i].Peer < ps[j].Peer })
}

// collector exports statsTable as Prometheus metrics, read at scrape time
// so the hot path only touches atomics.
type collector struct {
	s                      *statsTable
	frames, bytes, drops   *prometheus.Desc
	fragNeeded, fragmented *prometheus.Desc
	connections            *prometheus.Desc
	macs, macEvictions     *prometheus.Desc
	connStates             func() map[string]int
	macTable               *macTable
}

// newCollector exports s, the connection states and the MAC table. Its
// series are bounded: per peer only for connected peers (an entry of s),
// everything else under peer="".
func newCollector(s *statsTable, connStates func() map[string]int, macs *macTable) *collector {
	return &collector{
		s: s, macTable: macs,
		macs: prometheus.NewDesc("weave_overlay_macs",
			"MAC addresses in the overlay's MAC table.", nil, nil),
		macEvictions: prometheus.NewDesc("weave_overlay_mac_evictions_total",
			"MAC addresses evicted from the full MAC table to make room for new ones.", nil, nil),
		frames: prometheus.NewDesc("weave_overlay_frames_total",
			"Frames sent to (out) or received from (in) a peer over the overlay.", []string{"peer", "direction"}, nil),
		bytes: prometheus.NewDesc("weave_overlay_bytes_total",
			"Frame bytes sent to (out) or received from (in) a peer over the overlay.", []string{"peer", "direction"}, nil),
		drops: prometheus.NewDesc("weave_overlay_drops_total",
			"Frames or datagrams dropped, by peer (empty if unknown) and reason.", []string{"peer", "reason"}, nil),
		fragNeeded: prometheus.NewDesc("weave_overlay_frag_needed_total",
			"ICMP fragmentation-needed messages sent back for oversized frames with DF set.", nil, nil),
		fragmented: prometheus.NewDesc("weave_overlay_fragmented_total",
			"Oversized frames sent in a datagram that the kernel fragments.", nil, nil),
		connections: prometheus.NewDesc("weave_overlay_connections",
			"Overlay connections by state.", []string{"state"}, nil),
		connStates: connStates,
	}
}

func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.frames, c.bytes, c.drops, c.fragNeeded, c.fragmented, c.connections, c.macs, c.macEvictions} {
		ch <- d
	}
}

func (c *collector) Collect(ch chan<- prometheus.Metric) {
	emit := func(peer string, ct *counters) {
		if peer != "" {
			ch <- prometheus.MustNewConstMetric(c.frames, prometheus.CounterValue, float64(ct.framesIn.Load()), peer, "in")
			ch <- prometheus.MustNewConstMetric(c.frames, prometheus.CounterValue, float64(ct.framesOut.Load()), peer, "out")
			ch <- prometheus.MustNewConstMetric(c.bytes, prometheus.CounterValue, float64(ct.bytesIn.Load()), peer, "in")
			ch <- prometheus.MustNewConstMetric(c.bytes, prometheus.CounterValue, float64(ct.bytesOut.Load()), peer, "out")
		}
		for r := range numDropReasons {
			if v := ct.drops[r].Load(); v != 0 {
				ch <- prometheus.MustNewConstMetric(c.drops, prometheus.CounterValue, float64(v), peer, dropNames[r])
			}
		}
	}
	for p, ct := range c.s.snapshot() {
		emit(p.String(), ct)
	}
	emit("", &c.s.global)
	ch <- prometheus.MustNewConstMetric(c.fragNeeded, prometheus.CounterValue, float64(c.s.fragNeeded.Load()))
	ch <- prometheus.MustNewConstMetric(c.fragmented, prometheus.CounterValue, float64(c.s.fragmented.Load()))
	ch <- prometheus.MustNewConstMetric(c.macs, prometheus.GaugeValue, float64(c.macTable.len()))
	ch <- prometheus.MustNewConstMetric(c.macEvictions, prometheus.CounterValue, float64(c.macTable.evictions.Load()))
	for st, n := range c.connStates() {
		ch <- prometheus.MustNewConstMetric(c.connections, prometheus.GaugeValue, float64(n), st)
	}
}
