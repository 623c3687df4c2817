package mesh

import (
	"math/rand/v2"
	"syscall"
	"testing"
	"time"

	"github.com/weavelab/weave/mesh/clock/clocktest"
	"github.com/weavelab/weave/mesh/topology"
)

// scaleResult is what one run of the scale scenario measured. Bytes are
// topology gossip payload bytes (envelopes, without session framing),
// counted when sent, lost messages included.
type scaleResult struct {
	N        int
	TopoB    int           // the full topology, encoded as one update
	ColdB    uint64        // sent by all peers during the cold start
	ColdVirt time.Duration // cold start to convergence, virtual
	ColdCPU  time.Duration // CPU time of the cold start (all cores)
	QuietBps float64       // per peer per virtual second, converged and quiet
	Join     changeCost
	Leave    changeCost
	LinkLost changeCost
}

// changeCost is the cost of one change in a converged mesh: what was sent
// per live peer, and the encoded size of the entries that changed.
type changeCost struct {
	BPerPeer float64
	EntryB   int
	Virt     time.Duration
}

func (c changeCost) ratio() float64 { return c.BPerPeer / float64(c.EntryB) }

// runScale runs the scenario on a random sparse graph of n peers (about 2
// links per peer, as randomSparse makes): cold start, a quiet spell, a
// join, a leave and a lost link, each to convergence, checking routes
// against shortest paths from every peer (or, when routeSample > 0, that
// many random ones).
func runScale(tb testing.TB, n int, seed uint64, routeSample int) scaleResult {
	tb.Helper()
	res := scaleResult{N: n}
	s := newVsim(tb, defaultVsimConfig(seed))
	rng := rand.New(rand.NewPCG(seed, 99))
	_, dials := randomSparse(n, 1, rng)

	cpu0 := cpuTime()
	s.startGraph(n, dials)
	res.ColdVirt = s.mustConverge(time.Hour, "cold start")
	res.ColdCPU = cpuTime() - cpu0
	res.ColdB = s.stats.Bytes
	res.TopoB = len(topology.EncodeUpdate(s.peers[0].g.topo.Peers()))
	checkVsimRoutes(tb, s, sampleSources(s, routeSample, rng))

	before := s.stats
	const quiet = 10 * time.Minute
	s.clk.Advance(quiet)
	res.QuietBps = float64(s.stats.sub(before).Bytes) / float64(n) / quiet.Seconds()

	res.Join = s.measureChange(tb, "join", func() {
		j := len(s.peers)
		s.start(j)
		s.link(j, rng.IntN(j))
		s.link(j, rng.IntN(j))
	})
	res.Leave = s.measureChange(tb, "leave", func() {
		s.kill(s.connectedVictim(rng))
	})
	res.LinkLost = s.measureChange(tb, "link lost", func() {
		a, b := s.redundantLink(rng)
		s.unlink(a, b)
	})
	checkVsimRoutes(tb, s, sampleSources(s, routeSample, rng))
	return res
}

// measureChange applies change to a converged mesh and runs it to
// convergence again.
func (s *vsim) measureChange(tb testing.TB, what string, change func()) changeCost {
	tb.Helper()
	old := s.peers[0].g.topo.Summary()
	before := s.stats
	change()
	virt := s.mustConverge(time.Hour, what)
	sent := s.stats.sub(before).Bytes
	// The entries that changed, as peer 0 now holds them.
	var changed []topology.Peer
	for _, p := range s.peers[0].g.topo.Peers() {
		if st, ok := old[p.Name]; !ok || st != topology.StampOf(&p) {
			changed = append(changed, p)
		}
	}
	return changeCost{
		BPerPeer: float64(sent) / float64(len(s.alive())),
		EntryB:   len(topology.EncodeUpdate(changed)),
		Virt:     virt,
	}
}

// connectedVictim picks a live peer whose death leaves the rest connected.
func (s *vsim) connectedVictim(rng *rand.Rand) int {
	for {
		v := s.alive()[rng.IntN(len(s.alive()))].i
		if s.connectedWithout(func(i, j int) bool { return i == v || j == v }, v) {
			return v
		}
	}
}

// redundantLink picks a link whose loss leaves the mesh connected.
func (s *vsim) redundantLink(rng *rand.Rand) (int, int) {
	for {
		p := s.alive()[rng.IntN(len(s.alive()))]
		if len(p.links) == 0 {
			continue
		}
		ks := sortedKeys(p.links)
		q := ks[rng.IntN(len(ks))]
		if s.connectedWithout(func(i, j int) bool { return i == p.i && j == q || i == q && j == p.i }, -1) {
			return p.i, q
		}
	}
}

// connectedWithout reports whether the live peers other than skip stay
// connected without the links cut reports.
func (s *vsim) connectedWithout(cut func(i, j int) bool, skip int) bool {
	adj := s.adjacency()
	var start = -1
	count := 0
	for _, p := range s.alive() {
		if p.i != skip {
			count++
			if start < 0 {
				start = p.i
			}
		}
	}
	seen := map[int]bool{start: true}
	q := []int{start}
	for len(q) > 0 {
		u := q[0]
		q = q[1:]
		for _, v := range adj[u] {
			if v != skip && !seen[v] && !cut(u, v) {
				seen[v] = true
				q = append(q, v)
			}
		}
	}
	return len(seen) == count
}

// sampleSources returns k random live peers, or all when k <= 0.
func sampleSources(s *vsim, k int, rng *rand.Rand) []*vpeer {
	all := s.alive()
	if k <= 0 || k >= len(all) {
		return all
	}
	rng.Shuffle(len(all), func(i, j int) { all[i], all[j] = all[j], all[i] })
	return all[:k]
}

// cpuTime returns the CPU time (user and system) the process has used.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func logScale(tb testing.TB, r scaleResult) {
	tb.Helper()
	tb.Logf("%d peers: topology %d B; cold start %.0f B/peer (%.2fx) in %s virtual, %.2fs CPU; quiet %.2f B/peer/s",
		r.N, r.TopoB, float64(r.ColdB)/float64(r.N), float64(r.ColdB)/float64(r.N)/float64(r.TopoB),
		r.ColdVirt.Round(time.Millisecond), r.ColdCPU.Seconds(), r.QuietBps)
	for _, c := range []struct {
		what string
		c    changeCost
	}{{"join", r.Join}, {"leave", r.Leave}, {"link lost", r.LinkLost}} {
		tb.Logf("  %s: %.0f B/peer for %d B of changed entries (%.2fx) in %s virtual",
			c.what, c.c.BPerPeer, c.c.EntryB, c.c.ratio(), c.c.Virt.Round(time.Millisecond))
	}
}

func clocktestEpoch() time.Time { return clocktest.Epoch }

// scaleN is the size of the meshes the default test run simulates (kept
// small so that go test ./mesh/ stays fast); the
// benchmarks run 1,000 and 5,000.
func scaleN() int {
	if testing.Short() {
		return 100
	}
	return 200
}

// TestGossipCost holds the costs of topology gossip to the bounds
// on a random sparse mesh: a cold start sends at most 3x the full topology
// per peer; a join, a leave and a lost link each at most 4x the entries
// they change, per peer; a quiet mesh under 1 byte per peer per second.
func TestGossipCost(t *testing.T) {
	r := runScale(t, scaleN(), 1, 0)
	logScale(t, r)
	checkScaleBounds(t, r)
}

func checkScaleBounds(tb testing.TB, r scaleResult) {
	tb.Helper()
	if x := float64(r.ColdB) / float64(r.N) / float64(r.TopoB); x > 3 {
		tb.Errorf("cold start sent %.2fx the topology per peer, want <= 3x", x)
	}
	for _, c := range []struct {
		what string
		c    changeCost
	}{{"join", r.Join}, {"leave", r.Leave}, {"link lost", r.LinkLost}} {
		if c.c.ratio() > 4 {
			tb.Errorf("%s sent %.2fx the changed entries per peer, want <= 4x", c.what, c.c.ratio())
		}
	}
	if r.QuietBps > 1 {
		tb.Errorf("quiet mesh sends %.2f B/peer/s, want < 1", r.QuietBps)
	}
}

// TestGossipLoss: with 5% of gossip messages lost, the mesh still
// converges and every peer's routes are shortest paths.
func TestGossipLoss(t *testing.T) {
	n := scaleN()
	cfg := defaultVsimConfig(7)
	cfg.Loss = 0.05
	s := newVsim(t, cfg)
	_, dials := randomSparse(n, 1, rand.New(rand.NewPCG(7, 1)))
	s.startGraph(n, dials)
	d := s.mustConverge(time.Hour, "cold start with 5% loss")
	t.Logf("%d peers, 5%% loss: converged in %s virtual, %d of %d messages lost", n, d, s.stats.Lost, s.stats.Msgs)
	if s.stats.Lost == 0 {
		t.Fatal("nothing was lost")
	}
	checkVsimRoutes(t, s, s.alive())
	// A change under loss too.
	rng := rand.New(rand.NewPCG(7, 2))
	a, b := s.redundantLink(rng)
	s.unlink(a, b)
	s.mustConverge(time.Hour, "link lost with 5% loss")
	checkVsimRoutes(t, s, s.alive())
}

// churn runs the churn scenario on n peers: converge; 2% of the peers die
// for good, 10% die and restart a little later with new UIDs (their
// neighbours dial them again); converge again.
func churn(tb testing.TB, n int, cfg vsimConfig) *vsim {
	tb.Helper()
	s := newVsim(tb, cfg)
	rng := rand.New(rand.NewPCG(cfg.Seed, 3))
	_, dials := randomSparse(n, 1, rng)
	s.startGraph(n, dials)
	s.mustConverge(time.Hour, "cold start")
	for range n / 50 {
		s.kill(s.connectedVictim(rng))
	}
	var restart []int
	for _, i := range rng.Perm(n) {
		if len(restart) < n/10 && s.peers[i].alive {
			restart = append(restart, i)
		}
	}
	links := make(map[int][]int)
	for _, i := range restart {
		links[i] = sortedKeys(s.peers[i].links)
		s.kill(i)
	}
	s.clk.Advance(5 * time.Second)
	for _, i := range restart {
		s.start(i)
		for _, j := range links[i] {
			if s.peers[j].alive {
				s.link(j, i)
			}
		}
	}
	s.mustConverge(time.Hour, "churn")
	return s
}

// TestGossipChurn: after 10% of the peers restart with new UIDs and 2% die,
// every peer holds exactly the live peers' current entries (no old run's,
// no dead peer's) and routes by shortest paths.
func TestGossipChurn(t *testing.T) {
	s := churn(t, scaleN(), defaultVsimConfig(11))
	for _, p := range s.alive() {
		for _, q := range s.peers {
			if q.alive {
				continue
			}
			if _, ok := p.g.topo.Get(q.peer.Name); ok {
				t.Fatalf("peer %d still holds dead peer %d", p.i, q.i)
			}
		}
	}
	checkVsimRoutes(t, s, s.alive())
}

// TestGossipPartition: the mesh splits in two for a (virtual) minute; each
// side drops the other's peers, and once healed all converge again.
func TestGossipPartition(t *testing.T) {
	n := scaleN()
	s := newVsim(t, defaultVsimConfig(13))
	rng := rand.New(rand.NewPCG(13, 1))
	_, dials := randomSparse(n, 1, rng)
	s.startGraph(n, dials)
	s.mustConverge(time.Hour, "cold start")
	var cut [][2]int
	for _, p := range s.alive() {
		for _, j := range sortedKeys(p.links) {
			if p.i < j && (p.i < n/2) != (j < n/2) {
				cut = append(cut, [2]int{p.i, j})
			}
		}
	}
	for _, c := range cut {
		s.unlink(c[0], c[1])
	}
	s.mustConverge(time.Minute, "partition")
	for _, p := range s.alive() {
		if p.g.topo.Len() > n/2+1 && p.i < n/2 || p.g.topo.Len() > n-n/2 {
			t.Fatalf("peer %d holds %d entries while partitioned", p.i, p.g.topo.Len())
		}
	}
	s.clk.Advance(time.Minute)
	for _, c := range cut {
		s.link(c[0], c[1])
	}
	d := s.mustConverge(time.Hour, "healed partition")
	t.Logf("%d links cut for a minute; healed in %s virtual", len(cut), d)
	if p := s.peers[0]; p.g.topo.Len() != n {
		t.Fatalf("peer 0 holds %d entries after healing, want %d", p.g.topo.Len(), n)
	}
	checkVsimRoutes(t, s, s.alive())
}

// TestGossipDeterministic: the same seed gives the same run, message for
// message, twice in a row (with loss and churn, where any map-order or
// wall-clock dependence would show).
func TestGossipDeterministic(t *testing.T) {
	run := func() (vsimStats, time.Duration) {
		cfg := defaultVsimConfig(42)
		cfg.Loss = 0.05
		s := churn(t, 150, cfg)
		return s.stats, s.clk.Now().Sub(clocktestEpoch())
	}
	s1, d1 := run()
	s2, d2 := run()
	if s1 != s2 || d1 != d2 {
		t.Fatalf("same seed, different runs:\n%+v after %s\n%+v after %s", s1, d1, s2, d2)
	}
	t.Logf("%d messages, %d bytes, %d lost, %s virtual, twice", s1.Msgs, s1.Bytes, s1.Lost, d1)
	cfg := defaultVsimConfig(43)
	cfg.Loss = 0.05
	if s3 := churn(t, 150, cfg).stats; s3 == s1 {
		t.Error("another seed gave the very same run")
	}
}

// TestGossipSigned runs the simulation with signed topologies (as the
// router has): every merged entry's signature is checked.
func TestGossipSigned(t *testing.T) {
	cfg := defaultVsimConfig(5)
	cfg.Signed = true
	s := newVsim(t, cfg)
	_, dials := randomSparse(50, 1, rand.New(rand.NewPCG(5, 1)))
	s.startGraph(50, dials)
	s.mustConverge(time.Hour, "signed cold start")
	checkVsimRoutes(t, s, s.alive())
}
