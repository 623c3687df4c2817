package dns

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/moby/sys/atomicwriter"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/weavelab/weave/dns/replicate"
	"github.com/weavelab/weave/dns/server"
	"github.com/weavelab/weave/dns/table"
	"github.com/weavelab/weave/mesh"
	"github.com/weavelab/weave/mesh/identity"
)

// Defaults of the router's weaveDNS.
const (
	// DefaultServiceAddr is where containers reach their own host's
	// weaveDNS: a link-local address that every host's bridge carries and
	// that no ARP ever asks for (see router.Config.ServiceAddr), so a
	// container only ever talks to its own host's router.
	DefaultServiceAddr = "169.254.53.53"
	// ChannelName is the mesh gossip channel replication runs on.
	ChannelName = "dns"
	// stateFile keeps our own entries across restarts.
	stateFile = "dns.json"
	// joinInterval is how often the mesh's peers are joined to the
	// replication (peers that appeared) and tombstones collected.
	joinInterval = time.Second
)

// Config configures a Service.
type Config struct {
	Peer identity.PeerName
	// Domain is the zone answered from the table (default weave.local.).
	Domain string
	// Listen is the DNS server's address (the service address, port 53).
	Listen netip.AddrPort
	// Upstreams for other names, ip:port; nil reads /etc/resolv.conf.
	Upstreams []string
	// StateDir keeps our own entries; empty: memory only.
	StateDir string
	// Connect registers the replication on the mesh's gossip channel and
	// returns its sender: router.NewGossipChannel(ChannelName, g).
	Connect func(g mesh.Gossiper) replicate.Sender
	// Peers lists the mesh's reachable peers (for joining them).
	Peers  func() []identity.PeerName
	Logger *slog.Logger
	// Replication and Server tune the parts (tests shorten timings).
	Replication replicate.Config
	Server      server.Config
}

// Service is one router's weaveDNS: its name table, replicated with every
// other router, served on the service address. Methods are safe for
// concurrent use.
type Service struct {
	cfg    Config
	log    *slog.Logger
	domain string
	tab    *table.Table
	srv    *server.Server
	repl   *replicate.Replicator

	saveMu sync.Mutex // serialises writes of the state file

	goneMu sync.Mutex
	gone   map[identity.PeerName]bool // departed peers whose data we refuse

	wg        sync.WaitGroup
	cancel    context.CancelFunc
	closeOnce sync.Once
	closeErr  error
}

// New loads our own entries from the state dir, binds the server and
// starts the replication (which knows nobody until Start joins the mesh's
// peers).
func New(cfg Config) (*Service, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Domain == "" {
		cfg.Domain = server.DefaultDomain
	}
	domain, err := table.CanonicalName(cfg.Domain)
	if err != nil {
		return nil, fmt.Errorf("dns domain %q: %w", cfg.Domain, err)
	}
	s := &Service{cfg: cfg, log: cfg.Logger, domain: domain, gone: map[identity.PeerName]bool{}}
	tcfg := table.DefaultConfig()
	tcfg.Self = cfg.Peer
	if s.tab, err = table.New(tcfg); err != nil {
		return nil, err
	}
	if err := s.load(); err != nil {
		return nil, err
	}
	ups := cfg.Upstreams
	if len(ups) == 0 {
		if ups, err = server.UpstreamsFromResolvConf("/etc/resolv.conf"); err != nil {
			s.log.Warn("weaveDNS: no upstream resolvers: names outside the domain will fail", "err", err)
		}
	}
	scfg := cfg.Server
	if scfg.TTL == 0 && scfg.UpstreamTimeout == 0 {
		scfg = server.DefaultConfig()
	}
	scfg.Domain, scfg.ListenAddr, scfg.Names, scfg.Upstreams, scfg.Logger = domain, cfg.Listen.String(), names{s.tab}, ups, cfg.Logger
	if s.srv, err = server.New(scfg); err != nil {
		return nil, fmt.Errorf("weaveDNS: %w", err)
	}
	rcfg := cfg.Replication
	if rcfg.Memberlist == nil {
		rcfg = replicate.DefaultConfig()
	}
	rcfg.Self, rcfg.State, rcfg.Connect, rcfg.Logger = cfg.Peer, state{s}, cfg.Connect, cfg.Logger
	rcfg.OnLeave, rcfg.OnJoin = s.onLeave, s.onJoin
	if s.repl, err = replicate.New(rcfg); err != nil {
		s.srv.Close()
		return nil, fmt.Errorf("weaveDNS: %w", err)
	}
	return s, nil
}

// Start serves DNS and keeps the replication joined to the mesh's peers
// until ctx ends or Close.
func (s *Service) Start(ctx context.Context) error {
	ctx, s.cancel = context.WithCancel(ctx)
	if err := s.srv.Start(ctx); err != nil {
		s.cancel()
		return fmt.Errorf("weaveDNS: %w", err)
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		s.loop(ctx)
	}()
	udp, _ := s.srv.Addr()
	s.log.Info("weaveDNS started", "domain", s.domain, "addr", udp, "upstreams", s.Upstreams(), "own_entries", len(s.tab.Own()))
	return nil
}

// Close stops serving and leaves the replication (telling the others).
// It is idempotent.
func (s *Service) Close() error {
	s.closeOnce.Do(func() {
		if s.cancel != nil {
			s.cancel()
		}
		// Shut the replication down before waiting: it ends a Join in
		// flight.
		errs := []error{s.srv.Close()}
		errs = append(errs, s.repl.Leave(500*time.Millisecond), s.repl.Shutdown())
		s.wg.Wait()
		s.closeErr = errors.Join(errs...)
	})
	return s.closeErr
}

func (s *Service) loop(ctx context.Context) {
	t := time.NewTicker(joinInterval)
	defer t.Stop()
	var joining atomic.Bool
	unreachableSince := map[identity.PeerName]time.Time{}
	for {
		members := map[identity.PeerName]bool{}
		for _, m := range s.repl.Members() {
			members[m] = true
		}
		reachable := map[identity.PeerName]bool{}
		var todo []identity.PeerName
		for _, p := range s.cfg.Peers() {
			reachable[p] = true
			if p != s.cfg.Peer && !members[p] {
				todo = append(todo, p)
			}
		}
		s.dropUnreachable(reachable, unreachableSince, time.Now())
		// Join blocks (a peer without weaveDNS never answers, until
		// memberlist's timeout): one round at a time, off this loop.
		if len(todo) > 0 && joining.CompareAndSwap(false, true) {
			s.wg.Add(1)
			go func() {
				defer s.wg.Done()
				defer joining.Store(false)
				if n, err := s.repl.Join(todo); err != nil && n == 0 {
					s.log.Debug("weaveDNS: join", "peers", todo, "err", err)
				}
			}()
		}
		s.tab.GC(time.Now())
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// The mesh, not memberlist, decides that a peer has gone: memberlist's
// probes time out on a loaded host and would drop a live peer's names for
// a while; the mesh's connections and heartbeats are the network's own
// view. A peer the mesh cannot reach for dropAfter loses its names
// everywhere (and its data is refused until it is back).
const dropAfter = 2 * time.Second

// dropUnreachable drops the names of origins the mesh has not reached for
// dropAfter, and accepts again those that are back.
func (s *Service) dropUnreachable(reachable map[identity.PeerName]bool, since map[identity.PeerName]time.Time, now time.Time) {
	origins := map[identity.PeerName]bool{}
	for _, e := range s.tab.Live() {
		if e.Origin != s.cfg.Peer {
			origins[e.Origin] = true
		}
	}
	s.goneMu.Lock()
	for p := range s.gone {
		origins[p] = true
	}
	s.goneMu.Unlock()
	for p := range origins {
		if reachable[p] {
			delete(since, p)
			s.goneMu.Lock()
			delete(s.gone, p)
			s.goneMu.Unlock()
			continue
		}
		if _, ok := since[p]; !ok {
			since[p] = now
			continue
		}
		if now.Sub(since[p]) >= dropAfter {
			s.drop(p, "unreachable in the mesh")
		}
	}
}

// onLeave is memberlist declaring p dead or gone: believed only when the
// mesh agrees (a peer that left says so, and stops being reachable).
func (s *Service) onLeave(p identity.PeerName) {
	for _, q := range s.cfg.Peers() {
		if q == p {
			s.log.Debug("weaveDNS: memberlist lost a peer the mesh still reaches; keeping its names", "remote", p.String())
			return
		}
	}
	s.drop(p, "left")
}

// drop forgets p's names and refuses its data until it is back.
func (s *Service) drop(p identity.PeerName, why string) {
	s.goneMu.Lock()
	s.gone[p] = true
	s.goneMu.Unlock()
	if names := s.tab.DropOrigin(p); len(names) > 0 {
		s.log.Info("weaveDNS: peer gone; dropped its names", "remote", p.String(), "why", why, "names", names)
	}
}

func (s *Service) onJoin(p identity.PeerName) {
	s.goneMu.Lock()
	delete(s.gone, p)
	s.goneMu.Unlock()
}

// state is the table as the Replicator sees it.
type state struct{ s *Service }

func (st state) FullState() []byte { return table.Encode(st.s.tab.All()) }

func (st state) Merge(src identity.PeerName, data []byte) error {
	es, err := table.Decode(data, 0)
	if err != nil {
		return err
	}
	s := st.s
	s.goneMu.Lock()
	es = slices.DeleteFunc(es, func(e table.Entry) bool { return s.gone[e.Origin] })
	s.goneMu.Unlock()
	delta, err := s.tab.Merge(time.Now(), es)
	if err != nil {
		return err
	}
	// A peer claiming newer versions of our own entries makes the table
	// re-assert ours: save and tell everyone.
	for _, e := range delta {
		if e.Origin == s.cfg.Peer {
			s.changed(delta)
			break
		}
	}
	return nil
}

// names adapts the table to the server.
type names struct{ t *table.Table }

func (n names) LookupName(fqdn string) []netip.Addr { return n.t.Lookup(fqdn) }
func (n names) LookupAddr(ip netip.Addr) []string   { return n.t.LookupAddr(ip) }
func (s *Service) Lookup(name string) []netip.Addr  { return s.tab.Lookup(name) }
func (s *Service) Entries() []table.Entry           { return s.tab.Live() }
func (s *Service) Domain() string                   { return s.domain }
func (s *Service) Stats() any                       { return s.srv.Stats() }
func (s *Service) Address() netip.AddrPort          { udp, _ := s.srv.Addr(); return udp }

// Self is our peer name, the origin of our own entries.
func (s *Service) Self() identity.PeerName { return s.cfg.Peer }

// Upstreams are the resolvers names outside the domain go to.
func (s *Service) Upstreams() []string {
	var out []string
	for _, u := range s.srv.Upstreams() {
		out = append(out, u.String())
	}
	return out
}

// InDomain reports whether fqdn is in the domain (the domain itself is not
// a container name).
func (s *Service) InDomain(fqdn string) bool {
	n, err := table.CanonicalName(fqdn)
	return err == nil && n != s.domain && strings.HasSuffix(n, "."+s.domain)
}

// Add registers ips under fqdn for container; the change reaches every
// router.
func (s *Service) Add(container, fqdn string, ips []netip.Addr) ([]table.Entry, error) {
	delta, err := s.tab.Add(container, fqdn, ips...)
	if err != nil {
		return nil, err
	}
	s.changed(delta)
	return delta, nil
}

// Remove removes our entries that m selects.
func (s *Service) Remove(m table.Match) ([]table.Entry, error) {
	delta, err := s.tab.Remove(time.Now(), m)
	if err != nil {
		return nil, err
	}
	s.changed(delta)
	return delta, nil
}

// RemoveContainer removes every name of container and returns them.
func (s *Service) RemoveContainer(container string) []string {
	delta := s.tab.RemoveContainer(time.Now(), container)
	s.changed(delta)
	return table.NamesOf(delta)
}

// changed saves our entries and broadcasts a local change.
func (s *Service) changed(delta []table.Entry) {
	if len(delta) == 0 {
		return
	}
	if err := s.save(); err != nil {
		s.log.Error("weaveDNS: cannot save our names", "err", err)
	}
	for part := range slices.Chunk(delta, 64) {
		if err := s.repl.Broadcast(table.Encode(part)); err != nil {
			s.log.Warn("weaveDNS: broadcast", "err", err) // push/pull repairs it
		}
	}
}

// persisted is the state file: our own entries, tombstones included.
type persisted struct {
	Version int               `json:"version"`
	Peer    identity.PeerName `json:"peer"`
	Entries []table.Entry     `json:"entries"`
}

func (s *Service) load() error {
	if s.cfg.StateDir == "" {
		return nil
	}
	path := filepath.Join(s.cfg.StateDir, stateFile)
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("weaveDNS state: %w", err)
	}
	var p persisted
	if err := json.Unmarshal(b, &p); err != nil {
		return fmt.Errorf("weaveDNS state %s: %w", path, err)
	}
	if p.Peer != s.cfg.Peer {
		s.log.Warn("weaveDNS: ignoring the names of another peer name", "file_peer", p.Peer.String())
		return nil
	}
	return s.tab.LoadOwn(p.Entries)
}

func (s *Service) save() error {
	if s.cfg.StateDir == "" {
		return nil
	}
	s.saveMu.Lock()
	defer s.saveMu.Unlock()
	b, err := json.Marshal(persisted{Version: 1, Peer: s.cfg.Peer, Entries: s.tab.Own()})
	if err != nil {
		return err
	}
	if err := os.MkdirAll(s.cfg.StateDir, 0o700); err != nil {
		return err
	}
	return atomicwriter.WriteFile(filepath.Join(s.cfg.StateDir, stateFile), b, 0o600)
}
