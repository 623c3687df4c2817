package replicate

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/memberlist"

	"github.com/weavelab/weave/mesh"
	"github.com/weavelab/weave/mesh/identity"
)

// State is what the Replicator replicates: the name table, as the DNS
// layer implements it. Its methods are called from memberlist's
// goroutines, several at once, and must be safe for concurrent use and
// quick (Merge of a delta runs in memberlist's packet loop).
type State interface {
	// FullState returns our full state for a push/pull (memberlist's
	// LocalState). It may be nil.
	FullState() []byte
	// Merge merges a peer's full state or a broadcast delta. src is the
	// peer whose FullState it was or who called Broadcast (not the peer
	// that relayed it). Return an error for input that is not valid; a
	// delta that fails to merge is not passed on. data is not retained by
	// the caller, but may alias a buffer reused after Merge returns.
	Merge(src identity.PeerName, data []byte) error
}

// ErrTooLarge is returned by Broadcast for a delta that does not fit in
// one memberlist packet; send it in parts.
var ErrTooLarge = errors.New("replication delta too large")

// broadcastOverhead is what memberlist adds around a user message in a
// gossip packet (compound header, length, message type), with some slack.
const broadcastOverhead = 16

// Config configures a Replicator. Start from DefaultConfig; zero fields
// (and a nil Memberlist, and a zero Transport) take its values.
type Config struct {
	// Self is our peer name; required.
	Self identity.PeerName
	// State is the replicated state; required.
	State State
	// Connect registers the Replicator's entry points with the message
	// fabric and returns the fabric's Sender; required. For the mesh:
	// router.NewGossipChannel("dns", g). It is called once, by New.
	Connect func(g mesh.Gossiper) Sender
	// OnLeave, if set, is called when memberlist declares a peer dead or
	// left; the State may drop that peer's data. OnJoin, if set, is called
	// when memberlist counts a peer alive: when it first joins, and when it
	// comes back after OnLeave (a peer wrongly declared dead refutes it;
	// a restarted one rejoins). A State that drops a departed peer's data
	// should also refuse that data while the peer is gone, since peers
	// that have not yet seen the departure can push it back; OnJoin ends
	// that. Both are called from one goroutine of the Replicator's, one
	// call at a time, in the order memberlist saw the changes; they may
	// call the Replicator.
	OnLeave func(identity.PeerName)
	OnJoin  func(identity.PeerName)
	// Logger gets debug records (memberlist's log included); nil discards.
	Logger *slog.Logger

	// Transport tunes streams; New fills in Self, Sender and Logger.
	Transport TransportConfig
	// Memberlist is the base memberlist configuration. New copies it and
	// sets Name, Transport, the delegates, Logger and the addresses; the
	// timings and sizes are the caller's to tune.
	Memberlist *memberlist.Config
	// RetransmitMult sets how many times each peer that has a delta sends
	// it: RetransmitMult·⌈log10(N+1)⌉ for N peers, to random peers, as
	// memberlist does with its own messages (whose Memberlist.RetransmitMult
	// stays at 4). With 4, one delta in about 200 would miss some peer of
	// a 5-peer network until the next push/pull (simulated; the rate falls
	// as N grows); with 8 essentially none does, for twice the packets.
	RetransmitMult int
	// MaxQueued bounds the broadcasts waiting to be gossiped; past it
	// the most-sent ones are dropped (push/pull repairs what they miss).
	MaxQueued int
	// SeenMessages is how many broadcast ids are remembered to suppress
	// duplicates.
	SeenMessages int
}

// DefaultConfig returns settings for routers on a LAN; Self, State and
// Connect are the caller's to fill in.
func DefaultConfig() Config {
	return Config{
		Transport:      DefaultTransportConfig(),
		Memberlist:     DefaultMemberlistConfig(),
		RetransmitMult: 8,
		MaxQueued:      4096,
		SeenMessages:   16384,
	}
}

// DefaultMemberlistConfig is memberlist's LAN configuration (probe every
// second with a 500 ms timeout, gossip every 200 ms) adapted to the mesh:
//   - DisableTcpPings: a stream ping would take the same mesh route as the
//     packet ping that just failed, so it would prove nothing new;
//   - UDPBufferSize 16 KiB: mesh messages have no MTU, and bigger packets
//     batch more deltas per gossip round;
//   - PushPullInterval 10 s (from 30 s): full-state anti-entropy repairs
//     lost broadcasts sooner; a name table is small.
func DefaultMemberlistConfig() *memberlist.Config {
	c := memberlist.DefaultLANConfig()
	c.DisableTcpPings = true
	c.UDPBufferSize = 16 << 10
	c.PushPullInterval = 10 * time.Second
	return c
}

// fillDefaults gives zero fields DefaultConfig's values.
func (c *Config) fillDefaults() {
	d := DefaultConfig()
	if c.Memberlist == nil {
		c.Memberlist = d.Memberlist
	}
	if c.Transport.Segment == 0 && c.Transport.Window == 0 {
		c.Transport = d.Transport
	}
	if c.RetransmitMult == 0 {
		c.RetransmitMult = d.RetransmitMult
	}
	if c.MaxQueued == 0 {
		c.MaxQueued = d.MaxQueued
	}
	if c.SeenMessages == 0 {
		c.SeenMessages = d.SeenMessages
	}
}

func (c *Config) validate() error {
	switch {
	case c.Self == identity.UnknownPeer:
		return errors.New("replicator config: Self is required")
	case c.State == nil:
		return errors.New("replicator config: State is required")
	case c.Connect == nil:
		return errors.New("replicator config: Connect is required")
	case c.Memberlist.UDPBufferSize <= broadcastOverhead+deltaHeaderLen:
		return fmt.Errorf("replicator config: Memberlist.UDPBufferSize %d is too small", c.Memberlist.UDPBufferSize)
	case c.MaxQueued < 1 || c.SeenMessages < 1 || c.RetransmitMult < 1:
		return errors.New("replicator config: RetransmitMult, MaxQueued and SeenMessages must be positive")
	}
	return nil
}

// Replicator replicates a State to every peer with memberlist over a
// Transport. Its methods are safe for concurrent use.
type Replicator struct {
	self      identity.PeerName
	state     State
	onLeave   func(identity.PeerName)
	onJoin    func(identity.PeerName)
	log       *slog.Logger
	transport *Transport
	queue     *memberlist.TransmitLimitedQueue
	maxQueued int
	maxDelta  int
	seen      *seenSet
	nextID    atomic.Uint64
	ml        atomic.Pointer[memberlist.Memberlist] // set once Create returns

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	eventMu     sync.Mutex
	pending     []peerEvent                // for deliverEvents, in order
	departed    map[identity.PeerName]bool // declared dead or left, and not back
	eventSignal chan struct{}

	resyncBackoff time.Duration // first wait between resync attempts

	lifeMu sync.Mutex // serialises Leave and Shutdown
	down   bool
}

// New starts a Replicator: it builds the Transport, calls cfg.Connect, and
// creates the memberlist, which knows only us until Join.
func New(cfg Config) (*Replicator, error) {
	cfg.fillDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	sender := new(lateSender)
	tcfg := cfg.Transport
	tcfg.Self, tcfg.Sender, tcfg.Logger = cfg.Self, sender, log
	t, err := NewTransport(tcfg)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &Replicator{
		self:        cfg.Self,
		state:       cfg.State,
		onLeave:     cfg.OnLeave,
		onJoin:      cfg.OnJoin,
		log:         log,
		transport:   t,
		maxQueued:   cfg.MaxQueued,
		maxDelta:    cfg.Memberlist.UDPBufferSize - broadcastOverhead - deltaHeaderLen,
		seen:        newSeenSet(cfg.SeenMessages),
		ctx:         ctx,
		cancel:      cancel,
		departed:    make(map[identity.PeerName]bool),
		eventSignal: make(chan struct{}, 1),
		// A few probe rounds: long enough for a loaded peer to recover.
		resyncBackoff: max(2*cfg.Memberlist.ProbeInterval, 100*time.Millisecond),
	}
	r.nextID.Store(rand.Uint64())
	r.queue = &memberlist.TransmitLimitedQueue{
		NumNodes:       r.numNodes,
		RetransmitMult: cfg.RetransmitMult,
	}
	out := cfg.Connect(gossiper{t})
	if out == nil {
		cancel()
		_ = t.Shutdown()
		return nil, errors.New("replicator: Connect returned no Sender")
	}
	sender.set(out)

	mc := *cfg.Memberlist
	mc.Name = cfg.Self.String()
	mc.Transport = t
	mc.Delegate = (*delegate)(r)
	mc.Events = (*events)(r)
	mc.Alive = (*aliveCheck)(r)
	mc.Logger = memberlistLogger(log)
	mc.LogOutput = nil
	mc.BindPort, mc.AdvertisePort = AddrPort, AddrPort
	mc.AdvertiseAddr = ""

	r.wg.Add(1)
	go r.deliverEvents()
	ml, err := memberlist.Create(&mc)
	if err != nil {
		cancel()
		r.wg.Wait()
		_ = t.Shutdown()
		return nil, fmt.Errorf("replicator: start memberlist: %w", err)
	}
	r.ml.Store(ml)
	return r, nil
}

func (r *Replicator) numNodes() int {
	if ml := r.ml.Load(); ml != nil {
		return ml.NumMembers()
	}
	return 1
}

// Broadcast queues delta for every peer. memberlist gossips it to a few
// random peers per round (Config.RetransmitMult·⌈log10(N+1)⌉ sends in
// all), and each peer that merges it passes it on the same way, once;
// push/pull repairs what is lost. It returns ErrTooLarge for a delta that does not fit in a
// packet, and net.ErrClosed after Shutdown. Broadcast does not merge delta
// into our own State, and does not block.
func (r *Replicator) Broadcast(delta []byte) error {
	if len(delta) == 0 {
		return errors.New("replicator: empty delta")
	}
	if len(delta) > r.maxDelta {
		return fmt.Errorf("%w: %d bytes, the limit is %d", ErrTooLarge, len(delta), r.maxDelta)
	}
	if r.ctx.Err() != nil {
		return fmt.Errorf("replicator: broadcast: %w", net.ErrClosed)
	}
	r.enqueue(encodeDelta(r.self, r.nextID.Add(1), delta))
	return nil
}

func (r *Replicator) enqueue(msg []byte) {
	r.queue.QueueBroadcast(&broadcast{msg: msg})
	if r.queue.NumQueued() > r.maxQueued {
		r.queue.Prune(r.maxQueued)
	}
}

// Join contacts the peers that memberlist does not already count alive
// (ourselves excepted), each with a push/pull of full state, in parallel.
// The daemon calls it with the mesh's reachable peers whenever they
// change; that is also how partitions heal, since memberlist does not
// probe peers it has declared dead. It blocks until every contact has
// succeeded or failed (each step of a push/pull is bounded by
// Memberlist.TCPTimeout), and returns how many succeeded and an error
// naming those that failed. A peer that runs no Replicator (its router
// has no "dns" channel) drops our SYN, so joining it fails only when the
// dial times out: call Join from a goroutine of its own.
func (r *Replicator) Join(peers []identity.PeerName) (int, error) {
	ml := r.ml.Load()
	if r.ctx.Err() != nil {
		return 0, fmt.Errorf("replicator: join: %w", net.ErrClosed)
	}
	alive := make(map[identity.PeerName]bool)
	for _, p := range r.Members() {
		alive[p] = true
	}
	var targets []identity.PeerName
	for _, p := range peers {
		if p != identity.UnknownPeer && !alive[p] {
			alive[p] = true // and skip duplicates
			targets = append(targets, p)
		}
	}
	errs := make([]error, len(targets))
	var wg sync.WaitGroup
	for i, p := range targets {
		wg.Go(func() {
			if _, err := ml.Join([]string{p.String() + "/" + PeerAddr(p)}); err != nil {
				errs[i] = fmt.Errorf("join %s: %w", p, err)
			}
		})
	}
	wg.Wait()
	joined := 0
	for _, err := range errs {
		if err == nil {
			joined++
		}
	}
	return joined, errors.Join(errs...)
}

// Members returns the peers memberlist counts alive, ourselves included,
// in order.
func (r *Replicator) Members() []identity.PeerName {
	nodes := r.ml.Load().Members()
	out := make([]identity.PeerName, 0, len(nodes))
	for _, n := range nodes {
		if p, err := identity.ParsePeerName(n.Name); err == nil {
			out = append(out, p)
		}
	}
	slices.Sort(out)
	return out
}

// Leave tells the other peers we are leaving (they call OnLeave for us at
// once instead of after failure detection) and waits up to timeout for the
// message to go out. Call Shutdown afterwards. After Shutdown it returns
// net.ErrClosed.
func (r *Replicator) Leave(timeout time.Duration) error {
	r.lifeMu.Lock()
	defer r.lifeMu.Unlock()
	if r.down {
		return fmt.Errorf("replicator: leave: %w", net.ErrClosed)
	}
	if err := r.ml.Load().Leave(timeout); err != nil {
		return fmt.Errorf("replicator: leave: %w", err)
	}
	return nil
}

// Shutdown stops memberlist and the Transport (resetting open streams) and
// waits for the Replicator's goroutines; pending OnLeave and OnJoin calls
// are dropped.
// Without Leave first, peers notice through failure detection. It is
// idempotent.
func (r *Replicator) Shutdown() error {
	r.lifeMu.Lock()
	defer r.lifeMu.Unlock()
	if r.down {
		return nil
	}
	r.down = true
	err := r.ml.Load().Shutdown()
	r.cancel()
	r.wg.Wait()
	if err != nil {
		return fmt.Errorf("replicator: shutdown: %w", err)
	}
	return nil
}

// peerEvent is a change memberlist reported: a peer counted alive, or one
// declared dead or left.
type peerEvent struct {
	peer  identity.PeerName
	alive bool
	back  bool // alive again after a departure
}

// queueEvent queues a change for deliverEvents (memberlist calls its event
// delegate holding its node lock, so nothing may be done there).
func (r *Replicator) queueEvent(p identity.PeerName, alive bool) {
	r.eventMu.Lock()
	e := peerEvent{peer: p, alive: alive}
	switch {
	case alive:
		e.back = r.departed[p]
		delete(r.departed, p)
	case r.departed[p]:
		r.eventMu.Unlock()
		return // already gone
	default:
		r.departed[p] = true
	}
	r.pending = append(r.pending, e)
	r.eventMu.Unlock()
	select {
	case r.eventSignal <- struct{}{}:
	default:
	}
}

// deliverEvents calls OnJoin and OnLeave, and starts a push/pull with a
// peer that joined (by the one of each pair with the lower name, since
// push/pull goes both ways) or came back (by both: either may have
// dropped the other's data). Without it, a newcomer's state would reach
// the peers it did not join through only at their next PushPullInterval,
// and data dropped for a peer wrongly declared dead would stay dropped
// as long.
func (r *Replicator) deliverEvents() {
	defer r.wg.Done()
	for {
		select {
		case <-r.ctx.Done():
			return
		case <-r.eventSignal:
		}
		r.eventMu.Lock()
		batch := r.pending
		r.pending = nil
		r.eventMu.Unlock()
		for _, e := range batch {
			if r.ctx.Err() != nil {
				return
			}
			if !e.alive {
				if r.onLeave != nil {
					r.onLeave(e.peer)
				}
				continue
			}
			if r.onJoin != nil {
				r.onJoin(e.peer)
			}
			if e.back || r.self < e.peer {
				r.wg.Add(1) // safe: this goroutine's own count keeps Wait waiting
				go r.resync(e.peer)
			}
		}
	}
}

// resync does a push/pull with a peer that joined or came back. It tries
// a few times, backing off, since until it succeeds the peer's data may be
// missing here (refused while it was gone) for up to a PushPullInterval;
// it gives up early if the peer leaves again or we shut down.
func (r *Replicator) resync(p identity.PeerName) {
	defer r.wg.Done()
	ml := r.ml.Load()
	if ml == nil {
		return
	}
	wait := r.resyncBackoff
	for attempt := 1; ; attempt++ {
		if r.ctx.Err() != nil || r.isDeparted(p) {
			return
		}
		_, err := ml.Join([]string{p.String() + "/" + PeerAddr(p)})
		if err == nil {
			return
		}
		r.log.Debug("replication resync failed", "peer", p.String(), "attempt", attempt, "err", err)
		if attempt == resyncAttempts {
			return
		}
		timer := time.NewTimer(wait)
		select {
		case <-r.ctx.Done():
			timer.Stop()
			return
		case <-timer.C:
		}
		wait *= 2
	}
}

// resyncAttempts bounds the push/pulls resync tries.
const resyncAttempts = 4

func (r *Replicator) isDeparted(p identity.PeerName) bool {
	r.eventMu.Lock()
	defer r.eventMu.Unlock()
	return r.departed[p]
}

// lateSender lets New create the Transport before Connect gives it the
// fabric's Sender; frames sent in between (none, in practice: memberlist
// does not exist yet) fail.
type lateSender struct{ v atomic.Value }

type senderBox struct{ s Sender }

func (l *lateSender) set(s Sender) { l.v.Store(senderBox{s}) }

func (l *lateSender) Unicast(dst identity.PeerName, msg []byte) error {
	b, ok := l.v.Load().(senderBox)
	if !ok {
		return errors.New("replicator: not connected yet")
	}
	return b.s.Unicast(dst, msg)
}

// gossiper adapts a Transport to mesh.Gossiper: memberlist does its own
// gossip over unicast, so the channel's broadcast and periodic gossip are
// unused.
type gossiper struct{ t *Transport }

var _ mesh.Gossiper = gossiper{}

func (g gossiper) OnGossip(identity.PeerName, []byte) ([]byte, error) { return nil, nil }
func (g gossiper) OnUnicast(src identity.PeerName, msg []byte) error {
	return g.t.Deliver(src, msg)
}
func (g gossiper) Gossip() []byte { return nil }

// broadcast is one queued delta; each is unique.
type broadcast struct{ msg []byte }

var _ memberlist.UniqueBroadcast = (*broadcast)(nil)

func (b *broadcast) Invalidates(memberlist.Broadcast) bool { return false }
func (b *broadcast) Message() []byte                       { return b.msg }
func (b *broadcast) Finished()                             {}
func (b *broadcast) UniqueBroadcast()                      {}
