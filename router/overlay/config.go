// Package overlay is the data plane between routers: it carries the
// containers' Ethernet frames between hosts in UDP datagrams (format in
// package encap), sealed with per-connection keys when the network has a
// password, along the mesh's routes (relaying for others when two hosts
// cannot reach each other), and learns which peer owns which MAC address.
//
// It implements mesh.Overlay: for each connection whose TCP handshake
// completed, it exchanges connection indexes over the TCP connection,
// heartbeats over UDP both ways, and reports Established once UDP works in
// both directions, or Failed with the reason. See docs in README.md here.
package overlay

import (
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"runtime"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/weavelab/weave/mesh"
	"github.com/weavelab/weave/mesh/clock"
	"github.com/weavelab/weave/mesh/identity"
	"github.com/weavelab/weave/router/netdev"
	"github.com/weavelab/weave/router/overlay/bind"
	"github.com/weavelab/weave/router/overlay/encap"
)

// RouteTable is the mesh's routes as the data plane needs them;
// *topology.Routes implements it. It must be safe for concurrent use.
type RouteTable interface {
	// Unicast returns the next hop towards dst.
	Unicast(dst identity.PeerName) (next identity.PeerName, ok bool)
	// Broadcast returns our next hops for a broadcast originated by src.
	Broadcast(src identity.PeerName) []identity.PeerName
}

// DefaultPort is the UDP data port: the same number as the mesh's TCP
// control port.
const DefaultPort = mesh.DefaultPort

// DefaultContainerMTU is Weave's container MTU on a 1500-byte underlay; it
// leaves room for the encapsulation over IPv4 or IPv6.
const DefaultContainerMTU = 1376

// MinPathMTU is the floor of path MTU discovery (IP packet bytes): a path
// that carries nothing larger is used at this size, fragmenting above it.
const MinPathMTU = 576

// DefaultMTUFor returns the default container MTU on an underlay with the
// given MTU: it keeps the same headroom as Weave's 1376 on 1500 (124 bytes:
// the encapsulation over IPv4 or IPv6), so it follows jumbo or reduced
// underlays.
func DefaultMTUFor(underlayMTU int) int {
	return underlayMTU - (1500 - DefaultContainerMTU)
}

// Config configures an Overlay. Start from DefaultConfig.
type Config struct {
	// Peer is our peer name (required).
	Peer identity.PeerName
	// BindAddr is the IPv4 address of the UDP socket (default 0.0.0.0).
	BindAddr netip.Addr
	// UDPPort is the UDP port; 0 picks a free one (tests).
	UDPPort int
	// Device is the frame device (the TAP port on the bridge). It may be
	// nil for a router without local containers (frames are only relayed).
	// The overlay closes it in Close (to unblock its reader). Give the TAP
	// an MTU above the container MTU (e.g. 65535) so that oversized frames
	// from a container with a raised MTU reach the overlay, which answers
	// with ICMP or lets the kernel fragment, instead of the bridge dropping
	// them silently.
	Device netdev.Device
	// Bind is the UDP side; nil listens on BindAddr:UDPPort (bind.Listen,
	// with SocketBuffer). The overlay closes it in Close. Path MTU probes
	// leave by a raw socket beside the bind, so an injected Bind gets none
	// (connections use the underlay MTU).
	Bind bind.Bind
	// Routes returns the current routes; called per batch of frames, so it
	// must be cheap (an atomic load). Required.
	Routes func() RouteTable
	// MTU is the container MTU. 0 computes it from UnderlayMTU with
	// DefaultMTUFor (1376 on a 1500 underlay).
	MTU int
	// UnderlayMTU is the MTU of this host's network (default 1500; see
	// DetectUnderlayMTU). It bounds path MTU discovery and is announced to
	// peers, which probe no larger.
	UnderlayMTU int
	// PMTUInterval is how often each connection searches its path MTU
	// again (default 10 minutes); it also searches after establishment, when
	// the remote's address moves, and when a send fails with EMSGSIZE.
	PMTUInterval time.Duration
	// Logger receives logs with keys peer, addr, conn (default: discard).
	Logger *slog.Logger
	// Registerer, when set, gets the overlay's Prometheus metrics.
	Registerer prometheus.Registerer
	// HeartbeatInterval is how often each connection sends a UDP heartbeat;
	// it is also the period of the maintenance loop, which checks every
	// timeout below, so they are kept to within one interval.
	HeartbeatInterval time.Duration
	// FailTimeout is how long without heartbeats from the remote before a
	// connection fails (also the limit for establishing it): it fails at
	// the first heartbeat tick more than FailTimeout after it last heard
	// from the remote (or was added), so within FailTimeout +
	// HeartbeatInterval.
	FailTimeout time.Duration
	// MACExpiry is how long a learnt MAC address stays without traffic.
	MACExpiry time.Duration
	// MACTableSize caps the MAC table (default DefaultMACTableSize). When
	// it is full, learning a new address evicts the one seen least
	// recently (counted in Stats().MACEvictions), so a flood of source
	// addresses cannot grow memory.
	MACTableSize int
	// Workers is the number of send workers (flows are hashed onto them);
	// default GOMAXPROCS, at most 8.
	Workers int
	// Openers is how many goroutines open (decrypt) received datagrams in
	// parallel, frames staying in order (see receive.go). 1: the UDP reader
	// does everything itself. Default: 1 below 4 CPUs (on two cores the
	// hand-offs cost more CPU than the parallel opening saves: measured
	// with test/bench), else Workers. With 1 the send side does likewise:
	// the device reader sends whole reads itself while their send worker
	// is idle (above 1 it keeps only reads of a few frames, and bulk goes
	// to the workers, which seal in parallel).
	Openers int
	// SocketBuffer is the SO_RCVBUF/SO_SNDBUF size requested (default 8 MiB).
	SocketBuffer int
	// UDPOffload sends runs of datagrams to one peer as one message with
	// UDP segmentation offload (UDP_SEGMENT), cutting the sender's cost per
	// datagram several-fold; on in DefaultConfig. Where the kernel lacks
	// UDP_SEGMENT the overlay sends datagrams one by one; when it refuses
	// a segmented message (EIO, EINVAL, ENOPROTOOPT, EOPNOTSUPP: e.g. a NIC
	// or route without checksum offload) the overlay logs once, resends
	// that message's datagrams one by one and stays without offload. Note
	// that between network namespaces the kernel passes the unsegmented
	// message across veths and bridges, so a capture there shows one large
	// UDP packet holding several datagrams. Receiving coalesced runs
	// (UDP_GRO) is always on.
	UDPOffload bool
	// FastPath is the kernel fast path (the VXLAN device on the bridge);
	// nil turns it off (--no-fastdp). The overlay closes it in Close and
	// removes the forwarding entries it made.
	FastPath FastPath
	// FastPathTimeout is how long a connection's fast path stays up
	// without heartbeats both ways (default DefaultFastPathTimeout): it
	// falls back to the sleeve at the first heartbeat tick more than
	// FastPathTimeout after the last fast-path heartbeat of either
	// direction, and returns at the first tick after heartbeats arrived
	// both ways again.
	FastPathTimeout time.Duration
	// Clock is the time source of everything timed: the maintenance loop
	// (heartbeats, failure and fast-path timeouts, path MTU rounds and
	// PMTUInterval, MAC expiry), the coarse time stamped on learnt MAC
	// addresses, the grace of a previous key epoch, and the back-off after
	// read errors. nil means clock.Real{}; tests pass a virtual clock
	// (clock/clocktest) and step it. The frame path never calls it: it
	// reads the time the maintenance loop last stored.
	Clock clock.Clock

	// prober sends path MTU probes; nil opens the raw socket (tests inject
	// fakes).
	prober prober
}

// DefaultMACTableSize is the default cap of the MAC table: far above the
// containers of any real network, small enough (about 2 MiB) not to matter.
const DefaultMACTableSize = 16384

// DefaultConfig returns the defaults; set Peer, Device and Routes.
func DefaultConfig() Config {
	return Config{
		BindAddr:          netip.IPv4Unspecified(),
		UDPPort:           DefaultPort,
		UnderlayMTU:       1500,
		HeartbeatInterval: 500 * time.Millisecond,
		FailTimeout:       10 * time.Second,
		MACExpiry:         5 * time.Minute,
		MACTableSize:      DefaultMACTableSize,
		SocketBuffer:      8 << 20,
		PMTUInterval:      10 * time.Minute,
		UDPOffload:        true,
		FastPathTimeout:   DefaultFastPathTimeout,
		Clock:             clock.Real{},
	}
}

// Encapsulation overhead on the underlay for one frame in its own datagram.
const (
	ipv4Header = 20
	udpHeader  = 8
	ethHeader  = 14
	// Overhead is everything a container frame's IP packet gains on its
	// way over the underlay: Ethernet header, frame record, datagram
	// header, AEAD tag, UDP and IPv4 headers.
	Overhead = ipv4Header + udpHeader + encap.HeaderLen + encap.TagLen + encap.FrameHeaderLen + ethHeader
)

// ContainerMTUFor returns the largest container MTU whose frames fit one
// datagram on an underlay with the given MTU.
func ContainerMTUFor(underlayMTU int) int { return underlayMTU - Overhead }

func (c *Config) fill() error {
	d := DefaultConfig()
	if c.Peer == identity.UnknownPeer {
		return errors.New("overlay config: peer name required")
	}
	if c.Routes == nil {
		return errors.New("overlay config: routes required")
	}
	if !c.BindAddr.IsValid() {
		c.BindAddr = d.BindAddr
	}
	if !c.BindAddr.Is4() {
		return fmt.Errorf("overlay config: bind address %s: only IPv4 is supported", c.BindAddr)
	}
	if c.UDPPort < 0 || c.UDPPort > 65535 {
		return fmt.Errorf("overlay config: udp port %d out of range", c.UDPPort)
	}
	if c.UnderlayMTU == 0 {
		c.UnderlayMTU = d.UnderlayMTU
	}
	if c.UnderlayMTU < MinPathMTU || c.UnderlayMTU > 65535 {
		return fmt.Errorf("overlay config: underlay mtu %d out of range %d..65535", c.UnderlayMTU, MinPathMTU)
	}
	if c.MTU == 0 {
		c.MTU = DefaultMTUFor(c.UnderlayMTU)
	}
	if c.MTU < 68 || c.MTU > encap.MaxFrameLen-ethHeader {
		return fmt.Errorf("overlay config: mtu %d out of range", c.MTU)
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Clock == nil {
		c.Clock = d.Clock
	}
	if c.HeartbeatInterval <= 0 {
		c.HeartbeatInterval = d.HeartbeatInterval
	}
	if c.FailTimeout <= 0 {
		c.FailTimeout = d.FailTimeout
	}
	if c.FastPathTimeout <= 0 {
		c.FastPathTimeout = d.FastPathTimeout
	}
	if c.PMTUInterval <= 0 {
		c.PMTUInterval = d.PMTUInterval
	}
	if c.MACExpiry <= 0 {
		c.MACExpiry = d.MACExpiry
	}
	if c.MACTableSize <= 0 {
		c.MACTableSize = d.MACTableSize
	}
	if c.Workers <= 0 {
		c.Workers = min(runtime.GOMAXPROCS(0), 8)
	}
	if c.Openers <= 0 {
		c.Openers = 1
		if runtime.GOMAXPROCS(0) >= 4 {
			c.Openers = c.Workers
		}
	}
	if c.SocketBuffer <= 0 {
		c.SocketBuffer = d.SocketBuffer
	}
	return nil
}
