package mesh

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"time"

	"github.com/weavelab/weave/mesh/clock"
	"github.com/weavelab/weave/mesh/handshake"
	"github.com/weavelab/weave/mesh/identity"
)

// DefaultPort is the TCP (control) and UDP (data) port routers use.
const DefaultPort = 6783

// Transport is how the router reaches the network: a listener for inbound
// connections and a dialer for outbound ones. TCPTransport is the real one;
// mesh/meshtest has an in-memory one for simulations. Implementations must be
// safe for concurrent use. Conns must support deadlines (the handshake uses
// them) and their RemoteAddr must print as ip:port.
type Transport interface {
	// Listen listens on addr (host:port; an empty host means all
	// addresses). The listener's Accept must return net.ErrClosed (wrapped
	// or not) after Close.
	Listen(ctx context.Context, addr string) (net.Listener, error)
	// Dial connects to addr (host:port); ctx bounds the attempt.
	Dial(ctx context.Context, addr string) (net.Conn, error)
}

// TCPTransport is the Transport over the kernel's TCP stack.
type TCPTransport struct{}

var _ Transport = TCPTransport{}

// Listen listens on TCP addr.
func (TCPTransport) Listen(ctx context.Context, addr string) (net.Listener, error) {
	var lc net.ListenConfig
	return lc.Listen(ctx, "tcp", addr)
}

// Dial dials TCP addr.
func (TCPTransport) Dial(ctx context.Context, addr string) (net.Conn, error) {
	var d net.Dialer
	return d.DialContext(ctx, "tcp", addr)
}

// Config configures a Router. Start from DefaultConfig and set Peer.
type Config struct {
	// Peer is our identity (name, nickname, UID). Required.
	Peer identity.Peer
	// Cipher is the data-plane cipher policy with a password ("" = auto).
	Cipher handshake.CipherPolicy
	// KeyExchangeInterval is how often an encrypted connection runs a fresh
	// ephemeral key exchange (0 = handshake.DefaultKeyExchangeInterval).
	KeyExchangeInterval time.Duration
	// Key is our identity key; Peer.Name must be its name (identity.NameOf).
	// It proves our name in every handshake and signs our topology entry.
	// Required.
	Key *identity.Key
	// ListenHost is the address to listen on ("" = all addresses).
	ListenHost string
	// Port is the TCP port to listen on (0 picks a free one; see
	// Router.Addr) and the default port of targets given without one.
	Port int
	// UDPPort is the data-plane port announced in the handshake
	// (0 = the same as Port, the convention).
	UDPPort int
	// PSK is the key derived from the network password (see
	// handshake.DeriveKey); nil means no password: plain control traffic.
	PSK *handshake.PSK
	// NoDiscovery stops the router from connecting to peers it learns of
	// through gossip; it then only connects to its targets.
	NoDiscovery bool
	// Overlay is the data plane; nil means a TCP-only overlay that reports
	// every connection established at once.
	Overlay Overlay
	// Logger receives the router's logs; nil means slog.Default().
	Logger *slog.Logger
	// Transport carries control connections; nil means TCPTransport.
	Transport Transport
	// Clock is the router's time source (heartbeats, backoff, gossip
	// rounds); nil means clock.Real. A simulation passes a virtual one.
	Clock clock.Clock
	// Rand seeds the router's random choices (jitter, backoff, gossip
	// partners); nil means a source seeded at random. A simulation passes
	// a seeded one so that a run replays exactly.
	Rand rand.Source

	// HeartbeatInterval is how often a heartbeat goes out on each
	// connection; after DeadAfter intervals without hearing anything from
	// the peer the connection is closed as dead.
	HeartbeatInterval time.Duration
	DeadAfter         int
	// HandshakeTimeout bounds dialling plus the handshake.
	HandshakeTimeout time.Duration
	// Reconnection backoff: the delay after the n-th consecutive failure
	// is BackoffBase·2^(n-1), capped at BackoffMax, with jitter.
	BackoffBase time.Duration
	BackoffMax  time.Duration
	// UpdateDelay is how long topology changes are collected before they
	// are gossiped as one update and the routes are recomputed: a short
	// delay turns bursts of changes (a peer joining, a mesh starting) into
	// few messages and route computations.
	UpdateDelay time.Duration
	// GossipInterval is the period of anti-entropy (topology and gossip
	// channels) with one random neighbour.
	GossipInterval time.Duration
	// RequestTimeout: a topology entry asked of a neighbour that has not
	// come after this long is asked of another (see gossip.go).
	RequestTimeout time.Duration
	// ConnLimit bounds the number of connections (established or being set
	// up); inbound connections over it are refused and discovery stops
	// dialling. 0 means no limit.
	ConnLimit int
	// SendQueue is the number of messages queued per connection before
	// sends are dropped (topology messages are repaired by anti-entropy).
	// The queue is allocated once the handshake has succeeded.
	SendQueue int

	// Admission of inbound connections before their handshake (see
	// admission.go). MaxPendingHandshakes bounds the inbound connections
	// whose handshake has not completed, MaxPendingPerSource those from
	// one IP address; a connection over either cap is closed as soon as
	// it is accepted, except that with the global cap full a source
	// holding fewer pending connections than another evicts that one's
	// oldest.
	MaxPendingHandshakes int
	MaxPendingPerSource  int
	// A failed inbound handshake (wrong password, garbage, timeout) is
	// charged to its source IP address. A source may fail
	// FailedHandshakeBurst times in a row, then once per
	// FailedHandshakeInterval; beyond that its connections are closed as
	// soon as they are accepted. Successful handshakes cost nothing.
	FailedHandshakeBurst    int
	FailedHandshakeInterval time.Duration
	// MaxTrackedSources bounds the sources remembered for that budget and
	// for the log; the least recently seen is forgotten first.
	MaxTrackedSources int
	// FailureLogInterval: the first failed or refused inbound connection
	// from a source is logged; later ones are counted and summarised once
	// per interval.
	FailureLogInterval time.Duration
}

// DefaultConfig returns the production defaults. Peer must still be set.
func DefaultConfig() Config {
	return Config{
		Port:              DefaultPort,
		HeartbeatInterval: 2 * time.Second,
		DeadAfter:         5,
		HandshakeTimeout:  10 * time.Second,
		BackoffBase:       1 * time.Second,
		BackoffMax:        2 * time.Minute,
		UpdateDelay:       20 * time.Millisecond,
		GossipInterval:    30 * time.Second,
		RequestTimeout:    2 * time.Second,
		ConnLimit:         100,
		SendQueue:         1024,

		MaxPendingHandshakes:    128,
		MaxPendingPerSource:     8,
		FailedHandshakeBurst:    10,
		FailedHandshakeInterval: 5 * time.Second,
		MaxTrackedSources:       4096,
		FailureLogInterval:      time.Minute,
	}
}

// check validates cfg and fills in zero values with defaults.
func (cfg *Config) check() error {
	d := DefaultConfig()
	switch {
	case cfg.Peer.Name == identity.UnknownPeer:
		return errors.New("mesh config: no peer name")
	case cfg.Peer.UID == 0:
		return errors.New("mesh config: no peer uid")
	case cfg.Key == nil:
		return errors.New("mesh config: no identity key")
	case cfg.Key.Name() != cfg.Peer.Name:
		return fmt.Errorf("mesh config: peer name %s is not the name of the identity key (%s)", cfg.Peer.Name, cfg.Key.Name())
	case len(cfg.Peer.NickName) > identity.MaxNickNameLen:
		return fmt.Errorf("mesh config: nickname longer than %d bytes", identity.MaxNickNameLen)
	case cfg.Port < 0 || cfg.Port > 65535:
		return fmt.Errorf("mesh config: port %d out of range", cfg.Port)
	case cfg.UDPPort < 0 || cfg.UDPPort > 65535:
		return fmt.Errorf("mesh config: udp port %d out of range", cfg.UDPPort)
	case cfg.ConnLimit < 0:
		return fmt.Errorf("mesh config: negative connection limit %d", cfg.ConnLimit)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Transport == nil {
		cfg.Transport = TCPTransport{}
	}
	if cfg.Overlay == nil {
		cfg.Overlay = tcpOverlay{}
	}
	if cfg.Clock == nil {
		cfg.Clock = clock.Real{}
	}
	if cfg.Rand == nil {
		cfg.Rand = rand.NewPCG(rand.Uint64(), rand.Uint64())
	}
	setDefault(&cfg.RequestTimeout, d.RequestTimeout)
	setDefault(&cfg.HeartbeatInterval, d.HeartbeatInterval)
	setDefault(&cfg.HandshakeTimeout, d.HandshakeTimeout)
	setDefault(&cfg.BackoffBase, d.BackoffBase)
	setDefault(&cfg.BackoffMax, d.BackoffMax)
	setDefault(&cfg.GossipInterval, d.GossipInterval)
	setDefault(&cfg.UpdateDelay, d.UpdateDelay)
	setDefault(&cfg.DeadAfter, d.DeadAfter)
	setDefault(&cfg.SendQueue, d.SendQueue)
	setDefault(&cfg.MaxPendingHandshakes, d.MaxPendingHandshakes)
	setDefault(&cfg.MaxPendingPerSource, d.MaxPendingPerSource)
	setDefault(&cfg.FailedHandshakeBurst, d.FailedHandshakeBurst)
	setDefault(&cfg.FailedHandshakeInterval, d.FailedHandshakeInterval)
	setDefault(&cfg.MaxTrackedSources, d.MaxTrackedSources)
	setDefault(&cfg.FailureLogInterval, d.FailureLogInterval)
	if cfg.BackoffMax < cfg.BackoffBase {
		cfg.BackoffMax = cfg.BackoffBase
	}
	return nil
}

func setDefault[T int | time.Duration](v *T, d T) {
	if *v <= 0 {
		*v = d
	}
}
