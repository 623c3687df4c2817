package ipam

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/weavelab/weave/mesh/identity"
)

func TestConsensusQuorumOneSeedsAlone(t *testing.T) {
	c := newTestCore(t, 5, "10.32.0.0/24", 1)
	if st := c.Status(); st.State != "idle" {
		t.Errorf("state before any request %q", st.State)
	}
	if _, err := c.Allocate("a", sub("10.32.0.0/24"), t0); err == nil {
		t.Fatal("allocated with no ring")
	}
	if !c.Seeded() {
		t.Fatalf("quorum 1 did not seed at once: %+v", c.Status())
	}
	if r := c.Ring(); !slices.Equal(r.Seeds, []identity.PeerName{5}) || len(r.Entries) != 1 || r.Entries[0].Peer != 5 {
		t.Errorf("ring %s seeds %v", ringString(r), r.Seeds)
	}
	if p, err := c.Allocate("a", sub("10.32.0.0/24"), t0); err != nil || p != pfx("10.32.0.1/24") {
		t.Errorf("Allocate after seeding = %s, %v", p, err)
	}
	if st := c.Status(); st.State != "ready" || st.Allocated != 1 {
		t.Errorf("status %+v", st)
	}
}

// TestConsensusCompetingProposers has two of three peers propose at once,
// under each order of delivery, and checks that all agree on one ring.
func TestConsensusCompetingProposers(t *testing.T) {
	for _, order := range [][]identity.PeerName{{1, 3}, {3, 1}} {
		t.Run(fmt.Sprint(order), func(t *testing.T) {
			n := newCoreNet(t, "10.32.0.0/24", 2, 1, 2, 3)
			for _, p := range order {
				if _, err := n.cores[p].Allocate("x", sub("10.32.0.0/24"), t0); err == nil {
					t.Fatal("allocated before consensus")
				}
			}
			n.deliver()
			for _, p := range n.names {
				if !n.cores[p].Seeded() {
					t.Fatalf("%s not seeded: %+v", p, n.cores[p].Status())
				}
			}
			n.sameRings()
			if seeds := n.cores[2].Ring().Seeds; len(seeds) < 2 {
				t.Errorf("seeds %v: fewer than a quorum", seeds)
			}
		})
	}
}

// TestConsensusStaleProposer: a value chosen by peers 1 and 2 stays
// chosen when peer 3, which missed it, proposes with a higher ballot.
func TestConsensusStaleProposer(t *testing.T) {
	c := map[identity.PeerName]*consensus{1: newConsensus(1, 2), 2: newConsensus(2, 2), 3: newConsensus(3, 2)}
	send := func(from, to identity.PeerName) { c[to].merge(c[from].snapshot(), false) }

	c[1].propose() // ballot (1, peer 1)
	send(1, 2)     // 2 promises
	send(2, 1)     // 1 has a quorum: chooses {1, 2}, accepts
	send(1, 2)     // 2 accepts
	send(2, 1)
	want := []identity.PeerName{1, 2}
	for _, p := range []identity.PeerName{1, 2} {
		if v, ok := c[p].chosen(); !ok || !slices.Equal(v, want) {
			t.Fatalf("peer %s: chosen %v, %v", p, v, ok)
		}
	}

	// Peer 3 saw nothing; it proposes twice (its first ballot lost) and
	// then hears from peer 2 only.
	c[3].propose()
	c[3].propose()
	if b := c[3].known[3].Promise; b.Round != 2 || b.Proposer != 3 {
		t.Fatalf("peer 3 ballot %+v", b)
	}
	send(3, 2) // 2 promises (2, peer 3), telling what it accepted
	send(2, 3) // 3 has a quorum: must choose what 2 accepted
	if own := c[3].known[3]; own.Accepted.Round != 2 || !slices.Equal(own.Value, want) {
		t.Fatalf("stale proposer accepted %+v, want value %v", own, want)
	}
	send(3, 2)
	send(2, 1)
	send(1, 3)
	for p, cs := range c {
		if v, ok := cs.chosen(); !ok || !slices.Equal(v, want) {
			t.Errorf("peer %s: chosen %v, %v; want %v", p, v, ok, want)
		}
	}
}

func TestConsensusObserverNeverTakesPart(t *testing.T) {
	n := newCoreNet(t, "10.32.0.0/24", 2, 1, 2)
	obs := n.add(9, CoreConfig{Us: 9, Range: pfx("10.32.0.0/24"), Quorum: 1, Observer: true})
	if _, err := obs.Allocate("o", sub("10.32.0.0/24"), t0); err == nil {
		t.Fatal("observer allocated with no ring")
	}
	if obs.cons.active() || len(obs.Flush()) != 0 {
		t.Fatal("an observer proposed")
	}
	if st := obs.Status(); st.State != "observer" {
		t.Errorf("observer state %q", st.State)
	}
	n.seed()
	if obs.cons.active() {
		t.Error("the observer joined the consensus")
	}
	for _, p := range n.names {
		if seeds := n.cores[p].Ring().Seeds; slices.Contains(seeds, 9) || !slices.Equal(seeds, []identity.PeerName{1, 2}) {
			t.Errorf("%s: seeds %v", p, seeds)
		}
	}
	// With a ring, the observer gets space by asking.
	p, err := obs.Allocate("o", sub("10.32.0.0/24"), t0)
	if err == nil {
		t.Fatalf("observer allocated %s from space it does not own", p)
	}
	n.deliver()
	if p, err = obs.Allocate("o", sub("10.32.0.0/24"), t0); err != nil {
		t.Fatalf("observer after asking: %v", err)
	}
	if owner, _ := obs.Ring().Owner(AddrFrom(p.Addr())); owner != 9 {
		t.Errorf("observer allocated %s owned by %s", p, owner)
	}
}

// TestConsensusRetriesAfterLoss: the proposal is lost; Tick proposes again
// after proposeInterval, and the ring is seeded.
func TestConsensusRetriesAfterLoss(t *testing.T) {
	n := newCoreNet(t, "10.32.0.0/24", 2, 1, 2)
	if _, err := n.cores[1].Allocate("a", sub("10.32.0.0/24"), t0); err == nil {
		t.Fatal("allocated before consensus")
	}
	n.cores[1].Flush() // lost
	n.cores[1].Tick(t0.Add(proposeInterval / 2))
	n.deliver()
	if n.cores[2].cons.active() {
		t.Fatal("retried before proposeInterval")
	}
	n.cores[1].Tick(t0.Add(proposeInterval))
	n.deliver()
	if !n.cores[1].Seeded() || !n.cores[2].Seeded() {
		t.Fatalf("not seeded after the retry: %+v %+v", n.cores[1].Status(), n.cores[2].Status())
	}
	n.sameRings()
}

// TestConsensusSafetyRandom runs many random interleavings of proposals
// and lossy, duplicated, reordered gossip among 3 to 7 acceptors with
// majority quorums, and checks Paxos' promise: no two peers, nor one peer
// at two times, ever see different values chosen.
func TestConsensusSafetyRandom(t *testing.T) {
	runs := 300
	if testing.Short() || raceEnabled {
		runs = 100
	}
	decidedRuns := 0
	for seed := range uint64(runs) {
		r := rand.New(rand.NewPCG(seed, 99))
		n := 3 + r.IntN(5)
		cs := make([]*consensus, n)
		for i := range cs {
			cs[i] = newConsensus(identity.PeerName(i+1), n/2+1+r.IntN(2)*r.IntN(n-n/2))
		}
		type msg struct {
			to    int
			state map[identity.PeerName]Claims
		}
		var inflight []msg
		var decided []identity.PeerName
		check := func() {
			for i, c := range cs {
				v, ok := c.chosen()
				if !ok {
					continue
				}
				if decided == nil {
					decided = v
				} else if !slices.Equal(v, decided) {
					t.Fatalf("seed %d: peer %d sees %v chosen, earlier %v", seed, i+1, v, decided)
				}
			}
		}
		for step := 0; step < 600; step++ {
			switch k := r.IntN(40); {
			case k < 1:
				cs[r.IntN(n)].propose()
			case k < 16:
				from := r.IntN(n)
				if !cs[from].active() {
					continue
				}
				for to := range cs {
					if to != from && r.IntN(3) > 0 { // some lost
						inflight = append(inflight, msg{to, cs[from].snapshot()})
					}
				}
			default:
				if len(inflight) == 0 {
					continue
				}
				i := r.IntN(len(inflight)) // reordered
				m := inflight[i]
				if r.IntN(4) > 0 { // else duplicated: stays in flight
					inflight = slices.Delete(inflight, i, i+1)
				}
				cs[m.to].merge(m.state, false)
			}
			check()
		}
		if decided != nil {
			decidedRuns++
		}
	}
	// Safety holds vacuously when nothing is decided: most runs must.
	if decidedRuns < runs/3 {
		t.Errorf("only %d of %d runs decided", decidedRuns, runs)
	}
	t.Logf("%d of %d runs decided", decidedRuns, runs)
}

// TestCoreSeedingUnderDelay: the Core's own retry timer copes with a
// proposer whose messages all vanish for a while.
func TestCoreSeedingUnderDelay(t *testing.T) {
	n := newCoreNet(t, "10.32.0.0/24", 2, 1, 2, 3)
	n.cut[1] = true
	now := t0
	n.cores[1].Allocate("a", sub("10.32.0.0/24"), now)
	n.deliver()
	delete(n.cut, 1)
	for i := 0; i < 3 && !n.cores[3].Seeded(); i++ {
		now = now.Add(proposeInterval + time.Second)
		for _, p := range n.names {
			n.cores[p].Tick(now)
		}
		n.deliver()
	}
	if !n.cores[3].Seeded() {
		t.Fatalf("not seeded: %+v", n.cores[3].Status())
	}
	n.sameRings()
}
