package mesh

import (
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/weavelab/weave/mesh/identity"
	"github.com/weavelab/weave/mesh/topology"
)

// incompatibleCloseDelay is how long a connection to an incompatible peer
// stays up after we found out, for our own state to reach it.
const incompatibleCloseDelay = 500 * time.Millisecond

// Gossiper is the state a gossip channel replicates, as implemented by its
// user (DNS, IPAM). Its methods are called from connection goroutines,
// several at once: implementations must be safe for concurrent use and
// should not block for long.
type Gossiper interface {
	// OnGossip merges state sent by src (a broadcast, or periodic gossip
	// from a neighbour) and returns the part that was new to us (nil if
	// nothing), which the mesh passes on to other neighbours.
	OnGossip(src identity.PeerName, msg []byte) (delta []byte, err error)
	// OnUnicast receives a message that src sent to us alone.
	OnUnicast(src identity.PeerName, msg []byte) error
	// Gossip returns our full state (nil when there is none), sent
	// periodically to a random neighbour and to every new neighbour.
	Gossip() []byte
}

// GossipChannel is a named channel on which every peer's Gossiper of the
// same name replicates state. Obtain one with Router.NewGossipChannel.
// Its methods are safe for concurrent use and do not wait for the actor.
type GossipChannel struct {
	r    *Router
	name string
	g    Gossiper
}

// channelRegistry holds the router's gossip channels by name.
type channelRegistry struct {
	mu sync.RWMutex
	m  map[string]*GossipChannel
}

func (cr *channelRegistry) get(name string) *GossipChannel {
	cr.mu.RLock()
	defer cr.mu.RUnlock()
	return cr.m[name]
}

// sendAllState sends every channel's full state to c.
func (cr *channelRegistry) sendAllState(c *conn) {
	cr.mu.RLock()
	chans := make([]*GossipChannel, 0, len(cr.m))
	for _, gc := range cr.m {
		chans = append(chans, gc)
	}
	cr.mu.RUnlock()
	for _, gc := range chans {
		if data := gc.g.Gossip(); data != nil {
			gc.send(c, gossipPeriodic, identity.UnknownPeer, data)
		}
	}
}

// NewGossipChannel registers g under name (at most 255 bytes) and returns
// its channel. Registering a name again replaces the earlier Gossiper.
// Messages for a name nobody registered are dropped (but broadcasts are
// still relayed).
func (r *Router) NewGossipChannel(name string, g Gossiper) *GossipChannel {
	if len(name) > maxChannelName {
		name = name[:maxChannelName]
	}
	gc := &GossipChannel{r: r, name: name, g: g}
	r.channels.mu.Lock()
	r.channels.m[name] = gc
	r.channels.mu.Unlock()
	return gc
}

// Name returns the channel's name.
func (gc *GossipChannel) Name() string { return gc.name }

// Broadcast sends update to every peer reachable from us, along our
// broadcast tree, so each receives it once (while routes agree). Each
// receiver hands it to its Gossiper's OnGossip. A neighbour the routes do
// not reach yet (a connection whose topology entries are still on their
// way) gets it directly, so that a change made just after two routers
// connect does not wait for periodic gossip. Delivery is best effort;
// periodic gossip of full state repairs losses.
func (gc *GossipChannel) Broadcast(update []byte) {
	r := gc.r
	m := gossipMsg{kind: gossipBroadcast, ttl: maxTTL, src: r.cfg.Peer.Name, channel: gc.name, payload: update}
	routes := r.Routes()
	msg := m.encode()
	r.relay(routes.Broadcast(r.cfg.Peer.Name), msg)
	for name, c := range *r.neigh.Load() {
		if _, ok := routes.Distance(name); !ok {
			direct := m
			direct.ttl = 1
			c.enqueue(direct.encode())
		}
	}
}

// Unicast sends msg to dst's Gossiper (OnUnicast), relayed hop by hop along
// the unicast routes. It returns an error wrapping ErrNoRoute when dst is
// unreachable; delivery beyond the first hop is best effort.
func (gc *GossipChannel) Unicast(dst identity.PeerName, msg []byte) error {
	r := gc.r
	if dst == r.cfg.Peer.Name {
		return gc.g.OnUnicast(dst, msg)
	}
	m := gossipMsg{kind: gossipUnicast, ttl: maxTTL, src: r.cfg.Peer.Name, dst: dst, channel: gc.name, payload: msg}
	return r.forwardUnicast(dst, m.encode())
}

// send sends one message of this channel directly to neighbour c.
func (gc *GossipChannel) send(c *conn, kind byte, dst identity.PeerName, payload []byte) {
	m := gossipMsg{kind: kind, ttl: 1, src: gc.r.cfg.Peer.Name, dst: dst, channel: gc.name, payload: payload}
	c.enqueue(m.encode())
}

// relay enqueues an encoded message to the given neighbours.
func (r *Router) relay(to []identity.PeerName, msg []byte) {
	neigh := *r.neigh.Load()
	for _, n := range to {
		if c := neigh[n]; c != nil {
			c.enqueue(msg)
		}
	}
}

func (r *Router) forwardUnicast(dst identity.PeerName, msg []byte) error {
	next, ok := r.Routes().Unicast(dst)
	if !ok {
		return fmt.Errorf("gossip to %s: %w", dst, ErrNoRoute)
	}
	c := (*r.neigh.Load())[next]
	if c == nil {
		return fmt.Errorf("gossip to %s via %s: %w", dst, next, ErrNoRoute)
	}
	if err := c.enqueue(msg); err != nil {
		return fmt.Errorf("gossip to %s via %s: %w", dst, next, err)
	}
	return nil
}

// onGossip handles a gossip-channel message in the reader goroutine of the
// connection it came on: deliver it here, relay it onwards, or both.
func (r *Router) onGossip(from *conn, m gossipMsg) {
	gc := r.channels.get(m.channel)
	our := r.cfg.Peer.Name
	switch m.kind {
	case gossipBroadcast:
		if m.src == our {
			return // came back round while routes changed
		}
		if m.ttl > 1 {
			m.ttl--
			r.relay(r.Routes().Broadcast(m.src), m.encode())
		}
		if gc != nil {
			if _, err := gc.g.OnGossip(m.src, m.payload); err != nil {
				r.log.Warn("gossip rejected", "channel", m.channel, "remote", m.src.String(), "err", err)
			}
		}
	case gossipUnicast:
		if m.dst != our {
			if m.ttl > 1 {
				m.ttl--
				if err := r.forwardUnicast(m.dst, m.encode()); err != nil {
					r.log.Debug("gossip relay dropped", "channel", m.channel, "err", err)
				}
			}
			return
		}
		if gc != nil {
			if err := gc.g.OnUnicast(m.src, m.payload); err != nil {
				r.log.Warn("gossip unicast rejected", "channel", m.channel, "remote", m.src.String(), "err", err)
			}
		}
	case gossipPeriodic:
		if gc == nil {
			return
		}
		delta, err := gc.g.OnGossip(from.remote().Name, m.payload)
		if errors.Is(err, ErrIncompatible) {
			// Close a moment later, so that the state we sent when the
			// connection came up reaches the peer, which then finds
			// the incompatibility (and says so) too.
			r.log.Error("closing connection to an incompatible peer", "channel", m.channel, "remote", from.remote().String(), "err", err)
			time.AfterFunc(incompatibleCloseDelay, func() { from.close(err) })
			return
		}
		if err != nil {
			r.log.Warn("gossip rejected", "channel", m.channel, "remote", from.remote().String(), "err", err)
			return
		}
		if delta == nil {
			return
		}
		neigh := *r.neigh.Load()
		n := topology.FanOut(len(neigh))
		for name, c := range neigh { // map order is random enough here
			if n == 0 {
				break
			}
			if c != from && name != from.remote().Name {
				gc.send(c, gossipPeriodic, identity.UnknownPeer, delta)
				n--
			}
		}
	}
}
