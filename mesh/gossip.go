package mesh

import (
	"cmp"
	"log/slog"
	"math/rand/v2"
	"slices"
	"time"

	"github.com/weavelab/weave/mesh/clock"
	"github.com/weavelab/weave/mesh/identity"
	"github.com/weavelab/weave/mesh/topology"
)

// Topology gossip: how every peer learns every entry once, and every change
// once, at a cost close to the size of what it learns.
//
//   - Our own entry, when it changes, is pushed whole to every neighbour:
//     none of them can have it yet.
//   - Any other entry that changes here is announced, as a stamp (name,
//     UID, version: 15 bytes instead of an entry's ~150), to each neighbour
//     not known to hold it; a neighbour that lacks it asks one announcer
//     for it (want) and gets it from that one only (update). So each peer
//     receives each entry version about once, whatever its degree, and
//     nothing is echoed back to where it came from. Announcements wait
//     UpdateDelay, so that a burst of changes goes as one message and
//     copies arriving meanwhile from other neighbours suppress them.
//   - Per entry we keep which neighbours are known to hold our version
//     (they sent it, announced it, asked us for it, or we sent it): a bit
//     per neighbour slot, reset when the version changes.
//   - A request unanswered after RequestTimeout (lost, or the neighbour
//     went) goes to another neighbour that announced the entry.
//   - Anti-entropy, for whatever loss and races leave: every
//     GossipInterval one random neighbour gets our digest (8 bytes); if it
//     differs, the neighbour answers with the digests of the 64 buckets of
//     names, we send our stamps of the buckets that differ, and the
//     neighbour asks for what it lacks and announces what we lack. A
//     quiet mesh costs one digest per peer per interval, whatever its size.
//   - A new neighbour gets our whole summary (stamps), and asks for what it
//     lacks, once, from whichever neighbour announced it first.
//
// topoGossip is that protocol without I/O: it owns the topology, is driven
// by calls from one goroutine (the router's actor, or a simulation), sends
// through gossipOutput and reads time and sets timers through the injected
// clock, posting timer work back to its goroutine with post. Nothing in it
// depends on map order, so a simulation on a virtual clock replays exactly.
type topoGossip struct {
	cfg  gossipConfig
	out  gossipOutput
	post func(func())
	topo *topology.Topology
	our  identity.PeerName

	links []*gossipLink // by name, ascending
	slots [maxLinkSlots]*gossipLink
	// holders: per entry, by its index in topo (topology.Index), the
	// neighbours known to hold our version. An index freed by a GC may be
	// left with stale bits: whoever gets it next is a new entry, and every
	// entry that changes starts again from none.
	holders []slotMask
	noEntry slotMask // what held returns for a name we hold no entry for
	// wanted: entries asked for and not yet received. A map keeps the
	// room it once needed, so one grown large (a cold start asks for
	// every entry) is let go once empty (see unwant).
	wanted     map[identity.PeerName]*wantState
	wantedPeak int
	// changed: names whose entries changed since the last publish (a name
	// may be listed more than once), for gossipOutput.topologyChanged.
	changed []identity.PeerName
	// tombs: entries we garbage-collected lately, by the stamp they had.
	// A neighbour that has not collected one yet offers it back; taking
	// it would bring the dead peer back to life here, to be collected
	// again, round and round the mesh. So while a tomb lasts, that entry
	// (or an older one) is taken only if some entry we hold lists a
	// connection to its peer; otherwise it is parked, and asked for if
	// an entry that lists it arrives (a partition healing).
	tombs  map[identity.PeerName]tomb
	parked map[identity.PeerName]parkedOffer

	ourDirty   bool // our connection list changed
	pushOurs   bool // our entry changed: push it to every neighbour
	pubArmed   bool
	pubTimer   clock.Timer
	aeTimer    clock.Timer
	retryArmed bool
	retryTimer clock.Timer
	stopped    bool
}

// gossipConfig is the part of Config the protocol uses.
type gossipConfig struct {
	UpdateDelay    time.Duration
	GossipInterval time.Duration
	RequestTimeout time.Duration
	Clock          clock.Clock
	Rand           *rand.Rand
	Log            *slog.Logger
}

// gossipOutput is where the protocol's effects go.
type gossipOutput interface {
	// sendTo queues msg (an envelope) for neighbour to without blocking;
	// it reports false when the message was dropped.
	sendTo(to identity.PeerName, msg []byte) bool
	// topologyChanged reports, once per publish, the entries that changed
	// (ours included) and the peers garbage-collected, both sorted. The
	// entries are the topology's own (never changed in place): they may be
	// kept but must not be modified.
	topologyChanged(changed []*topology.Peer, removed []identity.PeerName)
}

// maxLinkSlots bounds the neighbours whose holdings are tracked; entries
// are announced to any others unconditionally (correct, just costlier).
const maxLinkSlots = 128

// maxRequestTries bounds how often one entry is asked for before the
// request is dropped (anti-entropy then finds it again).
const maxRequestTries = 4

// maxUpdateEntries bounds the entries per update message (topology.MaxPeers
// is what a receiver accepts).
const maxUpdateEntries = 4096

type gossipLink struct {
	name identity.PeerName
	conn topology.Conn
	slot int // -1: untracked
	// announce: names whose stamps go to this neighbour at the next
	// publish (a name may be listed more than once).
	announce []identity.PeerName
}

type tomb struct {
	stamp topology.Stamp
	until time.Time
}

type parkedOffer struct {
	stamp topology.Stamp
	from  identity.PeerName
}

// tombLife is how long a collected entry stays in tombs, in gossip
// intervals: long enough for every peer to collect it too.
const tombLife = 10

type wantState struct {
	stamp    topology.Stamp
	from     identity.PeerName // asked last
	cands    slotMask          // neighbours that announced it
	deadline time.Time
	tries    int
}

// slotMask is a set of link slots.
type slotMask [maxLinkSlots / 64]uint64

func (m *slotMask) set(i int) {
	if i >= 0 {
		m[i>>6] |= 1 << (i & 63)
	}
}

func (m *slotMask) clear(i int) {
	if i >= 0 {
		m[i>>6] &^= 1 << (i & 63)
	}
}

func (m slotMask) has(i int) bool { return i >= 0 && m[i>>6]&(1<<(i&63)) != 0 }

func newTopoGossip(topo *topology.Topology, cfg gossipConfig, out gossipOutput, post func(func())) *topoGossip {
	return &topoGossip{
		cfg: cfg, out: out, post: post, topo: topo, our: topo.Our().Name,
		wanted: make(map[identity.PeerName]*wantState),
		tombs:  make(map[identity.PeerName]tomb),
		parked: make(map[identity.PeerName]parkedOffer),
	}
}

// start arms the anti-entropy timer.
func (g *topoGossip) start() { g.armAntiEntropy() }

// stop disarms the timers; timer work already posted does nothing.
func (g *topoGossip) stop() {
	g.stopped = true
	for _, t := range []clock.Timer{g.pubTimer, g.aeTimer, g.retryTimer} {
		if t != nil {
			t.Stop()
		}
	}
}

// after runs f through post once d has passed, unless stopped by then.
func (g *topoGossip) after(d time.Duration, f func()) clock.Timer {
	return g.cfg.Clock.AfterFunc(d, func() {
		g.post(func() {
			if !g.stopped {
				f()
			}
		})
	})
}

func (g *topoGossip) link(name identity.PeerName) *gossipLink {
	i, ok := slices.BinarySearchFunc(g.links, name, func(l *gossipLink, n identity.PeerName) int { return cmp.Compare(l.name, n) })
	if !ok {
		return nil
	}
	return g.links[i]
}

// setLink adds our connection c (a new neighbour) or updates it.
func (g *topoGossip) setLink(c topology.Conn) {
	i, ok := slices.BinarySearchFunc(g.links, c.Remote, func(l *gossipLink, n identity.PeerName) int { return cmp.Compare(l.name, n) })
	if ok {
		if g.links[i].conn != c {
			g.links[i].conn = c
			g.ourDirty = true
			g.arm()
		}
		return
	}
	l := &gossipLink{name: c.Remote, conn: c, slot: -1}
	for s := range g.slots {
		if g.slots[s] == nil {
			l.slot, g.slots[s] = s, l
			break
		}
	}
	g.links = slices.Insert(g.links, i, l)
	g.ourDirty = true
	g.arm()
	// Our whole summary: the neighbour asks for what it lacks and
	// announces what we lack.
	g.send(l, tagSummary, topology.EncodePartialStamps(topology.AllBuckets, g.topo.Stamps()))
}

// dropLink forgets the neighbour name (its connection is gone).
func (g *topoGossip) dropLink(name identity.PeerName) {
	i, ok := slices.BinarySearchFunc(g.links, name, func(l *gossipLink, n identity.PeerName) int { return cmp.Compare(l.name, n) })
	if !ok {
		return
	}
	l := g.links[i]
	g.links = slices.Delete(g.links, i, i+1)
	if l.slot >= 0 {
		g.slots[l.slot] = nil
		for i := range g.holders {
			g.holders[i].clear(l.slot)
		}
		for _, w := range g.wanted {
			w.cands.clear(l.slot)
		}
	}
	now := g.cfg.Clock.Now()
	for _, w := range g.wanted {
		if w.from == name {
			w.deadline = now // ask someone else at once
		}
	}
	if len(g.wanted) > 0 {
		g.armRetry(0)
	}
	g.ourDirty = true
	g.arm()
}

// held returns the holders of the entry we hold for name, to read or
// change at once (a later call may move them). For a name we hold no
// entry for it returns a mask of none whose changes are dropped.
func (g *topoGossip) held(name identity.PeerName) *slotMask {
	i, ok := g.topo.Index(name)
	if !ok {
		g.noEntry = slotMask{}
		return &g.noEntry
	}
	if i >= len(g.holders) {
		g.holders = slices.Grow(g.holders, g.topo.IndexLimit()-len(g.holders))[:g.topo.IndexLimit()]
	}
	return &g.holders[i]
}

// ourConns lists our links for our topology entry.
func (g *topoGossip) ourConns() []topology.Conn {
	out := make([]topology.Conn, len(g.links))
	for i, l := range g.links {
		out[i] = l.conn
	}
	return out
}

// arm schedules a publish after UpdateDelay unless one is pending.
func (g *topoGossip) arm() {
	if g.pubArmed || g.stopped {
		return
	}
	g.pubArmed = true
	g.pubTimer = g.after(g.cfg.UpdateDelay, g.publish)
}

// send sends a topology message to l.
func (g *topoGossip) send(l *gossipLink, tag byte, body []byte) bool {
	return g.out.sendTo(l.name, envelope(tag, body))
}

// receive handles a decoded topology message from neighbour from.
func (g *topoGossip) receive(from identity.PeerName, m topoMsg) {
	l := g.link(from)
	if l == nil {
		return // not (or no longer) a neighbour
	}
	switch m.tag {
	case tagUpdate:
		g.onUpdate(l, m.peers)
	case tagHave:
		g.onHave(l, m.stamps)
	case tagWant:
		g.onWant(l, m.stamps)
	case tagDigest:
		if m.digest != g.topo.Digest() {
			d := g.topo.BucketDigests()
			g.send(l, tagBuckets, topology.EncodeBucketDigests(&d))
		}
	case tagBuckets:
		ours := g.topo.BucketDigests()
		var differ uint64
		for i := range ours {
			if ours[i] != m.bucketD[i] {
				differ |= 1 << i
			}
		}
		if differ != 0 {
			g.send(l, tagSummary, topology.EncodePartialStamps(differ, g.topo.StampsOf(differ)))
		}
	case tagSummary:
		g.onHave(l, m.stamps)
		// What the neighbour lacks in the buckets it covered (it may have
		// dropped an entry we thought it held). Both lists are sorted.
		theirs := m.stamps
		for _, e := range g.topo.StampsOf(m.buckets) {
			for len(theirs) > 0 && theirs[0].Name < e.Name {
				theirs = theirs[1:]
			}
			if len(theirs) == 0 || theirs[0].Name != e.Name {
				g.held(e.Name).clear(l.slot)
				l.announce = append(l.announce, e.Name)
			}
		}
		if len(l.announce) > 0 {
			g.arm()
		}
	}
}

// onUpdate merges entries sent by l.
func (g *topoGossip) onUpdate(l *gossipLink, peers []topology.Peer) {
	changed, err := g.topo.MergeEntries(peers)
	if err != nil {
		g.cfg.Log.Warn("bad topology update", "peer", l.name.String(), "err", err)
		return
	}
	var unpark map[*gossipLink][]topology.NamedStamp
	for _, p := range changed {
		delete(g.tombs, p.Name)
		delete(g.parked, p.Name)
		for _, c := range p.Conns {
			if po, ok := g.parked[c.Remote]; ok {
				delete(g.parked, c.Remote)
				if k := g.link(po.from); k != nil {
					if unpark == nil {
						unpark = make(map[*gossipLink][]topology.NamedStamp)
					}
					unpark[k] = append(unpark[k], topology.NamedStamp{Name: c.Remote, Stamp: po.stamp})
				}
			}
		}
	}
	for _, k := range g.links { // in name order
		if s := unpark[k]; s != nil {
			slices.SortFunc(s, cmpStamps)
			g.onHave(k, s)
		}
	}
	for _, p := range changed {
		g.changed = append(g.changed, p.Name)
		if p.Name == g.our {
			// An earlier run of us was out there: we outbid it.
			*g.held(g.our) = slotMask{}
			g.pushOurs = true
			continue
		}
		*g.held(p.Name) = slotMask{}
		for _, k := range g.links {
			if k != l {
				k.announce = append(k.announce, p.Name)
			}
		}
	}
	for i := range peers {
		n := peers[i].Name
		st, ok := g.topo.Stamp(n)
		if !ok {
			continue
		}
		if st == topology.StampOf(&peers[i]) {
			g.held(n).set(l.slot)
		}
		if w := g.wanted[n]; w != nil && !w.stamp.Beats(st) {
			g.unwant(n)
		}
	}
	if len(changed) > 0 {
		g.arm()
	}
}

// onHave handles stamps l holds: ask l for the entries that beat ours
// (unless asked of another neighbour already), note the ones it holds as
// we do, and announce ours back where it is behind.
func (g *topoGossip) onHave(l *gossipLink, s []topology.NamedStamp) {
	var want []topology.NamedStamp
	var refs map[identity.PeerName]bool
	now := g.cfg.Clock.Now()
	for _, e := range s {
		name, st := e.Name, e.Stamp
		cur, ok := g.topo.Stamp(name)
		if tb, dead := g.tombs[name]; !ok && dead && !st.Beats(tb.stamp) {
			if refs == nil {
				refs = g.referenced()
			}
			if !refs[name] {
				g.parked[name] = parkedOffer{stamp: st, from: l.name}
				continue
			}
		}
		switch {
		case ok && cur == st:
			g.held(name).set(l.slot)
			continue
		case ok && cur.Beats(st):
			// l is behind (whatever we thought): announce ours.
			g.held(name).clear(l.slot)
			l.announce = append(l.announce, name)
			g.arm()
			continue
		case name == g.our:
			if st.UID == cur.UID {
				continue // a version of us we never made: ignore
			}
		}
		if w := g.wanted[name]; w != nil && !st.Beats(w.stamp) {
			w.cands.set(l.slot)
			continue
		}
		w := &wantState{stamp: st, from: l.name, deadline: now.Add(g.cfg.RequestTimeout)}
		w.cands.set(l.slot)
		g.wanted[name] = w
		g.wantedPeak = max(g.wantedPeak, len(g.wanted))
		want = append(want, e) // sorted, as s is
	}
	if len(want) > 0 {
		g.send(l, tagWant, topology.EncodeStamps(want))
		g.armRetry(g.cfg.RequestTimeout)
	}
}

// referenced returns the peers that some entry we hold (ours included)
// lists a connection to.
func (g *topoGossip) referenced() map[identity.PeerName]bool {
	refs := make(map[identity.PeerName]bool)
	for _, l := range g.links {
		refs[l.name] = true
	}
	for p := range g.topo.All() {
		for _, c := range p.Conns {
			refs[c.Remote] = true
		}
	}
	return refs
}

// onWant sends l the entries it asked for (our current versions).
func (g *topoGossip) onWant(l *gossipLink, s []topology.NamedStamp) {
	out := make([]*topology.Peer, 0, len(s))
	for _, e := range s { // sorted by name
		if p, ok := g.topo.Entry(e.Name); ok {
			out = append(out, p)
		} // else gone meanwhile; the asker tries elsewhere
	}
	for chunk := range slices.Chunk(out, maxUpdateEntries) {
		if !g.out.sendTo(l.name, topology.AppendUpdate([]byte{tagUpdate}, chunk)) {
			continue // queue full: the asker asks again
		}
		for _, p := range chunk {
			g.held(p.Name).set(l.slot)
		}
	}
}

// publish runs UpdateDelay after a change: our new entry, garbage
// collection, then pushes and announcements, one message per neighbour.
func (g *topoGossip) publish() {
	g.pubArmed = false
	if g.ourDirty {
		g.ourDirty = false
		g.topo.SetOurConns(g.ourConns())
		g.changed = append(g.changed, g.our)
		*g.held(g.our) = slotMask{}
		g.pushOurs = true
	}
	var removed []identity.PeerName
	if g.topo.LostConns() {
		removed = g.gc()
	}
	if g.pushOurs {
		g.pushOurs = false
		ours, _ := g.topo.Entry(g.our)
		msg := topology.AppendUpdate([]byte{tagUpdate}, []*topology.Peer{ours})
		m := *g.held(g.our)
		for _, l := range g.links {
			if !m.has(l.slot) && g.out.sendTo(l.name, msg) {
				m.set(l.slot)
			}
		}
		*g.held(g.our) = m
	}
	var s []topology.NamedStamp
	for _, l := range g.links {
		if len(l.announce) == 0 {
			continue
		}
		slices.Sort(l.announce)
		s = s[:0]
		for _, n := range slices.Compact(l.announce) {
			if st, ok := g.topo.Stamp(n); ok && !g.held(n).has(l.slot) {
				s = append(s, topology.NamedStamp{Name: n, Stamp: st})
			}
		}
		l.announce = reuse(l.announce)
		if len(s) > 0 {
			g.send(l, tagHave, topology.EncodeStamps(s))
		}
	}
	if len(g.changed) == 0 && len(removed) == 0 {
		return
	}
	// The entries now held for the names that changed: entries are
	// replaced, never changed in place, so the last one stored is the one
	// to report, and a name collected meanwhile (gc) has none.
	slices.Sort(g.changed)
	changed := make([]*topology.Peer, 0, len(g.changed))
	for _, n := range slices.Compact(g.changed) {
		if p, ok := g.topo.Entry(n); ok {
			changed = append(changed, p)
		}
	}
	g.changed = reuse(g.changed)
	if len(changed) == 0 && len(removed) == 0 {
		return
	}
	g.out.topologyChanged(changed, removed)
}

// reuse empties a list of names for reuse, letting go of a large one: a
// cold start fills the lists with every name once, and a router with
// thousands of peers should not keep that much per neighbour for ever.
func reuse(names []identity.PeerName) []identity.PeerName {
	if cap(names) > 256 {
		return nil
	}
	return names[:0]
}

func cmpStamps(a, b topology.NamedStamp) int { return cmp.Compare(a.Name, b.Name) }

// gc drops the peers no longer reachable from us, and what we kept about
// them.
func (g *topoGossip) gc() []identity.PeerName {
	collected := g.topo.Collect()
	until := g.cfg.Clock.Now().Add(tombLife * g.cfg.GossipInterval)
	removed := make([]identity.PeerName, 0, len(collected))
	for n, st := range collected {
		removed = append(removed, n)
		g.tombs[n] = tomb{stamp: st, until: until}
	}
	slices.Sort(removed)
	for _, n := range removed {
		// Names left in g.changed and the links' announce lists are
		// skipped when they are used, as they no longer have an entry;
		// their holders are reset if they come back (see holders).
		g.unwant(n)
	}
	if len(removed) > 0 {
		g.cfg.Log.Debug("peers removed", "count", len(removed))
	}
	return removed
}

// armRetry arms the request timer to fire after d unless it is armed.
func (g *topoGossip) armRetry(d time.Duration) {
	if g.stopped {
		return
	}
	if g.retryArmed {
		if d > 0 {
			return
		}
		g.retryTimer.Stop()
	}
	g.retryArmed = true
	g.retryTimer = g.after(d, g.retry)
}

// retry asks again, of another announcer if there is one, for the entries
// whose requests timed out.
func (g *topoGossip) retry() {
	g.retryArmed = false
	now := g.cfg.Clock.Now()
	var due []identity.PeerName
	next := time.Time{}
	for n, w := range g.wanted {
		if !w.deadline.After(now) {
			due = append(due, n)
		} else if next.IsZero() || w.deadline.Before(next) {
			next = w.deadline
		}
	}
	slices.Sort(due)
	asks := make(map[*gossipLink][]topology.NamedStamp)
	for _, n := range due {
		w := g.wanted[n]
		l := g.nextCandidate(w)
		if w.tries++; l == nil || w.tries >= maxRequestTries {
			g.unwant(n)
			continue
		}
		w.from, w.deadline = l.name, now.Add(g.cfg.RequestTimeout)
		if next.IsZero() || w.deadline.Before(next) {
			next = w.deadline
		}
		asks[l] = append(asks[l], topology.NamedStamp{Name: n, Stamp: w.stamp}) // due is sorted
	}
	for _, l := range g.links { // in name order
		if s := asks[l]; s != nil {
			g.send(l, tagWant, topology.EncodeStamps(s))
		}
	}
	if !next.IsZero() {
		g.armRetry(max(next.Sub(now), time.Millisecond))
	}
}

// nextCandidate picks the neighbour to ask for w next: the first announcer
// after the one asked last (in slot order), else that one again if it is
// still linked.
func (g *topoGossip) nextCandidate(w *wantState) *gossipLink {
	last := -1
	if l := g.link(w.from); l != nil {
		last = l.slot
	}
	for k := 1; k <= maxLinkSlots; k++ {
		s := (last + k + maxLinkSlots) % maxLinkSlots
		if w.cands.has(s) && g.slots[s] != nil {
			return g.slots[s]
		}
	}
	return nil
}

// armAntiEntropy schedules the next anti-entropy round.
func (g *topoGossip) armAntiEntropy() {
	d := time.Duration(float64(g.cfg.GossipInterval) * (0.75 + g.cfg.Rand.Float64()/2))
	g.aeTimer = g.after(d, g.antiEntropy)
}

// antiEntropy sends our digest to one random neighbour, and collects peers
// added but never connected to the rest (stale entries handed back by a
// lagging neighbour) once things have settled.
func (g *topoGossip) antiEntropy() {
	g.armAntiEntropy()
	now := g.cfg.Clock.Now()
	for n, tb := range g.tombs {
		if now.After(tb.until) {
			delete(g.tombs, n)
			delete(g.parked, n)
		}
	}
	if g.topo.NeedsGC() && !g.pubArmed && len(g.wanted) == 0 {
		if removed := g.gc(); len(removed) > 0 {
			g.out.topologyChanged(nil, removed)
		}
	}
	if len(g.links) == 0 {
		return
	}
	l := g.links[g.cfg.Rand.IntN(len(g.links))]
	g.out.sendTo(l.name, encodeDigest(g.topo.Digest()))
}

// randomLink returns a random neighbour, or "" with none.
func (g *topoGossip) randomLink() identity.PeerName {
	if len(g.links) == 0 {
		return identity.UnknownPeer
	}
	return g.links[g.cfg.Rand.IntN(len(g.links))].name
}

// unwant forgets the request for name.
func (g *topoGossip) unwant(name identity.PeerName) {
	delete(g.wanted, name)
	if len(g.wanted) == 0 && g.wantedPeak > 64 {
		g.wanted, g.wantedPeak = make(map[identity.PeerName]*wantState), 0
	}
}

// settled reports whether nothing waits to be published or fetched.
func (g *topoGossip) settled() bool { return !g.pubArmed && len(g.wanted) == 0 }
