package ipam

import (
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"sync"
	"testing"
	"time"
)

var long = flag.Bool("long", false, "run the simulation with many more seeds (or set IPAM_SIM_SEEDS)")

// simSize returns how many seeds TestSimulation runs, how many steps
// each, and the most peers: 200 short runs by default (100 under the race
// detector, 30 with -short), 2000 long ones with -long, or
// IPAM_SIM_SEEDS, IPAM_SIM_STEPS and IPAM_SIM_PEERS.
func simSize(tb testing.TB) (seeds, steps, peers int) {
	seeds, steps, peers = 200, 80, 7
	switch {
	case *long:
		seeds, steps, peers = 2000, 600, 12
	case testing.Short():
		seeds = 30
	case raceEnabled:
		seeds = 100
	}
	if v := os.Getenv("IPAM_SIM_SEEDS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil {
			tb.Fatalf("IPAM_SIM_SEEDS: %v", err)
		}
		seeds = n
	}
	if v := os.Getenv("IPAM_SIM_STEPS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil {
			tb.Fatalf("IPAM_SIM_STEPS: %v", err)
		}
		steps = n
	}
	if v := os.Getenv("IPAM_SIM_PEERS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 3 {
			tb.Fatalf("IPAM_SIM_PEERS: want a number >= 3")
		}
		peers = n
	}
	return seeds, steps, peers
}

// TestSimulation is the property test of the allocator's merge: random
// allocate, claim, release, hold, restart, leave and rmpeer on many
// simulated peers, with random delays, duplicated, reordered and lost
// messages and partitions, never yield a duplicate address or an
// allocation outside its peer's space, and all peers converge on one ring
// that hands out the whole range. Each seed is a parallel subtest;
// IPAM_SIM_SEED=n (or -run 'TestSimulation/seed=n$') replays one, or
// starts at n with IPAM_SIM_SEEDS.
// IPAM_SIM_LAX_RMPEER=1 lets rmpeer run on peers that have not heard the
// dead peer's last changes (see TestRmPeerStaleView): runs then fail.
func TestSimulation(t *testing.T) {
	seeds, steps, peers := simSize(t)
	first := uint64(1)
	if v := os.Getenv("IPAM_SIM_SEED"); v != "" {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			t.Fatalf("IPAM_SIM_SEED: %v", err)
		}
		first = n
		if os.Getenv("IPAM_SIM_SEEDS") == "" {
			seeds = 1
		}
	}
	start := time.Now()
	var mu sync.Mutex
	var total simStats
	t.Cleanup(func() {
		t.Logf("%d seeds of %d steps (up to %d peers) in %s: %+v", seeds, steps, peers, time.Since(start).Round(time.Millisecond), total)
		// Many runs must have gone through every path, or the property
		// holds of less than it claims.
		if seeds >= 100 && !t.Failed() {
			for what, n := range map[string]int{
				"rmpeer": total.Removed, "restart": total.Restarts, "acknowledged leave": total.LeavesAcked,
				"partition": total.Parts, "grace expiry": total.Expired, "space transfer": total.Transfer,
				"ErrFull": total.Full, "refusal to give space": total.Refused, "claim": total.Claimed,
			} {
				if n == 0 {
					t.Errorf("no %s in %d runs", what, seeds)
				}
			}
		}
	})
	for seed := first; seed < first+uint64(seeds); seed++ {
		t.Run(fmt.Sprintf("seed=%d", seed), func(t *testing.T) {
			t.Parallel()
			stats := runSeed(t, seed, peers, steps, os.Getenv("IPAM_SIM_LAX_RMPEER") != "")
			mu.Lock()
			total.add(stats)
			mu.Unlock()
		})
	}
}

func runSeed(t *testing.T, seed uint64, peers, steps int, lax bool) simStats {
	t.Helper()
	src := rand.NewPCG(seed, 0x1b5a)
	cfg := randomSimConfig(rand.New(rand.NewPCG(seed, 0xc0f1)), peers, steps)
	cfg.LaxRmpeer = lax
	s := newSim(t, strconv.FormatUint(seed, 10), src, cfg)
	s.run()
	return s.stats
}

// FuzzSimulation lets the fuzzer steer the simulation: its bytes are the
// random numbers (configuration first, then every decision).
func FuzzSimulation(f *testing.F) {
	for _, seed := range []string{"", "\x00", "\x07\x03\x01\xff\x10\x20\x30\x40", "partition and rmpeer, please: a longer seed"} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		src := newByteSource(b)
		cfg := randomSimConfig(rand.New(src), 8, 150)
		s := newSim(t, "fuzz input", src, cfg)
		s.run()
	})
}
