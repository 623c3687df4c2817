package ipam

import (
	"maps"
	"slices"

	"github.com/weavelab/weave/mesh/identity"
)

// Ballot numbers a proposal of the seeding consensus. Ballots are totally
// ordered by round, then proposer; the zero Ballot is below every real one.
type Ballot struct {
	Round    uint64            `json:"round"`
	Proposer identity.PeerName `json:"proposer,omitzero"`
}

func (b Ballot) less(o Ballot) bool {
	if b.Round != o.Round {
		return b.Round < o.Round
	}
	return b.Proposer < o.Proposer
}

// IsZero reports whether b is the zero ballot.
func (b Ballot) IsZero() bool { return b == Ballot{} }

// Claims is what one peer says about the consensus, as in single-decree
// Paxos: the highest ballot it promised, and the ballot and value it last
// accepted. Only the peer itself changes its claims, and only upwards, so
// each peer's claims merge by keeping the newer.
type Claims struct {
	Promise  Ballot              `json:"promise"`
	Accepted Ballot              `json:"accepted"`
	Value    []identity.PeerName `json:"value,omitempty"`
}

func (c Claims) newerThan(o Claims) bool {
	if c.Promise != o.Promise {
		return o.Promise.less(c.Promise)
	}
	return o.Accepted.less(c.Accepted)
}

// consensus agrees, among the peers that take part, on the set of peers
// that seed the ring. It is Paxos carried by gossip: every participant
// gossips every participant's claims, and each peer, on every change, acts
// as an acceptor (promise the highest ballot seen; accept its proposer's
// value) and, when it proposed, as a proposer (once a quorum promised,
// choose a value: the one accepted under the highest ballot among the
// promisers, else every participant known). A value accepted under one
// ballot by a quorum is chosen, and Paxos guarantees that no other value
// can be, so every peer seeds the same ring.
//
// A peer takes part once it needs addresses or hears of a proposal, unless
// it is an observer (which never seeds; it waits for a ring).
type consensus struct {
	us     identity.PeerName
	quorum int
	known  map[identity.PeerName]Claims
}

func newConsensus(us identity.PeerName, quorum int) *consensus {
	return &consensus{us: us, quorum: max(quorum, 1), known: make(map[identity.PeerName]Claims)}
}

// join makes us a participant.
func (c *consensus) join() {
	if _, ok := c.known[c.us]; !ok {
		c.known[c.us] = Claims{}
	}
}

func (c *consensus) active() bool { _, ok := c.known[c.us]; return ok }

// propose starts a new ballot above every one seen.
func (c *consensus) propose() {
	c.join()
	var top uint64
	for _, cl := range c.known {
		top = max(top, cl.Promise.Round, cl.Accepted.Round)
	}
	own := c.known[c.us]
	own.Promise = Ballot{Round: top + 1, Proposer: c.us}
	c.known[c.us] = own
	c.step()
}

// merge folds other peers' claims in (never overriding ours, which only we
// change) and, when there are any, makes us a participant unless observer.
// It reports whether anything changed.
func (c *consensus) merge(in map[identity.PeerName]Claims, observer bool) bool {
	changed := false
	for p, cl := range in {
		if p == c.us {
			continue
		}
		if old, ok := c.known[p]; !ok || cl.newerThan(old) {
			c.known[p] = Claims{Promise: cl.Promise, Accepted: cl.Accepted, Value: slices.Clone(cl.Value)}
			changed = true
		}
	}
	if len(in) > 0 && !observer && !c.active() {
		c.join()
		changed = true
	}
	if c.active() && c.step() {
		changed = true
	}
	return changed
}

// step applies the acceptor and proposer rules to our claims until they
// settle. It reports whether our claims changed.
func (c *consensus) step() bool {
	own, ok := c.known[c.us]
	if !ok {
		return false
	}
	before := own
	// Acceptor: promise the highest ballot anyone proposed.
	for _, cl := range c.known {
		if own.Promise.less(cl.Promise) {
			own.Promise = cl.Promise
		}
	}
	p := own.Promise
	if !p.IsZero() {
		if p.Proposer == c.us {
			// Proposer: with a quorum of promises, choose the value.
			if own.Accepted != p {
				var promisers []Claims
				for _, cl := range c.known {
					if cl.Promise == p {
						promisers = append(promisers, cl)
					}
				}
				if len(promisers) >= c.quorum {
					var best Claims
					for _, cl := range promisers {
						if best.Accepted.less(cl.Accepted) {
							best = cl
						}
					}
					value := best.Value
					if best.Accepted.IsZero() {
						value = c.participants()
					}
					own.Accepted, own.Value = p, slices.Clone(value)
				}
			}
		} else if prop, ok := c.known[p.Proposer]; ok && prop.Accepted == p && own.Accepted != p {
			// Acceptor: the proposer of the ballot we promised has
			// chosen its value; accept it.
			own.Accepted, own.Value = p, slices.Clone(prop.Value)
		}
	}
	c.known[c.us] = own
	return own.Promise != before.Promise || own.Accepted != before.Accepted
}

// participants lists every peer taking part, sorted.
func (c *consensus) participants() []identity.PeerName {
	ps := slices.Collect(maps.Keys(c.known))
	slices.Sort(ps)
	return ps
}

// chosen returns the value a quorum accepted under one ballot, if any.
func (c *consensus) chosen() ([]identity.PeerName, bool) {
	count := make(map[Ballot]int)
	for _, cl := range c.known {
		if cl.Accepted.IsZero() {
			continue
		}
		count[cl.Accepted]++
		if count[cl.Accepted] >= c.quorum {
			return slices.Clone(cl.Value), true
		}
	}
	return nil, false
}

// snapshot copies the claims for gossip.
func (c *consensus) snapshot() map[identity.PeerName]Claims {
	out := make(map[identity.PeerName]Claims, len(c.known))
	for p, cl := range c.known {
		out[p] = Claims{Promise: cl.Promise, Accepted: cl.Accepted, Value: slices.Clone(cl.Value)}
	}
	return out
}
