// Package mesh owns the control plane between routers: TCP connections on
// port 6783 (dial, accept, handshake via mesh/handshake), heartbeats and
// dead-peer detection, topology gossip (gossip.go: stamps announced, entries
// pulled once per peer, bucketed anti-entropy; the state is mesh/topology),
// the connection maker (targets, discovery, backoff), the routes snapshot
// the data plane forwards by, and the gossip channel API that other packages
// use to replicate their state.
//
// Time and randomness come from Config.Clock and Config.Rand, so that the
// topology gossip (topoGossip, which does no I/O) runs in a simulation on
// virtual time with thousands of peers, exactly reproducible from a seed
// (vsim_test.go, scale_test.go, BenchmarkConvergence*).
//
// Concurrency: one actor goroutine (Router.loop) owns the topology, the
// connections and the targets; everything else hands it closures on a
// channel. Each connection has a reader and a writer goroutine. Routes()
// and gossip-channel sends read atomic snapshots and never wait for the
// actor. Every goroutine is owned by the context given to Start and has
// exited when Close returns.
package mesh

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/weavelab/weave/mesh/clock"
	"github.com/weavelab/weave/mesh/handshake"
	"github.com/weavelab/weave/mesh/identity"
	"github.com/weavelab/weave/mesh/topology"
)

// Errors callers tell apart with errors.Is.
var (
	// ErrClosed: the router is closed (or was never started).
	ErrClosed = errors.New("mesh router not running")
	// ErrBadPeerAddr: a PEER given to Connect or Forget is not host[:port].
	ErrBadPeerAddr = errors.New("bad peer address")
	// ErrNoRoute: a gossip-channel unicast destination is unreachable.
	ErrNoRoute = errors.New("no route to peer")
	// ErrIncompatible: returned (wrapped) by a Gossiper's OnGossip for
	// state that can never be merged with ours (e.g. address rings seeded
	// apart); the mesh then closes the connection it came on, with that
	// error as the reason.
	ErrIncompatible = errors.New("incompatible peer")
)

// Router is one peer of the mesh. Create it with New, then Start it; Close
// stops it. All methods are safe for concurrent use.
type Router struct {
	cfg  Config
	log  *slog.Logger
	hcfg handshake.Config

	ctx     context.Context
	cancel  context.CancelFunc
	wg      sync.WaitGroup // every goroutine of the router
	started atomic.Bool
	actions chan func()
	addr    atomic.Pointer[net.TCPAddr] // listener address, once started

	// asyncMu guards asyncClosed; see postAsync.
	asyncMu     sync.Mutex
	asyncClosed bool

	// Read by any goroutine.
	routes   atomic.Pointer[func() *topology.Routes]     // lazy, see publishPending
	neigh    atomic.Pointer[map[identity.PeerName]*conn] // registered conns
	channels channelRegistry
	stats    counters

	clk clock.Clock

	// Owned by the actor goroutine.
	port       int
	topo       *topology.Topology // owned by gossip; the actor reads it
	gossip     *topoGossip
	conns      map[identity.PeerName]*conn // registered, one per peer
	attempts   map[*conn]struct{}          // every live conn, registered or not
	failed     []ConnectionStatus          // recent failures, oldest first
	targets    map[string]*target
	forgotten  map[string]struct{}
	makerDirty bool // targets need a look
	neighDirty bool // r.neigh needs a new snapshot
	makerTimer clock.Timer
	rng        *rand.Rand
}

// New validates cfg and returns a router that is not yet running.
func New(cfg Config) (*Router, error) {
	if err := cfg.check(); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &Router{
		cfg:       cfg,
		log:       cfg.Logger.With("peer", cfg.Peer.String()),
		ctx:       ctx,
		cancel:    cancel,
		actions:   make(chan func(), 4096),
		conns:     make(map[identity.PeerName]*conn),
		attempts:  make(map[*conn]struct{}),
		targets:   make(map[string]*target),
		forgotten: make(map[string]struct{}),
		clk:       cfg.Clock,
		rng:       rand.New(cfg.Rand),
	}
	topo, err := topology.NewSigned(cfg.Peer, cfg.Key)
	if err != nil {
		cancel()
		return nil, err
	}
	r.topo = topo
	r.gossip = newTopoGossip(topo, r.gossipConfig(), r, func(f func()) { r.post(f) })
	r.hcfg = handshake.Config{
		Key:                 cfg.Key,
		KeyExchangeInterval: cfg.KeyExchangeInterval,
		Cipher:              cfg.Cipher,
		Local:               cfg.Peer,
		UDPPort:             cfg.UDPPort,
		PSK:                 cfg.PSK,
		Timeout:             cfg.HandshakeTimeout,
	}
	r.storeRoutes()
	r.neigh.Store(&map[identity.PeerName]*conn{})
	r.channels.m = make(map[string]*GossipChannel)
	return r, nil
}

// Start listens on the configured port and starts the router's goroutines.
// They run until ctx is cancelled or Close is called. Start may be called
// once.
func (r *Router) Start(ctx context.Context) error {
	if !r.started.CompareAndSwap(false, true) {
		return errors.New("mesh router already started")
	}
	if r.ctx.Err() != nil {
		return ErrClosed
	}
	laddr := net.JoinHostPort(r.cfg.ListenHost, strconv.Itoa(r.cfg.Port))
	ln, err := r.cfg.Transport.Listen(ctx, laddr)
	if err != nil {
		r.cancel()
		return fmt.Errorf("listen on %s: %w", laddr, err)
	}
	r.port = r.cfg.Port
	if ta, err := net.ResolveTCPAddr("tcp", ln.Addr().String()); err == nil {
		r.port = ta.Port
		r.addr.Store(ta)
	}
	if r.hcfg.UDPPort == 0 {
		r.hcfg.UDPPort = r.port
	}
	stop := context.AfterFunc(ctx, r.cancel)
	context.AfterFunc(r.ctx, func() { ln.Close() })
	r.makerTimer = r.clk.NewTimer(time.Hour)
	r.wg.Add(2)
	go func() {
		defer r.wg.Done()
		defer stop()
		r.loop()
	}()
	go func() {
		defer r.wg.Done()
		r.acceptLoop(ln)
	}()
	r.log.Info("mesh router started", "addr", ln.Addr().String())
	return nil
}

// Close stops the router: it closes the listener and every connection and
// returns once all goroutines have exited. It is idempotent.
func (r *Router) Close() error {
	r.cancel()
	r.asyncMu.Lock()
	r.asyncClosed = true // no postAsync goroutine starts after this
	r.asyncMu.Unlock()
	r.wg.Wait()
	return nil
}

// Peer returns our identity.
func (r *Router) Peer() identity.Peer { return r.cfg.Peer }

// Addr returns the address the router listens on (nil before Start); useful
// with Port 0.
func (r *Router) Addr() *net.TCPAddr { return r.addr.Load() }

// Routes returns the current routes snapshot. It is cheap (an atomic load,
// plus one route computation per topology change, paid by the first caller
// after it), never nil, and the snapshot is immutable.
func (r *Router) Routes() *topology.Routes { return (*r.routes.Load())() }

// storeRoutes publishes a lazily computed routes snapshot of the current
// topology: the actor does not compute routes nobody asks for. Actor only.
func (r *Router) storeRoutes() {
	f := r.topo.RoutesFunc()
	r.routes.Store(&f)
}

// loop is the actor: it runs posted closures and timers until the router
// stops, and after each burst of work flushes what changed (our connection
// list, gossip, routes, targets).
func (r *Router) loop() {
	gossip := r.clk.NewTicker(r.jitter(r.cfg.GossipInterval))
	defer gossip.Stop()
	defer r.makerTimer.Stop()
	r.gossip.start()
	defer r.gossip.stop()
	for {
		select {
		case f := <-r.actions:
			f()
		case <-r.makerTimer.C():
			r.makerDirty = true
		case <-gossip.C():
			// Topology anti-entropy runs in r.gossip; the gossip
			// channels' state goes to one random neighbour here.
			if c := r.conns[r.gossip.randomLink()]; c != nil {
				r.channels.sendAllState(c)
			}
		case <-r.ctx.Done():
			r.shutdown()
			return
		}
		if len(r.actions) == 0 {
			r.flush()
		}
	}
}

// shutdown runs in the actor when the router stops. Connection goroutines
// close their sessions by themselves (their contexts derive from r.ctx); the
// actor stops the overlay halves, which nobody else will.
func (r *Router) shutdown() {
	for _, c := range r.conns {
		c.overlay.Stop()
	}
	clear(r.conns)
	r.log.Info("mesh router stopped")
}

// post hands f to the actor. It returns false once the router is closed.
// It must not be called from the actor itself (use direct calls there).
func (r *Router) post(f func()) bool {
	select {
	case r.actions <- f:
		return true
	case <-r.ctx.Done():
		return false
	}
}

// postAsync hands f to the actor without blocking, for callers that may be
// running inside the actor (overlay events) or must not wait.
func (r *Router) postAsync(f func()) {
	select {
	case r.actions <- f:
		return
	default:
	}
	r.asyncMu.Lock()
	defer r.asyncMu.Unlock()
	if r.asyncClosed {
		return
	}
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		r.post(f)
	}()
}

// call runs f in the actor and waits for it. It returns false (and f has
// not run) when the router is not running.
func (r *Router) call(f func()) bool {
	if !r.started.Load() {
		return false
	}
	done := make(chan struct{})
	if !r.post(func() { f(); close(done) }) {
		return false
	}
	select {
	case <-done:
		return true
	case <-r.ctx.Done():
		return false
	}
}

// jitter returns d scaled by a random factor in [0.75, 1.25).
func (r *Router) jitter(d time.Duration) time.Duration {
	return time.Duration(float64(d) * (0.75 + r.rng.Float64()/2))
}

// flush runs after each burst of actions. (Topology changes wait for
// UpdateDelay in r.gossip, which then calls topologyChanged.) Actor only.
func (r *Router) flush() {
	if r.neighDirty {
		r.neighDirty = false
		m := make(map[identity.PeerName]*conn, len(r.conns))
		for n, c := range r.conns {
			m[n] = c
		}
		r.neigh.Store(&m)
	}
	if r.makerDirty {
		r.makerDirty = false
		r.tryTargets()
	}
}

// gossipConfig is the part of the config that topology gossip uses.
func (r *Router) gossipConfig() gossipConfig {
	return gossipConfig{
		UpdateDelay:    r.cfg.UpdateDelay,
		GossipInterval: r.cfg.GossipInterval,
		RequestTimeout: r.cfg.RequestTimeout,
		Clock:          r.clk,
		Rand:           rand.New(rand.NewPCG(r.rng.Uint64(), r.rng.Uint64())),
		Log:            r.log,
	}
}

// sendTo is how topology gossip reaches neighbour to. Actor only.
func (r *Router) sendTo(to identity.PeerName, msg []byte) bool {
	c := r.conns[to]
	return c != nil && c.enqueue(msg) == nil
}

// topologyChanged is called by topology gossip after each publish: the
// routes snapshot and the connection maker follow. Actor only.
func (r *Router) topologyChanged(changed []*topology.Peer, removed []identity.PeerName) {
	r.storeRoutes()
	r.discover(changed, removed)
}
