// Package replicatetest provides an in-memory message fabric for tests of
// code built on replicate: endpoints that unicast to each other through
// one scheduler goroutine, with optional delay, jitter (which reorders
// messages), loss and partitions, as a stand-in for the mesh's gossip
// channels.
package replicatetest

import (
	"container/heap"
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/weavelab/weave/dns/replicate"
	"github.com/weavelab/weave/mesh"
	"github.com/weavelab/weave/mesh/identity"
)

var _ replicate.Sender = (*Endpoint)(nil)

// Options shape the fabric's behaviour. The zero value delivers every
// message in order, as soon as the scheduler gets to it.
type Options struct {
	// Delay is added to every message.
	Delay time.Duration
	// Jitter adds a random extra delay up to this much, so messages to one
	// peer can overtake each other.
	Jitter time.Duration
	// Loss is the probability that a message is silently dropped.
	Loss float64
	// Seed seeds the randomness of jitter and loss.
	Seed uint64
}

// Fabric connects Endpoints. Its methods are safe for concurrent use.
type Fabric struct {
	ctx    context.Context
	cancel context.CancelFunc
	done   chan struct{}

	mu        sync.Mutex
	opts      Options
	rng       *rand.Rand
	endpoints map[identity.PeerName]*Endpoint
	cut       map[[2]identity.PeerName]bool
	pending   queue
	seq       uint64
	wake      chan struct{}
	sent      int
	lost      int
	errs      []error
}

// New starts a fabric; stop it with Close.
func New(opts Options) *Fabric {
	ctx, cancel := context.WithCancel(context.Background())
	f := &Fabric{
		ctx: ctx, cancel: cancel, done: make(chan struct{}),
		opts:      opts,
		rng:       rand.New(rand.NewPCG(opts.Seed, opts.Seed^0x9e3779b97f4a7c15)),
		endpoints: make(map[identity.PeerName]*Endpoint),
		cut:       make(map[[2]identity.PeerName]bool),
		wake:      make(chan struct{}, 1),
	}
	go f.run()
	return f
}

// Close stops delivery and waits for the scheduler goroutine.
func (f *Fabric) Close() {
	f.cancel()
	<-f.done
}

// Endpoint returns name's endpoint, creating it. Messages to it are
// dropped until Bind.
func (f *Fabric) Endpoint(name identity.PeerName) *Endpoint {
	f.mu.Lock()
	defer f.mu.Unlock()
	e := f.endpoints[name]
	if e == nil {
		e = &Endpoint{f: f, name: name}
		f.endpoints[name] = e
	}
	return e
}

// Connect returns a replicate.Config.Connect for name: it binds the
// Gossiper's OnUnicast to name's endpoint.
func (f *Fabric) Connect(name identity.PeerName) func(mesh.Gossiper) replicate.Sender {
	return func(g mesh.Gossiper) replicate.Sender {
		e := f.Endpoint(name)
		e.Bind(g.OnUnicast)
		return e
	}
}

// Partition cuts every link between a peer of a and a peer of b: Unicast
// across the cut fails with mesh.ErrNoRoute, and messages in flight
// across it are dropped.
func (f *Fabric) Partition(a, b []identity.PeerName) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, x := range a {
		for _, y := range b {
			f.cut[[2]identity.PeerName{x, y}] = true
			f.cut[[2]identity.PeerName{y, x}] = true
		}
	}
}

// Heal removes every cut.
func (f *Fabric) Heal() {
	f.mu.Lock()
	defer f.mu.Unlock()
	clear(f.cut)
}

// SetOptions changes delay, jitter and loss for messages sent from now on.
func (f *Fabric) SetOptions(opts Options) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.opts = opts
}

// Stats returns how many messages were sent and how many of them lost.
func (f *Fabric) Stats() (sent, lost int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.sent, f.lost
}

// Errors returns the errors receivers returned, first ones first (at most
// 100).
func (f *Fabric) Errors() []error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]error(nil), f.errs...)
}

// Endpoint is one peer's attachment to the fabric.
type Endpoint struct {
	f       *Fabric
	name    identity.PeerName
	deliver func(src identity.PeerName, msg []byte) error // guarded by f.mu
}

// Bind sets the function that receives this endpoint's messages (nil
// detaches it, as a crashed peer: messages to it are dropped).
func (e *Endpoint) Bind(deliver func(src identity.PeerName, msg []byte) error) {
	e.f.mu.Lock()
	defer e.f.mu.Unlock()
	e.deliver = deliver
}

// Unicast queues a copy of msg for dst. It fails with mesh.ErrNoRoute
// when dst has no endpoint or is across a partition, like the mesh.
func (e *Endpoint) Unicast(dst identity.PeerName, msg []byte) error {
	f := e.f
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.ctx.Err() != nil {
		return fmt.Errorf("fabric closed: %w", mesh.ErrNoRoute)
	}
	if f.endpoints[dst] == nil || f.cut[[2]identity.PeerName{e.name, dst}] {
		return fmt.Errorf("fabric %s to %s: %w", e.name, dst, mesh.ErrNoRoute)
	}
	f.sent++
	if f.opts.Loss > 0 && f.rng.Float64() < f.opts.Loss {
		f.lost++
		return nil
	}
	at := time.Now().Add(f.opts.Delay)
	if f.opts.Jitter > 0 {
		at = at.Add(time.Duration(f.rng.Int64N(int64(f.opts.Jitter))))
	}
	f.seq++
	heap.Push(&f.pending, &message{at: at, seq: f.seq, src: e.name, dst: dst, msg: append([]byte(nil), msg...)})
	select {
	case f.wake <- struct{}{}:
	default:
	}
	return nil
}

// run delivers due messages one at a time, in order of due time.
func (f *Fabric) run() {
	defer close(f.done)
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		f.mu.Lock()
		var due *message
		var wait time.Duration = time.Hour
		if len(f.pending) > 0 {
			if d := time.Until(f.pending[0].at); d <= 0 {
				due = heap.Pop(&f.pending).(*message)
			} else {
				wait = d
			}
		}
		var deliver func(identity.PeerName, []byte) error
		if due != nil && !f.cut[[2]identity.PeerName{due.src, due.dst}] {
			if e := f.endpoints[due.dst]; e != nil {
				deliver = e.deliver
			}
		}
		f.mu.Unlock()
		if due != nil {
			if deliver != nil {
				if err := deliver(due.src, due.msg); err != nil {
					f.mu.Lock()
					if len(f.errs) < 100 {
						f.errs = append(f.errs, err)
					}
					f.mu.Unlock()
				}
			}
			if f.ctx.Err() != nil {
				return
			}
			continue
		}
		timer.Reset(wait)
		select {
		case <-f.ctx.Done():
			return
		case <-f.wake:
		case <-timer.C:
		}
		if !timer.Stop() {
			select {
			case <-timer.C:
			default:
			}
		}
	}
}

type message struct {
	at       time.Time
	seq      uint64
	src, dst identity.PeerName
	msg      []byte
}

// queue is a min-heap of messages by due time, then send order.
type queue []*message

func (q queue) Len() int { return len(q) }
func (q queue) Less(i, j int) bool {
	if !q[i].at.Equal(q[j].at) {
		return q[i].at.Before(q[j].at)
	}
	return q[i].seq < q[j].seq
}
func (q queue) Swap(i, j int) { q[i], q[j] = q[j], q[i] }
func (q *queue) Push(x any)   { *q = append(*q, x.(*message)) }
func (q *queue) Pop() any {
	old := *q
	m := old[len(old)-1]
	*q = old[:len(old)-1]
	return m
}
