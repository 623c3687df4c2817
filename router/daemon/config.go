// Package daemon owns the weave router process: its configuration (from the
// CLI's flags), its lifecycle (pid lock, Unix socket, log file, signals,
// launch as a detached background process, stop, reset), the state that
// survives a restart (peer name, targets), the composition of the mesh, the
// data plane and the container network, and the HTTP API the CLI talks to.
package daemon

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/weavelab/weave/dns/server"
	"github.com/weavelab/weave/mesh"
	"github.com/weavelab/weave/mesh/handshake"
	"github.com/weavelab/weave/mesh/identity"
	"github.com/weavelab/weave/router/daemon/firewall"
	"github.com/weavelab/weave/router/plugin"
)

// Defaults that DefaultConfig fills in.
const (
	DefaultPort        = mesh.DefaultPort
	DefaultMetricsAddr = "127.0.0.1:6782"
	DefaultRunDir      = "/run/weave"
	DefaultStateDir    = "/var/lib/weave"
	DefaultBridge      = "weave"
	DefaultIPRange     = "10.32.0.0/12"
	DefaultDNSDomain   = "weave.local."
	// DefaultDNSListen is weaveDNS's address: a link-local address on the
	// bridge that every attached container reaches (see dns.DefaultServiceAddr).
	DefaultDNSListen = "169.254.53.53:53"
	DefaultLogLevel  = "info"
	// DefaultIPAllocGrace is how long a dead container's addresses are
	// kept for it.
	DefaultIPAllocGrace = 30 * time.Second
)

// Environment variables the daemon and CLI read.
const (
	EnvRunDir   = "WEAVE_RUN_DIR"
	EnvStateDir = "WEAVE_STATE_DIR"
	EnvPassword = "WEAVE_PASSWORD"
	// EnvNetworkSalt is read when --network-salt is not given.
	EnvNetworkSalt = "WEAVE_NETWORK_SALT"
)

// maxNetworkSalt bounds --network-salt.
const maxNetworkSalt = 1024

// ErrBadConfig is wrapped by errors from Config.Validate about flags.
var ErrBadConfig = errors.New("invalid configuration")

// ErrBadPeer is wrapped by errors from ParsePeer (it is the mesh's
// ErrBadPeerAddr: one parser, one error).
var ErrBadPeer = mesh.ErrBadPeerAddr

// Config is everything a router needs to start. Fill it from DefaultConfig
// and flags, then call Validate.
type Config struct {
	Version string // build version, shown by status

	// Name is the peer name in MAC form; empty means the one kept in the
	// state dir (created on first launch).
	Name     string
	NickName string
	Port     int // TCP and UDP
	// NoDiscovery stops the router from connecting to peers it learns of
	// by gossip.
	NoDiscovery bool
	// NoUDPOffload turns off UDP send segmentation offload (UDP_SEGMENT)
	// in the data plane, for NICs or drivers that mishandle it.
	NoUDPOffload bool
	// NoFastDP turns off the kernel fast path (a VXLAN device on the
	// bridge, UDP port Port+1) for unencrypted traffic between directly
	// connected peers. With a password it is off anyway.
	NoFastDP bool
	// MTU of the containers' interfaces; 0 picks the default that fits the
	// underlay with the encapsulation overhead.
	MTU         int
	MetricsAddr string // "" disables the metrics server
	LogLevel    string // debug, info, warn, error

	// IPAM: the allocation range, the subnet of net:default (empty: the
	// whole range), how the range is first divided ("consensus",
	// "consensus=N" or "observer"; empty: consensus among the peers given
	// at launch and us), and how long a dead container's addresses wait
	// for it to come back.
	IPAllocRange         string
	IPAllocDefaultSubnet string
	IPAllocInit          string
	IPAllocGrace         time.Duration
	// KeyExchangeInterval is how often encrypted connections run a fresh
	// ephemeral key exchange (post-compromise security).
	KeyExchangeInterval time.Duration
	// Cipher is the data-plane cipher policy: auto, aes-gcm or nacl.
	Cipher string
	// NoDocker: do not talk to the Docker Engine (netns: and pid:
	// containers only).
	NoDocker bool
	// NoProxy: do not serve the Docker API proxy on $WEAVE_RUN_DIR/docker.sock.
	NoProxy bool
	// PluginName names the Docker network and IPAM plugin (its socket
	// under PluginDir, and the driver of docker network create).
	PluginName string
	// PluginDir is where the plugin's socket goes; empty is Docker's
	// /run/docker/plugins.
	PluginDir string
	// NoDefaultNetwork: do not create the Docker network "weave" at launch.
	NoDefaultNetwork bool
	// Accepted and stored for the DNS issue.
	NoDNS            bool
	DNSDomain        string
	DNSListenAddress string
	DNSUpstream      []string

	// Password of the network; nil for none. Never logged or put in argv.
	Password []byte
	// NetworkSalt is mixed into the password's key derivation; "" uses the
	// handshake package's default.
	NetworkSalt string

	Peers []string // initial targets, host[:port]

	RunDir   string
	StateDir string
	Bridge   string

	// FirewallRunner runs the host firewall tools (iptables or nft) that
	// open FORWARD for the bridge's traffic; nil runs the real ones.
	// Tests pass a fake.
	FirewallRunner firewall.Runner
}

// DefaultConfig returns the defaults, with the run and state dirs taken
// from $WEAVE_RUN_DIR and $WEAVE_STATE_DIR when set.
func DefaultConfig() Config {
	nick, err := os.Hostname()
	if err != nil || nick == "" {
		nick = "weave"
	}
	return Config{
		Version:             "dev",
		NickName:            nick,
		Port:                DefaultPort,
		MetricsAddr:         DefaultMetricsAddr,
		LogLevel:            DefaultLogLevel,
		IPAllocRange:        DefaultIPRange,
		IPAllocGrace:        DefaultIPAllocGrace,
		KeyExchangeInterval: handshake.DefaultKeyExchangeInterval,
		Cipher:              string(handshake.CipherAuto),
		DNSDomain:           DefaultDNSDomain,
		DNSListenAddress:    DefaultDNSListen,
		RunDir:              envOr(EnvRunDir, DefaultRunDir),
		StateDir:            envOr(EnvStateDir, DefaultStateDir),
		Bridge:              DefaultBridge,
		PluginName:          plugin.DefaultName,
	}
}

func envOr(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}

// Validate checks every field and normalises the peers to host:port. It
// changes nothing outside c.
func (c *Config) Validate() error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: "+format, append([]any{ErrBadConfig}, args...)...)
	}
	if c.Name != "" {
		if _, err := identity.ParsePeerName(c.Name); err != nil {
			return bad("--name: %w", err)
		}
	}
	if err := checkNickName(c.NickName); err != nil {
		return bad("--nickname %q: %w", c.NickName, err)
	}
	if c.Port < 1 || c.Port > 65535 {
		return bad("--port %d: want 1-65535", c.Port)
	}
	if c.MTU != 0 && (c.MTU < 576 || c.MTU > 65000) {
		return bad("--mtu %d: want 576-65000 (or 0 for the default)", c.MTU)
	}
	if c.MetricsAddr != "" {
		if err := checkListenAddr(c.MetricsAddr); err != nil {
			return bad("--metrics-addr %q: %w", c.MetricsAddr, err)
		}
	}
	if _, err := ParseLogLevel(c.LogLevel); err != nil {
		return bad("--log-level: %w", err)
	}
	var rng netip.Prefix
	if c.IPAllocRange != "" {
		p, err := netip.ParsePrefix(c.IPAllocRange)
		if err != nil {
			return bad("--ipalloc-range %q: want a CIDR like 10.32.0.0/12", c.IPAllocRange)
		}
		if !p.Addr().Is4() || p.Bits() > 30 || p.Bits() < 1 {
			return bad("--ipalloc-range %s: want an IPv4 range from /1 to /30", p)
		}
		rng = p.Masked()
	}
	if c.IPAllocDefaultSubnet != "" {
		p, err := netip.ParsePrefix(c.IPAllocDefaultSubnet)
		if err != nil {
			return bad("--ipalloc-default-subnet %q: want a CIDR like 10.32.0.0/12", c.IPAllocDefaultSubnet)
		}
		if rng.IsValid() && !(rng.Contains(p.Addr()) && p.Bits() >= rng.Bits()) {
			return bad("--ipalloc-default-subnet %s is not inside --ipalloc-range %s", p, rng)
		}
	}
	if _, _, err := c.IPAllocQuorum(); err != nil {
		return bad("--ipalloc-init %q: %w", c.IPAllocInit, err)
	}
	if c.IPAllocGrace < 0 {
		return bad("--ipalloc-grace %s: must not be negative", c.IPAllocGrace)
	}
	if _, err := handshake.ParseCipherPolicy(c.Cipher); err != nil {
		return bad("--cipher: %w", err)
	}
	if c.KeyExchangeInterval < time.Second {
		return bad("--key-exchange-interval %s: must be at least 1s", c.KeyExchangeInterval)
	}
	if c.DNSListenAddress != "" && !c.NoDNS {
		if err := checkListenAddr(c.DNSListenAddress); err != nil {
			return bad("--dns-listen-address %q: %w", c.DNSListenAddress, err)
		}
	}
	if !c.NoDNS {
		if _, err := c.DNSListen(); err != nil {
			return bad("--dns-listen-address %q: %w", c.DNSListenAddress, err)
		}
	}
	for _, u := range c.DNSUpstream {
		if _, err := server.ParseUpstream(u); err != nil {
			return bad("--dns-upstream %q: %w", u, err)
		}
	}
	if c.DNSDomain != "" && !validHostname(strings.TrimSuffix(c.DNSDomain, ".")) {
		return bad("--dns-domain %q: not a domain name", c.DNSDomain)
	}
	if len(c.NetworkSalt) > maxNetworkSalt {
		return bad("--network-salt: longer than %d bytes", maxNetworkSalt)
	}
	if c.RunDir == "" || !filepath.IsAbs(c.RunDir) {
		return bad("run dir %q: want an absolute path ($%s)", c.RunDir, EnvRunDir)
	}
	if c.StateDir == "" || !filepath.IsAbs(c.StateDir) {
		return bad("state dir %q: want an absolute path ($%s)", c.StateDir, EnvStateDir)
	}
	if err := plugin.CheckName(c.PluginName); err != nil {
		return bad("--plugin-name: %w", err)
	}
	if c.Bridge == "" || len(c.Bridge) > 15 {
		return bad("bridge name %q: want 1-15 characters", c.Bridge)
	}
	peers, err := ParsePeers(c.Peers)
	if err != nil {
		return err
	}
	c.Peers = peers
	return nil
}

// DNSListen returns weaveDNS's listen address: an IPv4 address (unspecified
// means every address, with containers sent to dns.DefaultServiceAddr) and a
// port.
func (c *Config) DNSListen() (netip.AddrPort, error) {
	s := c.DNSListenAddress
	if s == "" {
		s = DefaultDNSListen
	}
	ap, err := netip.ParseAddrPort(s)
	if err != nil {
		return netip.AddrPort{}, errors.New("want IP:port, e.g. " + DefaultDNSListen)
	}
	if !ap.Addr().Is4() {
		return netip.AddrPort{}, errors.New("want an IPv4 address")
	}
	return ap, nil
}

// IPAllocQuorum returns how many peers must agree on the first division
// of the range (a majority of the peers named at launch and us, unless
// --ipalloc-init consensus=N says otherwise), or observer.
func (c *Config) IPAllocQuorum() (quorum int, observer bool, err error) {
	switch v := c.IPAllocInit; {
	case v == "observer":
		return 1, true, nil
	case v == "" || v == "consensus":
		return (len(c.Peers)+1)/2 + 1, false, nil
	case strings.HasPrefix(v, "consensus="):
		n, err := strconv.Atoi(strings.TrimPrefix(v, "consensus="))
		if err != nil || n < 1 || n > 1000 {
			return 0, false, errors.New("consensus=N wants the number of peers, 1-1000")
		}
		return n/2 + 1, false, nil
	}
	return 0, false, errors.New("want consensus, consensus=N (the number of initial peers) or observer")
}

func checkNickName(s string) error {
	if s == "" {
		return errors.New("empty")
	}
	if len(s) > identity.MaxNickNameLen {
		return fmt.Errorf("longer than %d bytes", identity.MaxNickNameLen)
	}
	for _, r := range s {
		if r <= ' ' || r == '(' || r == ')' || r > '~' {
			return fmt.Errorf("character %q not allowed", r)
		}
	}
	return nil
}

func checkListenAddr(s string) error {
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return errors.New("want host:port")
	}
	if host != "" {
		if _, err := netip.ParseAddr(host); err != nil && !validHostname(host) {
			return fmt.Errorf("bad host %q", host)
		}
	}
	if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
		return fmt.Errorf("bad port %q", port)
	}
	return nil
}

// ParsePeers parses and normalises every peer; the first bad one is an
// error. Duplicates are dropped.
func ParsePeers(peers []string) ([]string, error) {
	out := make([]string, 0, len(peers))
	seen := map[string]bool{}
	for _, p := range peers {
		n, err := ParsePeer(p)
		if err != nil {
			return nil, err
		}
		if !seen[n] {
			seen[n] = true
			out = append(out, n)
		}
	}
	return out, nil
}

// ParsePeer parses PEER = host[:port] (IPv6 as [addr]:port or a bare
// address) and returns it as host:port, the port defaulting to 6783: the
// mesh's parser (mesh.ParsePeerAddr), the one the router's Connect uses.
func ParsePeer(s string) (string, error) { return mesh.ParsePeerAddr(s, DefaultPort) }

// validHostname accepts RFC 1123 host names (mesh.ValidHostName).
func validHostname(h string) bool { return mesh.ValidHostName(h) }

// ParseLogLevel parses debug, info, warn (or warning) or error.
func ParseLogLevel(s string) (slog.Level, error) {
	switch strings.ToLower(s) {
	case "debug":
		return slog.LevelDebug, nil
	case "info":
		return slog.LevelInfo, nil
	case "warn", "warning":
		return slog.LevelWarn, nil
	case "error":
		return slog.LevelError, nil
	}
	return 0, fmt.Errorf("level %q: want debug, info, warn or error", s)
}

// Paths are the files of one router in its run dir.
type Paths struct {
	Socket string
	PID    string
	Log    string
	// Proxy is the Docker API proxy's socket.
	Proxy string
}

// RunPaths returns the run-dir files for runDir.
func RunPaths(runDir string) Paths {
	return Paths{
		Socket: filepath.Join(runDir, "weave.sock"),
		PID:    filepath.Join(runDir, "weave.pid"),
		Log:    filepath.Join(runDir, "weave.log"),
		Proxy:  filepath.Join(runDir, "docker.sock"),
	}
}

// cipherWarning is what launch warns about the --cipher policy (checked
// already), given whether the network has a password and this CPU has the
// AES hardware that Go's AES-GCM needs; "" when nothing is amiss.
func cipherWarning(policy string, encrypted, hardwareAES bool) string {
	cipher, _ := handshake.ParseCipherPolicy(policy)
	switch {
	case !encrypted && cipher != handshake.CipherAuto:
		return "--cipher " + policy + " is ignored: no password, so traffic is not encrypted"
	case encrypted && cipher == handshake.CipherAESGCM && !hardwareAES:
		return "--cipher aes-gcm on a CPU without AES hardware: Go's software AES is slow and its timing depends on the key; --cipher auto would choose ChaCha20-Poly1305 here"
	}
	return ""
}
