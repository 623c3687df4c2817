// Package plugin serves Docker's remote plugin API for the router: a
// network driver (the host side of each endpoint is a veth on the weave
// bridge) and an IPAM driver (pools and addresses from the router's
// allocator), both under one name, on one Unix socket in the Engine's
// plugin directory (/run/docker/plugins/NAME.sock), where the Engine
// discovers them. Networks are of local scope: a network created with the
// same subnet on every host is one L2 network on the overlay.
//
// The Server keeps its networks and endpoints in a small state file, so
// that a restarted router still answers for them, and asks the Engine
// which of them it still has: what was removed while the router was down
// (the Engine's calls then failed, and it does not repeat them) is
// dropped. The router's parts come in through small interfaces (IPAM,
// Links, Observer, Engine); plugintest fakes them.
package plugin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"sync"
	"syscall"
	"time"
)

// Defaults that DefaultConfig fills in.
const (
	DefaultName = "weave"
	DefaultDir  = "/run/docker/plugins"
	// IfPrefix is what Docker names the container's interface after
	// (ethwe0, ethwe1, ...).
	IfPrefix = "ethwe"
	// LocalAddressSpace and GlobalAddressSpace are the IPAM driver's
	// address spaces; both draw from the router's one range.
	LocalAddressSpace  = "weavelocal"
	GlobalAddressSpace = "weaveglobal"
)

// mediaType is the Content-Type of the plugin API.
const mediaType = "application/vnd.docker.plugins.v1+json"

// ipamTimeout bounds an address allocation (which waits while the range
// is first divided among the peers); the Engine gives up on a plugin call
// after about 30 s.
const ipamTimeout = 25 * time.Second

// IPAM is the router's address allocator; *ipam.Allocator implements it.
type IPAM interface {
	// CheckSubnet returns the subnet p names in the range (the default
	// subnet for the zero prefix), or an error when it is not inside it.
	CheckSubnet(p netip.Prefix) (netip.Prefix, error)
	// Allocate returns a free address of subnet for id; it blocks until
	// the range is ready or ctx ends.
	Allocate(ctx context.Context, id string, subnet netip.Prefix) (netip.Prefix, error)
	// Claim records a given address for id.
	Claim(ctx context.Context, id string, p netip.Prefix) error
	// Release frees id's addresses ips.
	Release(id string, ips ...netip.Addr) []netip.Addr
	// Owner returns the id that holds ip here, or "".
	Owner(ip netip.Addr) string
}

// Link is the host side of one endpoint: a veth pair whose Peer the Engine
// moves into the container and renames.
type Link struct {
	Host string
	Peer string
	MAC  net.HardwareAddr
}

// Links makes and removes endpoints' veth pairs; the daemon's is the
// router's bridge.
type Links interface {
	// CreateLink makes endpoint id's veth pair, the peer with mac (random
	// when nil), and the host's way back to addr.
	CreateLink(id string, addr netip.Prefix, mac net.HardwareAddr) (Link, error)
	// DeleteLink removes what CreateLink made; missing parts are fine.
	DeleteLink(id string, addr netip.Prefix) error
}

// Observer is told of endpoints joining and leaving containers (for DNS
// names and the way to weaveDNS).
type Observer interface {
	// Joined runs on a goroutine of the Server's after the Engine was
	// answered a Join, while the Engine moves the interface into
	// ep.Sandbox; and, when Serve starts, for each endpoint that the
	// state file says is joined (the container may have gone meanwhile).
	// ctx ends when the endpoint leaves or the Server stops.
	Joined(ctx context.Context, ep Endpoint)
	// Left is called when an endpoint leaves its container, before the
	// Engine is answered; also at DeleteEndpoint when the Engine's Leave
	// was lost, and when the endpoint is dropped as gone from the Engine
	// (checkRestored). It must not block for long.
	Left(ep Endpoint)
}

// ErrNoNetwork is what an Engine's NetworkEndpoints wraps when the Engine
// positively has no such network.
var ErrNoNetwork = errors.New("no such network")

// Engine is the Docker Engine's record of its networks; the daemon's wraps
// the Engine client.
type Engine interface {
	// NetworkEndpoints returns the IDs of every endpoint the Engine has on
	// network networkID, joined to a container or not; an error wrapping
	// ErrNoNetwork when the Engine answered that it has no such network.
	// Any other error says nothing about the network.
	NetworkEndpoints(ctx context.Context, networkID string) (map[string]bool, error)
}

// Config configures a Server. Start from DefaultConfig.
type Config struct {
	// Name is the plugin's name: --driver and --ipam-driver of docker
	// network create, and the socket's name.
	Name string
	// Dir is where the socket goes.
	Dir string
	// IPAM allocates addresses; nil makes the IPAM driver refuse.
	IPAM IPAM
	// Links makes the endpoints' interfaces.
	Links Links
	// Observer, if set, is told of joins and leaves.
	Observer Observer
	// ServiceAddr, if valid, is weaveDNS's link-local address: every
	// container gets a connected route to it.
	ServiceAddr netip.Addr
	// StateFile keeps the networks and endpoints across restarts; empty
	// keeps them in memory.
	StateFile string
	// Engine, if set, is asked once Serve starts which of the networks
	// and endpoints loaded from StateFile it still has; those it
	// positively lacks are dropped (see checkRestored). Nil keeps them.
	Engine Engine
	// EngineRetry is the first wait between questions to an Engine that
	// does not answer (it doubles up to EngineRetryMax); after
	// EngineRetryFor the Server stops asking and keeps what it could not
	// check, with a warning.
	EngineRetry    time.Duration
	EngineRetryMax time.Duration
	EngineRetryFor time.Duration
	Logger         *slog.Logger
}

// DefaultConfig returns the defaults.
func DefaultConfig() Config {
	return Config{
		Name: DefaultName, Dir: DefaultDir,
		EngineRetry: time.Second, EngineRetryMax: 30 * time.Second, EngineRetryFor: 10 * time.Minute,
	}
}

var nameRE = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,63}$`)

// CheckName checks a plugin name: it names a socket file and a Docker driver.
func CheckName(name string) error {
	if !nameRE.MatchString(name) {
		return fmt.Errorf("plugin name %q: want 1-64 letters, digits, '_', '.' or '-', starting with a letter or digit", name)
	}
	return nil
}

// Endpoint is one endpoint of a weave network on this host.
type Endpoint struct {
	NetworkID  string           `json:"network"`
	EndpointID string           `json:"endpoint"`
	Addr       netip.Prefix     `json:"addr"`
	MAC        net.HardwareAddr `json:"mac"`
	// Sandbox is the container's namespace path while joined.
	Sandbox string `json:"sandbox,omitempty"`
	// Link is its veth pair.
	Link Link `json:"link"`
	// AllocID is the IPAM id that holds Addr, if it is the plugin's: an
	// endpoint dropped because the Engine no longer has it releases its
	// address by it, and so never frees an address that the Engine
	// released meanwhile and someone else got.
	AllocID string `json:"alloc,omitempty"`
}

// Network is one weave network on this host.
type Network struct {
	ID    string         `json:"id"`
	Pools []netip.Prefix `json:"pools"`
}

// Server answers the Engine's plugin calls. Its methods are safe for
// concurrent use.
type Server struct {
	cfg Config
	log *slog.Logger

	mu        sync.Mutex
	networks  map[string]*Network  // by network ID
	endpoints map[string]*Endpoint // by endpoint ID
	joins     map[string]*join     // running Observer.Joined, by endpoint ID
	// restoredNets and restoredEps are what load found in the state file
	// and the Engine has not yet been asked about (checkRestored): the
	// only records that the check may drop. Endpoints the Engine creates
	// after the start are never among them.
	restoredNets map[string]*Network
	restoredEps  map[string]*Endpoint
	ctx          context.Context // ends at Close; parent of the joins' contexts
	cancel       context.CancelFunc
	wg           sync.WaitGroup // the joins' goroutines and checkRestored
	ln           *net.UnixListener
	ino          uint64 // the socket file's inode, to remove only ours
}

type join struct {
	cancel context.CancelFunc
	done   chan struct{}
}

// New makes a Server, loading its state file if there is one.
func New(cfg Config) (*Server, error) {
	d := DefaultConfig()
	if cfg.Name == "" {
		cfg.Name = d.Name
	}
	if cfg.Dir == "" {
		cfg.Dir = d.Dir
	}
	if cfg.EngineRetry <= 0 {
		cfg.EngineRetry = d.EngineRetry
	}
	if cfg.EngineRetryMax <= 0 {
		cfg.EngineRetryMax = d.EngineRetryMax
	}
	if cfg.EngineRetryFor <= 0 {
		cfg.EngineRetryFor = d.EngineRetryFor
	}
	if err := CheckName(cfg.Name); err != nil {
		return nil, err
	}
	if cfg.Links == nil {
		return nil, errors.New("plugin: no Links")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	s := &Server{
		cfg: cfg, log: cfg.Logger.With("plugin", cfg.Name),
		networks: map[string]*Network{}, endpoints: map[string]*Endpoint{}, joins: map[string]*join{},
		restoredNets: map[string]*Network{}, restoredEps: map[string]*Endpoint{},
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	if err := s.load(); err != nil {
		return nil, err
	}
	return s, nil
}

// Name is the plugin's name.
func (s *Server) Name() string { return s.cfg.Name }

// SocketPath is where the Server listens.
func (s *Server) SocketPath() string { return filepath.Join(s.cfg.Dir, s.cfg.Name+".sock") }

// Listen opens the socket. A socket of that name that answers belongs to
// another live process (another router with the same --plugin-name): that
// is an error; a dead one is replaced.
func (s *Server) Listen() error {
	path := s.SocketPath()
	if err := os.MkdirAll(s.cfg.Dir, 0o755); err != nil {
		return fmt.Errorf("plugin: %w", err)
	}
	if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
		c.Close()
		return fmt.Errorf("plugin: %s is served by another process (another router with --plugin-name %s?)", path, s.cfg.Name)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("plugin: remove stale socket: %w", err)
	}
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		return fmt.Errorf("plugin: %w", err)
	}
	ln.SetUnlinkOnClose(false)
	var st syscall.Stat_t
	if err := syscall.Stat(path, &st); err == nil {
		s.ino = st.Ino
	}
	s.ln = ln
	return nil
}

// Serve answers calls on the socket from Listen until ctx ends, then
// closes the socket (removing it unless another process replaced it),
// stops the Observer's goroutines and returns once they have exited.
func (s *Server) Serve(ctx context.Context) error {
	if s.ln == nil {
		return errors.New("plugin: Serve before Listen")
	}
	srv := &http.Server{Handler: s.Handler(), ReadHeaderTimeout: 10 * time.Second}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(s.ln) }()
	s.log.Info("docker plugin listening", "socket", s.SocketPath())
	s.rejoin()
	s.startCheck()
	var err error
	select {
	case <-ctx.Done():
	case err = <-errc:
	}
	// Calls waiting on IPAM give up first, so that Shutdown does not wait
	// for them.
	s.cancel()
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	srv.Shutdown(sctx)
	if err == nil {
		<-errc
	}
	var st syscall.Stat_t
	if serr := syscall.Stat(s.SocketPath(), &st); serr == nil && st.Ino == s.ino {
		os.Remove(s.SocketPath())
	}
	s.Close()
	if errors.Is(err, http.ErrServerClosed) {
		err = nil
	}
	return err
}

// Close stops the Observer's goroutines and the check of the restored
// records, and waits for them. Idempotent.
func (s *Server) Close() error {
	s.cancel()
	s.wg.Wait()
	return nil
}

// Knows reports whether the plugin holds a record of network networkID.
func (s *Server) Knows(networkID string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.networks[networkID]
	return ok
}

// Endpoints returns the endpoints on this host, for status.
func (s *Server) Endpoints() []Endpoint {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Endpoint, 0, len(s.endpoints))
	for _, ep := range s.endpoints {
		out = append(out, *ep)
	}
	return out
}

// Handler is the plugin API over HTTP.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	handle := func(method string, fn func(body []byte) (any, error)) {
		mux.HandleFunc("POST /"+method, func(w http.ResponseWriter, r *http.Request) {
			body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
			var resp any
			if err == nil {
				resp, err = fn(body)
			}
			w.Header().Set("Content-Type", mediaType)
			if err != nil {
				s.log.Info("docker plugin call refused", "call", method, "err", err)
				resp = errResponse{Err: err.Error(), Error: err.Error()}
			} else {
				s.log.Debug("docker plugin call", "call", method)
			}
			json.NewEncoder(w).Encode(resp)
		})
	}
	handle("Plugin.Activate", func([]byte) (any, error) {
		return activateResponse{Implements: []string{"NetworkDriver", "IpamDriver"}}, nil
	})
	s.networkHandlers(handle)
	s.ipamHandlers(handle)
	return mux
}

// decode parses a request body into v.
func decode(body []byte, v any) error {
	if len(body) == 0 {
		return nil
	}
	if err := json.Unmarshal(body, v); err != nil {
		return fmt.Errorf("malformed request: %w", err)
	}
	return nil
}
