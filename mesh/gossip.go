package mesh

import (
	"slices"
	"time"

	"github.com/weavelab/weave/mesh/identity"
	"github.com/weavelab/weave/mesh/topology"
)

// Topology gossip. A change (ours, or news merged from a neighbour) goes as
// a delta to topology.FanOut(peers) random neighbours, never to all of them;
// receivers forward only entries that were new to them, so each change
// costs O(N log N) messages mesh-wide at most. Deltas that arrive in one
// burst of actor work are sent as one update. What a bounded fan-out
// misses, anti-entropy repairs: every GossipInterval we send one random
// neighbour the digest of our topology; if it differs, the neighbour sends
// its summary (name, version, UID per peer) and each side sends the other
// only the entries it lacks. A new connection starts with a summary
// exchange, so a joining peer learns the whole topology once per link.

// busyAntiEntropy: while we keep publishing, a topology anti-entropy round
// runs every this many gossip intervals instead of every one.
const busyAntiEntropy = 5

// addPending queues changed entries for the next flush. from is the
// connection they came from (nil for our own changes). Actor only.
func (r *Router) addPending(from *conn, changed []topology.Peer) {
	if len(changed) == 0 {
		return
	}
	if len(r.pending) == 0 {
		r.pendingSrc, r.pendMixed = from, false
	} else if r.pendingSrc != from {
		r.pendingSrc, r.pendMixed = nil, true
	}
	for _, p := range changed {
		r.pending[p.Name] = p
	}
}

// publishPending garbage-collects unreachable peers, refreshes the routes
// snapshot, gossips the pending delta and runs discovery. Actor only.
func (r *Router) publishPending() {
	var removed []identity.PeerName
	// GC costs a walk of the topology. It can only remove something when
	// a connection was dropped or a peer added since the last one. Added
	// peers are checked at once too: a neighbour's anti-entropy may hand
	// back an entry we just dropped as unreachable, and it must not linger.
	if r.topo.LostConns() || r.topo.NeedsGC() {
		removed = r.topo.GC()
		for _, n := range removed {
			delete(r.pending, n)
		}
	}
	r.storeRoutes()
	update := make([]topology.Peer, 0, len(r.pending))
	for _, p := range r.pending {
		update = append(update, p)
	}
	clear(r.pending)
	exclude := r.pendingSrc
	r.pendingSrc, r.pendMixed = nil, false
	if len(removed) > 0 {
		r.log.Debug("peers removed", "count", len(removed))
	}
	r.discover(update, removed)
	if len(update) == 0 {
		return
	}
	slices.SortFunc(update, func(a, b topology.Peer) int {
		switch {
		case a.Name < b.Name:
			return -1
		case a.Name > b.Name:
			return 1
		}
		return 0
	})
	// Encode once; a neighbour known to hold some of the entries (it sent
	// them, we sent them, or its last summary had them) gets only the rest.
	var shared []byte
	for _, c := range r.gossipTargets(topology.FanOut(r.topo.Len()), exclude) {
		send := c.lacking(update)
		var err error
		switch {
		case len(send) == 0:
			continue
		case len(send) == len(update):
			if shared == nil {
				shared = envelope(tagUpdate, topology.EncodeUpdate(update))
			}
			err = c.enqueue(shared)
		default:
			err = c.enqueue(envelope(tagUpdate, topology.EncodeUpdate(send)))
		}
		if err == nil { // a dropped update is left to anti-entropy
			c.learnt(send)
		}
	}
	r.lastPublish = time.Now()
}

// lacking returns the entries of update that c is not known to hold (a
// fresh slice unless it is all of them). Actor only.
func (c *conn) lacking(update []topology.Peer) []topology.Peer {
	var out []topology.Peer
	for i := range update {
		p := &update[i]
		if k, ok := c.known[p.Name]; ok && !topology.StampOf(p).Beats(k) {
			if out == nil {
				out = append(make([]topology.Peer, 0, len(update)), update[:i]...)
			}
			continue
		}
		if out != nil {
			out = append(out, *p)
		}
	}
	if out == nil {
		return update
	}
	return out
}

// learnt records that c holds peers (or newer). Actor only.
func (c *conn) learnt(peers []topology.Peer) {
	if c.known == nil {
		c.known = make(topology.Summary)
	}
	for i := range peers {
		c.learntStamp(peers[i].Name, topology.StampOf(&peers[i]))
	}
}

func (c *conn) learntStamp(n identity.PeerName, st topology.Stamp) {
	if k, ok := c.known[n]; !ok || st.Beats(k) {
		c.known[n] = st
	}
}

// gossipTargets picks up to n random registered connections other than
// exclude. Actor only.
func (r *Router) gossipTargets(n int, exclude *conn) []*conn {
	all := make([]*conn, 0, len(r.conns))
	for _, c := range r.conns {
		if c != exclude {
			all = append(all, c)
		}
	}
	if len(all) <= n {
		return all
	}
	r.rng.Shuffle(len(all), func(i, j int) { all[i], all[j] = all[j], all[i] })
	return all[:n]
}

// onUpdate merges an update from a neighbour. Actor only.
func (r *Router) onUpdate(from *conn, peers []topology.Peer) {
	changed, err := r.topo.Merge(peers)
	if err != nil {
		r.log.Warn("bad topology update", "remote", from.remote().String(), "err", err)
		return
	}
	from.learnt(peers)
	r.addPending(from, changed)
}

// onDigest answers a neighbour's digest with our summary when they differ.
func (r *Router) onDigest(from *conn, d uint64) {
	if from.registered && d != r.topo.Digest() {
		r.sendSummary(from)
	}
}

// onSummary sends a neighbour what its summary lacks, and asks for what we
// lack by sending ours.
func (r *Router) onSummary(from *conn, s topology.Summary) {
	if !from.registered {
		return
	}
	if from.known == nil {
		from.known = make(topology.Summary, len(s))
	}
	for n, st := range s {
		from.learntStamp(n, st)
	}
	if newer := r.topo.NewerThan(s); len(newer) > 0 {
		if from.enqueue(envelope(tagUpdate, topology.EncodeUpdate(newer))) == nil {
			from.learnt(newer)
		}
	}
	if r.topo.Wants(s) {
		r.sendSummary(from)
	}
}

func (r *Router) sendSummary(c *conn) {
	c.enqueue(envelope(tagSummary, topology.EncodeSummary(r.topo.Summary())))
}

// antiEntropy runs every GossipInterval: the topology digest and each
// gossip channel's state go to one random neighbour. While updates are
// flowing (we published within the last interval) digests differ anyway
// and a summary round would mostly repeat what the updates carry, so the
// topology round then runs only every busyAntiEntropy intervals. Actor only.
func (r *Router) antiEntropy() {
	cs := r.gossipTargets(1, nil)
	if len(cs) == 0 {
		return
	}
	r.aeSkipped++
	if time.Since(r.lastPublish) >= r.cfg.GossipInterval || r.aeSkipped >= busyAntiEntropy {
		r.aeSkipped = 0
		cs[0].enqueue(encodeDigest(r.topo.Digest()))
	}
	if cs = r.gossipTargets(1, nil); len(cs) > 0 {
		r.channels.sendAllState(cs[0])
	}
}

// digest returns our topology digest and size for tests; ok is false
// while changes wait to be published (the routes may lag the topology).
func (r *Router) digest() (d uint64, n int, ok bool) {
	ok = r.call(func() {
		d, n = r.topo.Digest(), r.topo.Len()
		ok = len(r.pending) == 0 && !r.ourDirty
	}) && ok
	return d, n, ok
}

// knows reports whether our topology has an entry for name (for tests).
func (r *Router) knows(name identity.PeerName) bool {
	var found bool
	r.call(func() { _, found = r.topo.Get(name) })
	return found
}
