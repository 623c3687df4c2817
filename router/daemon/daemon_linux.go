package daemon

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"time"

	weavedns "github.com/weavelab/weave/dns"
	"github.com/weavelab/weave/dns/replicate"
	"github.com/weavelab/weave/mesh"
	"github.com/weavelab/weave/mesh/handshake"
	"github.com/weavelab/weave/mesh/identity"
	"github.com/weavelab/weave/proxy"
	"github.com/weavelab/weave/router"
	"github.com/weavelab/weave/router/api"
	"github.com/weavelab/weave/router/daemon/firewall"
	"github.com/weavelab/weave/router/docker"
	"github.com/weavelab/weave/router/ipam"
	"github.com/weavelab/weave/router/netdev"
	"github.com/weavelab/weave/router/overlay"
	"github.com/weavelab/weave/router/plugin"
)

// RunForeground runs the router until ctx ends or a client asks it to
// stop, logging to stderr and to the log file in the run dir (once, when
// stderr is that file, as for a router started by Launch), which rotates
// by size (DefaultLogMaxSize, DefaultLogKeep old files), with repeated
// records rate-limited. cfg must have been validated.
func RunForeground(ctx context.Context, cfg Config, stderr *os.File) error {
	level, err := ParseLogLevel(cfg.LogLevel)
	if err != nil {
		return err
	}
	if err := CheckDirs(cfg.RunDir, cfg.StateDir); err != nil {
		return err
	}
	logf, launched, err := openDaemonLog(cfg.RunDir, stderr)
	if err != nil {
		return err
	}
	defer logf.Close()
	var log *slog.Logger
	if launched {
		log = NewLogger(level, logf)
	} else {
		log = NewLogger(level, stderr, logf)
	}
	defer flushLog(log)
	if err := Run(ctx, cfg, log); err != nil {
		log.Error("weave router failed", "err", err)
		return err
	}
	return nil
}

// Run is the daemon: it takes the pid lock, builds the router's parts,
// serves the API on the Unix socket and metrics on TCP, and on ctx's end or
// an API stop shuts everything down in reverse order, returning once every
// goroutine it started has exited. cfg must have been validated.
func Run(ctx context.Context, cfg Config, log *slog.Logger) error {
	paths := RunPaths(cfg.RunDir)
	if err := CheckDirs(cfg.RunDir, cfg.StateDir); err != nil {
		return err
	}
	if err := os.MkdirAll(cfg.RunDir, 0o755); err != nil {
		return fmt.Errorf("run dir: %w", err)
	}
	lock, err := AcquirePIDLock(paths.PID)
	if err != nil {
		return err
	}
	defer lock.Release()
	// We hold the lock, so a socket still there is a killed daemon's.
	if err := os.Remove(paths.Socket); err == nil {
		log.Info("removed stale socket", "path", paths.Socket)
	}

	state, err := OpenState(cfg.StateDir)
	if err != nil {
		return err
	}
	key, err := state.Identity(cfg.Name)
	if err != nil {
		return err
	}
	name := key.Name()
	uid, err := identity.RandomUID()
	if err != nil {
		return err
	}
	us := identity.Peer{Name: name, NickName: cfg.NickName, UID: uid}
	var psk *handshake.PSK
	salt := ""
	switch {
	case cfg.Password != nil && cfg.NetworkSalt != "":
		psk, salt = handshake.DeriveKey(cfg.Password, []byte(cfg.NetworkSalt)), api.SaltNetwork
	case cfg.Password != nil:
		psk, salt = handshake.DeriveKey(cfg.Password, nil), api.SaltDefault
		// Handshakes reveal nothing to test guesses against (CPace), so
		// the salt only matters if a router's derived key leaks.
		log.Warn("encryption: the password is stretched with the default salt; a per-network salt (--network-salt or $" +
			EnvNetworkSalt + ", the same on every peer) keeps a key leaked from a router's memory from being matched against password tables precomputed for the default")
	case cfg.NetworkSalt != "":
		log.Warn("--network-salt is ignored: no password, so traffic is not encrypted")
	}
	if w := cipherWarning(cfg.Cipher, psk != nil, handshake.HardwareAES()); w != "" {
		log.Warn(w)
	}
	// After the key derivation, whose Argon2id lanes use every processor.
	if set, why := routerProcs(os.Getenv("GOMAXPROCS"), runtime.GOMAXPROCS(0)); set > 0 {
		runtime.GOMAXPROCS(set)
		log.Info("scheduler", "procs", set, "why", why)
	} else {
		log.Debug("scheduler", "procs", runtime.GOMAXPROCS(0), "why", why)
	}
	// The containers' MTU follows the underlay (1376 on a 1500 underlay)
	// unless --mtu sets it.
	underlay, err := overlay.DetectUnderlayMTU(netip.Addr{})
	if err != nil {
		log.Warn("cannot tell the underlay MTU, assuming 1500", "err", err)
		underlay = 1500
	}
	mtu := cfg.MTU
	if mtu == 0 {
		mtu = overlay.DefaultMTUFor(underlay)
	}
	reg := newRegistry()

	// The host side (bridge, TAP, host veth ends) takes frames larger than
	// the containers' MTU, so that a container that raised its MTU still
	// reaches the overlay, which answers with ICMP "fragmentation needed"
	// or lets the kernel fragment, instead of the bridge dropping silently.
	n := &node{log: log, state: state, stats: nil}
	var dnsListen netip.AddrPort
	var serviceAddr netip.Addr
	if !cfg.NoDNS {
		dnsListen, _ = cfg.DNSListen()
		serviceAddr = dnsListen.Addr()
		if serviceAddr.IsUnspecified() {
			serviceAddr = netip.MustParseAddr(weavedns.DefaultServiceAddr)
		}
		if dnsListen.Port() != 53 {
			log.Warn("weaveDNS: containers' resolvers can only use port 53; they are not pointed at this one", "listen", dnsListen)
		}
	}
	rt, err := router.New(router.Config{Bridge: cfg.Bridge, MTU: mtu, HostMTU: router.MaxHostMTU, StateDir: cfg.StateDir, Logger: log, OnGone: n.onGone, ServiceAddr: serviceAddr})
	if err != nil {
		return err
	}
	defer func() {
		// The overlay has closed the TAP already; this only forgets it.
		if err := rt.Close(); err != nil {
			log.Debug("close router", "err", err)
		}
	}()

	openFirewall(ctx, cfg, log)

	var m *mesh.Router
	ocfg := overlay.DefaultConfig()
	ocfg.Peer = name
	ocfg.UDPPort = cfg.Port
	ocfg.Device = rt.TAP()
	ocfg.Routes = func() overlay.RouteTable {
		if r := m.Routes(); r != nil {
			return r
		}
		return noRoutes{}
	}
	ocfg.MTU = mtu
	ocfg.UnderlayMTU = underlay
	ocfg.UDPOffload = !cfg.NoUDPOffload
	if fp := openFastPath(cfg, log); fp != nil {
		ocfg.FastPath = fp
	}
	ocfg.Logger = log
	ocfg.Registerer = reg
	ov, err := overlay.New(ocfg)
	if err != nil {
		return err
	}
	defer ov.Close()

	quorum, observer, _ := cfg.IPAllocQuorum()
	rng, _ := netip.ParsePrefix(cfg.IPAllocRange)
	var defSubnet netip.Prefix
	if cfg.IPAllocDefaultSubnet != "" {
		defSubnet, _ = netip.ParsePrefix(cfg.IPAllocDefaultSubnet)
	}
	alloc, err := ipam.New(ipam.Config{
		Peer: name, Range: rng, DefaultSubnet: defSubnet, Quorum: quorum, Observer: observer,
		Grace: cfg.IPAllocGrace, StateDir: cfg.StateDir, Logger: log,
		Reachable: func(p identity.PeerName) bool {
			_, ok := m.Routes().Unicast(p)
			return ok
		},
		Peers: func() []identity.PeerName { return m.Routes().Reachable() },
	})
	if err != nil {
		return err
	}
	defer alloc.Close()
	reg.MustRegister(alloc.Collector())

	mcfg := mesh.DefaultConfig()
	mcfg.Peer = us
	mcfg.Key = key
	mcfg.KeyExchangeInterval = cfg.KeyExchangeInterval
	cipher, _ := handshake.ParseCipherPolicy(cfg.Cipher) // checked by cfg.Check
	mcfg.Cipher = cipher
	mcfg.Port = cfg.Port
	mcfg.PSK = psk
	mcfg.NoDiscovery = cfg.NoDiscovery
	mcfg.Overlay = ov
	mcfg.Logger = log
	if m, err = mesh.New(mcfg); err != nil {
		return err
	}
	defer m.Close()

	gc := m.NewGossipChannel(ipam.ChannelName, alloc)
	if !cfg.NoDNS {
		svc, err := weavedns.New(weavedns.Config{
			Peer: name, Domain: cfg.DNSDomain, Listen: dnsListen, Upstreams: cfg.DNSUpstream,
			StateDir: cfg.StateDir, Logger: log,
			Connect: func(g mesh.Gossiper) replicate.Sender { return m.NewGossipChannel(weavedns.ChannelName, g) },
			Peers:   func() []identity.PeerName { return m.Routes().Reachable() },
		})
		if err != nil {
			return err
		}
		defer svc.Close()
		n.dns = svc
	}

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	alloc.Start(ctx, gc)
	if err := ov.Start(ctx); err != nil {
		return err
	}
	if err := m.Start(ctx); err != nil {
		return err
	}

	n.info = nodeInfo{
		Version: cfg.Version, PID: os.Getpid(), Port: cfg.Port,
		Discovery: !cfg.NoDiscovery, Encryption: psk != nil, Salt: salt, Cipher: string(cipher), Config: cfg.reportMap(),
	}
	n.mesh, n.net, n.stats, n.ipam = m, rt, ov, alloc
	// The Docker client, and the plugin with the endpoints of its state
	// file, come before weaveDNS forgets the names of containers that went
	// while the router was down: the plugin's joined containers keep
	// theirs (the plugin registers them again as it starts).
	var eng *docker.Engine
	if !cfg.NoDocker {
		if e, err := docker.New(log); err != nil {
			log.Warn("docker: no client; Docker containers cannot be attached", "err", err)
		} else {
			eng = e
			n.docker = e
			defer e.Close() // after dockerWG.Wait below: its goroutines use it
		}
	}
	var psrv *plugin.Server
	if eng != nil {
		n.pluginNets = eng
		psrv = newPlugin(cfg, n, rt, eng, log)
	}
	if svc, ok := n.dns.(*weavedns.Service); ok {
		if err := svc.Start(ctx); err != nil {
			if psrv != nil {
				psrv.Close()
			}
			return err
		}
		n.dnsForgetDead(ctx, psrv)
	}
	n.bridgeMAC = func() string {
		if ifi, err := net.InterfaceByName(cfg.Bridge); err == nil {
			return ifi.HardwareAddr.String()
		}
		return "-"
	}
	var dockerWG sync.WaitGroup
	defer func() {
		cancel()
		dockerWG.Wait()
	}()
	if eng != nil {
		dockerWG.Add(1)
		go func() {
			defer dockerWG.Done()
			docker.Watch(ctx, eng, log, dockerEvents{ctx: ctx, n: n})
		}()
	}
	dockerWG.Add(1)
	go func() {
		defer dockerWG.Done()
		reconcileLoop(ctx, n, reconcileInterval)
	}()
	if !cfg.NoDocker && !cfg.NoProxy {
		if px, err := newProxy(cfg, n, serviceAddr, log); err != nil {
			log.Warn("docker api proxy: not started", "err", err)
		} else if err := px.Listen(); err != nil {
			log.Warn("docker api proxy: not started", "err", err)
		} else {
			dockerWG.Add(1)
			go func() {
				defer dockerWG.Done()
				if err := px.Serve(ctx); err != nil {
					log.Warn("docker api proxy stopped", "err", err)
				}
			}()
		}
	}
	// The Docker network plugin, whenever there is a Docker client.
	if psrv != nil {
		startPlugin(ctx, cfg, n, psrv, eng, &dockerWG, log)
	}
	if err := n.restoreTargets(cfg.Peers); err != nil {
		return err
	}

	var metricsLn net.Listener
	if cfg.MetricsAddr != "" {
		if metricsLn, err = net.Listen("tcp", cfg.MetricsAddr); err != nil {
			return fmt.Errorf("metrics: %w", err)
		}
	}
	apiLn, err := ListenSocket(paths.Socket)
	if err != nil {
		if metricsLn != nil {
			metricsLn.Close()
		}
		return err
	}
	defer os.Remove(paths.Socket)

	var wg sync.WaitGroup
	errc := make(chan error, 2)
	serve := func(what string, ln net.Listener, h func() error) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := h(); err != nil {
				errc <- fmt.Errorf("%s server: %w", what, err)
			}
		}()
	}
	serve("API", apiLn, func() error {
		return serveHTTP(ctx, apiLn, NewHandler(n, cfg.Version, cancel, log), log)
	})
	if metricsLn != nil {
		serve("metrics", metricsLn, func() error {
			return serveHTTP(ctx, metricsLn, metricsHandler(reg, n), log)
		})
	}
	log.Info("weave router started", "name", us.Name, "nickname", us.NickName, "uid", uint64(us.UID),
		"port", cfg.Port, "encryption", psk != nil, "discovery", !cfg.NoDiscovery, "mtu", mtu,
		"socket", paths.Socket, "metrics", cfg.MetricsAddr, "version", cfg.Version)

	var runErr error
	select {
	case <-ctx.Done():
	case runErr = <-errc:
	}
	log.Info("weave router stopping")
	// weaveDNS says goodbye while the mesh still carries it, so the other
	// routers drop our names at once instead of after a failure timeout.
	if svc, ok := n.dns.(*weavedns.Service); ok {
		svc.Close()
	}
	cancel()
	wg.Wait()
	// Deferred, in this order: socket removed, mesh closed (its
	// connections stop their overlay halves), overlay closed (with the
	// TAP), router forgets the TAP, pid lock released.
	return runErr
}

// restoreTargets connects to the targets saved in the state dir plus
// those given at launch, and saves the union.
func (n *node) restoreTargets(extra []string) error {
	saved, err := n.state.Targets()
	if err != nil {
		n.log.Warn("ignoring saved targets", "err", err)
	}
	saved, err = ParsePeers(saved)
	if err != nil {
		n.log.Warn("ignoring saved targets", "err", err)
		saved = nil
	}
	all, _ := ParsePeers(append(saved, extra...))
	n.mu.Lock()
	defer n.mu.Unlock()
	if len(all) > 0 {
		if err := n.mesh.Connect(all, false); err != nil {
			return fmt.Errorf("connect to %v: %w", all, err)
		}
		n.log.Info("targets", "peers", all)
	}
	return n.saveTargetsLocked()
}

// reconcileInterval is how often the container table is checked for
// namespaces that vanished without an event.
const reconcileInterval = 5 * time.Second

// noRoutes is the routing table before the mesh has computed one: nothing
// is reachable.
type noRoutes struct{}

func (noRoutes) Unicast(identity.PeerName) (identity.PeerName, bool) { return 0, false }
func (noRoutes) Broadcast(identity.PeerName) []identity.PeerName     { return nil }

// openFastPath makes the kernel fast path's VXLAN device (UDP port
// cfg.Port+1) unless --no-fastdp or a password says not to; nil runs
// without it (also when the device cannot be made, which is logged).
func openFastPath(cfg Config, log *slog.Logger) *netdev.VXLAN {
	name := router.VXLANName(cfg.Bridge)
	if cfg.NoFastDP || cfg.Password != nil {
		if err := netdev.DeleteLink(name); err != nil {
			log.Warn("fast path: remove old device", "err", err)
		}
		return nil
	}
	// The device's MTU is the largest the kernel allows, not the
	// containers': a container that raised its MTU above the overlay's
	// still gets its frames through (the kernel fragments the outer
	// packet, as the userspace path fragments), where an egress port with
	// a smaller MTU would make the bridge drop them without a word.
	fp, err := netdev.EnsureVXLAN(name, cfg.Bridge, cfg.Port+1, netdev.VXLANMaxMTU)
	if err != nil {
		log.Warn("fast path unavailable, using the userspace path only", "err", err)
		return nil
	}
	log.Info("fast path ready", "device", name, "port", fp.Port())
	return fp
}

// reportMap is the configuration as report shows it (no password).
func (c Config) reportMap() map[string]any {
	return map[string]any{
		"name": c.Name, "nickname": c.NickName, "port": c.Port, "no_discovery": c.NoDiscovery,
		"no_udp_offload": c.NoUDPOffload, "no_fastdp": c.NoFastDP, "mtu": c.MTU, "metrics_addr": c.MetricsAddr, "log_level": c.LogLevel,
		"ipalloc_range": c.IPAllocRange, "ipalloc_default_subnet": c.IPAllocDefaultSubnet,
		"ipalloc_init": c.IPAllocInit, "ipalloc_grace": c.IPAllocGrace.String(), "no_docker": c.NoDocker,
		"no_dns": c.NoDNS, "dns_domain": c.DNSDomain, "dns_listen_address": c.DNSListenAddress, "dns_upstream": c.DNSUpstream,
		"password": c.Password != nil, "network_salt": c.NetworkSalt != "", "peers": c.Peers,
		"run_dir": c.RunDir, "state_dir": c.StateDir, "bridge": c.Bridge,
		"plugin_name": c.PluginName, "no_default_network": c.NoDefaultNetwork,
	}
}

// Reset removes everything a router made on this host: its host firewall
// rules, the containers' interfaces, the TAP and the bridge (via package
// router), the state dir's contents and the run dir's files. The daemon must not be running.
func Reset(ctx context.Context, cfg Config) error {
	paths := RunPaths(cfg.RunDir)
	// Reset deletes what is in these dirs: never through a symlink or in
	// a dir that someone else controls.
	if err := CheckDirs(cfg.RunDir, cfg.StateDir); err != nil {
		return fmt.Errorf("reset: %w", err)
	}
	if held, pid := LockHolder(paths.PID); held {
		return &RunningError{PID: pid}
	}
	var errs []error
	if fw, err := hostFirewall(cfg); err == nil {
		fctx, cancel := context.WithTimeout(ctx, firewallTimeout)
		err := fw.Remove(fctx)
		cancel()
		if err != nil {
			errs = append(errs, fmt.Errorf("host firewall (%s): %w", fw, err))
		}
	}
	rt, err := router.New(router.Config{Bridge: cfg.Bridge, StateDir: cfg.StateDir, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		errs = append(errs, err)
	} else {
		// The resolv.conf weave wrote under /etc/netns for each netns:
		// container goes with the attachment.
		for _, id := range rt.RecordedIDs() {
			if ref, err := netdev.ParseContainer(id); err == nil && ref.Kind == netdev.KindNetns && ref.Name != "" {
				errs = append(errs, weavedns.RemoveResolvConf(weavedns.NetnsResolvConf(ref.Name)))
			}
		}
		errs = append(errs, rt.Reset())
	}
	entries, err := os.ReadDir(cfg.StateDir)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		errs = append(errs, err)
	}
	for _, e := range entries {
		errs = append(errs, os.RemoveAll(filepath.Join(cfg.StateDir, e.Name())))
	}
	for _, p := range []string{paths.Socket, paths.Socket + ".new", paths.PID, paths.Log, paths.Proxy} {
		if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("reset: %w", err)
	}
	return nil
}

// firewallTimeout bounds the firewall tools' runs (iptables -w waits for
// the xtables lock without limit).
const firewallTimeout = 30 * time.Second

// hostFirewall returns the host firewall backend for cfg's bridge.
func hostFirewall(cfg Config) (firewall.Firewall, error) {
	r := cfg.FirewallRunner
	if r == nil {
		r = firewall.Exec{}
	}
	return firewall.New(r, cfg.Bridge)
}

// openFirewall adds the rules that let the bridge's traffic through the
// host's FORWARD chain (Docker sets its policy to DROP, and br_netfilter
// makes bridged frames pass through it). Failing that is a warning, not an
// error: on a host without a filtering firewall nothing is needed.
func openFirewall(ctx context.Context, cfg Config, log *slog.Logger) {
	fw, err := hostFirewall(cfg)
	if err != nil {
		log.Warn("host firewall: not opening FORWARD for the bridge; if the FORWARD policy is DROP, containers will not reach each other", "bridge", cfg.Bridge, "err", err)
		return
	}
	ctx, cancel := context.WithTimeout(ctx, firewallTimeout)
	defer cancel()
	if err := fw.Ensure(ctx); err != nil {
		log.Warn("host firewall: could not add accept rules to FORWARD; if its policy is DROP, containers will not reach each other", "backend", fw.String(), "bridge", cfg.Bridge, "err", err)
		return
	}
	log.Info("host firewall: accept rules for the bridge in FORWARD", "backend", fw.String(), "bridge", cfg.Bridge)
}

// newProxy builds the Docker API proxy: containers started through it are
// attached by this router (proxyAttacher) and run their command through
// this very binary's wait-iface, bind-mounted into them.
func newProxy(cfg Config, n *node, dnsAddr netip.Addr, log *slog.Logger) (*proxy.Proxy, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	pcfg := proxy.DefaultConfig()
	pcfg.Socket = RunPaths(cfg.RunDir).Proxy
	if h := os.Getenv("DOCKER_HOST"); h != "" {
		pcfg.Upstream = h
	}
	pcfg.WaitBinary, pcfg.DNSAddr, pcfg.Attacher, pcfg.Logger = self, dnsAddr, proxyAttacher{n}, log
	if cfg.DNSDomain != "" {
		pcfg.Domain = cfg.DNSDomain
	}
	return proxy.New(pcfg)
}

// proxyAttacher attaches containers the proxy started.
type proxyAttacher struct{ n *node }

func (a proxyAttacher) Attach(ctx context.Context, id string, addrs []string) ([]string, error) {
	return a.n.Attach(ctx, id, addrs, false)
}
