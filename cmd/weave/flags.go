package main

import (
	"fmt"
	"os"

	"github.com/spf13/pflag"

	"github.com/weavelab/weave/router/daemon"
)

// routerFlags are the flags `weave launch` and `weave router` share.
type routerFlags struct {
	cfg daemon.Config
	pw  daemon.PasswordSource
	// pwWarnings are what reading the password found unwise.
	pwWarnings []string
}

// flags that launch reads itself and never passes on to the router it
// starts (the password travels over a pipe).
var launchOnlyFlags = map[string]bool{"password": true, "password-file": true, "launch-timeout": true}

func bindRouterFlags(fs *pflag.FlagSet, f *routerFlags) {
	f.cfg = daemon.DefaultConfig()
	c := &f.cfg
	fs.StringVar(&c.Name, "name", "", "expected peer name in MAC form: the router's name is derived from its identity key in $WEAVE_STATE_DIR (made at first launch), so this only checks it")
	fs.StringVar(&c.NickName, "nickname", c.NickName, "nickname shown next to the peer name")
	fs.IntVar(&c.Port, "port", c.Port, "TCP control and UDP data port")
	fs.BoolVar(&c.NoDiscovery, "no-discovery", false, "do not connect to peers learnt from other peers")
	fs.BoolVar(&c.NoFastDP, "no-fastdp", false, "do not use the kernel VXLAN fast path (UDP port --port+1) for unencrypted traffic between directly connected peers")
	fs.BoolVar(&c.NoUDPOffload, "no-udp-offload", false, "send overlay datagrams one by one, without UDP segmentation offload (for NICs that mishandle it)")
	fs.IntVar(&c.MTU, "mtu", 0, "MTU of container interfaces (default: fits a 1500-byte underlay, 1376)")
	fs.StringVar(&c.MetricsAddr, "metrics-addr", c.MetricsAddr, "host:port for Prometheus /metrics and /status (empty: off)")
	fs.StringVar(&c.LogLevel, "log-level", c.LogLevel, "debug, info, warn or error")
	fs.StringVar(&c.IPAllocRange, "ipalloc-range", c.IPAllocRange, "address range for automatic allocation (IPAM)")
	fs.StringVar(&c.IPAllocDefaultSubnet, "ipalloc-default-subnet", "", "subnet for net:default (default: the whole range)")
	fs.StringVar(&c.IPAllocInit, "ipalloc-init", "", "how the range is first divided: consensus (among a majority of the peers given at launch and this one), consensus=N (N initial peers), or observer (never divides it; waits for the others)")
	fs.DurationVar(&c.IPAllocGrace, "ipalloc-grace", c.IPAllocGrace, "how long a dead container's addresses are kept for it to come back")
	fs.BoolVar(&c.NoDocker, "no-docker", false, "do not talk to the Docker Engine (netns: and pid: containers only)")
	fs.BoolVar(&c.NoProxy, "no-proxy", false, "do not serve the Docker API proxy on $WEAVE_RUN_DIR/docker.sock (see weave env)")
	fs.StringVar(&c.PluginName, "plugin-name", c.PluginName, "name of the Docker network and IPAM plugin (docker network create -d NAME --ipam-driver NAME); its socket is /run/docker/plugins/NAME.sock")
	fs.BoolVar(&c.NoDefaultNetwork, "no-default-network", false, "do not create the Docker network \"weave\" at launch")
	fs.BoolVar(&c.NoDNS, "no-dns", false, "do not run weaveDNS")
	fs.StringVar(&c.DNSDomain, "dns-domain", c.DNSDomain, "weaveDNS domain")
	fs.StringVar(&c.DNSListenAddress, "dns-listen-address", c.DNSListenAddress, "weaveDNS listen address, IP:port; containers are pointed at it (port 53 only), so the default is a link-local address on the bridge that only this host's containers reach")
	fs.StringArrayVar(&c.DNSUpstream, "dns-upstream", nil, "resolver (IP[:port]) for names outside the domain; repeat for several (default: those of /etc/resolv.conf)")
	fs.StringVar(&c.NetworkSalt, "network-salt", "", "salt for stretching the password with Argon2id, the same on every peer of the network (or set $WEAVE_NETWORK_SALT); handshakes reveal nothing to guess the password from offline whatever the salt, and a salt of your own keeps a key leaked from a router's memory from being matched against tables precomputed for the default (default: a fixed salt)")
	fs.StringVar(&c.Cipher, "cipher", c.Cipher, "data-plane cipher with a password: auto (AES-256-GCM when this CPU and the peer's have AES hardware, else ChaCha20-Poly1305), aes-gcm or nacl (ChaCha20-Poly1305); peers with no cipher in common are refused")
	fs.DurationVar(&c.KeyExchangeInterval, "key-exchange-interval", c.KeyExchangeInterval, "how often an encrypted connection runs a fresh ephemeral key exchange (at least 1s)")
	fs.StringVar(&f.pw.File, "password-file", "", "file holding the network password (or set $WEAVE_PASSWORD)")
	fs.StringVar(&f.pw.Flag, "password", "", "network password (visible to all users in ps: prefer $WEAVE_PASSWORD or --password-file)")
	fs.SortFlags = false
}

// fromEnv fills in, after parsing, the settings that the environment
// gives when their flag is not set.
func (f *routerFlags) fromEnv(fs *pflag.FlagSet) {
	if !fs.Changed("network-salt") {
		f.cfg.NetworkSalt = os.Getenv(daemon.EnvNetworkSalt)
	}
}

// password resolves the password after parsing.
func (f *routerFlags) password(fs *pflag.FlagSet) ([]byte, error) {
	f.pw.FlagSet = fs.Changed("password")
	f.pw.Env = os.Getenv(daemon.EnvPassword)
	f.pw.Warn = func(msg string) { f.pwWarnings = append(f.pwWarnings, msg) }
	return f.pw.Password()
}

// warnings returns what to tell the user about valid but unwise flags.
func (f *routerFlags) warnings() []string {
	w := f.pwWarnings
	if f.pw.FlagSet {
		w = append(w, "weave: warning: --password is visible to every user in ps; prefer $WEAVE_PASSWORD or --password-file")
	}
	return w
}

// routerArgs rebuilds the command line for the router that launch starts:
// every flag the user set except the password ones, then the peers.
func routerArgs(fs *pflag.FlagSet, peers []string) []string {
	args := []string{"router"}
	fs.Visit(func(fl *pflag.Flag) {
		if launchOnlyFlags[fl.Name] {
			return
		}
		if sv, ok := fl.Value.(pflag.SliceValue); ok {
			for _, v := range sv.GetSlice() {
				args = append(args, fmt.Sprintf("--%s=%s", fl.Name, v))
			}
			return
		}
		args = append(args, fmt.Sprintf("--%s=%s", fl.Name, fl.Value.String()))
	})
	args = append(args, "--")
	return append(args, peers...)
}
