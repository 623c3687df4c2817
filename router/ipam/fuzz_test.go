package ipam

import (
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"testing"
	"time"
)

var writeCorpus = flag.Bool("write-corpus", false, "rewrite the seed corpus in testdata/fuzz")

// fuzzCores builds the Cores each fuzz input is fed to: one taking part in
// a consensus not yet decided, one with a seeded ring and allocations
// (some held), and an observer with no ring.
func fuzzCores(tb testing.TB, seeded persisted) []*Core {
	tb.Helper()
	rng := pfx("10.32.0.0/24")
	proposer, err := NewCore(CoreConfig{Us: 1, Range: rng, Quorum: 3})
	if err != nil {
		tb.Fatal(err)
	}
	proposer.Allocate("x", Subnet(rng), t0)
	owner, err := NewCore(CoreConfig{Us: 1, Range: rng, Quorum: 2})
	if err != nil {
		tb.Fatal(err)
	}
	if err := owner.restore(seeded); err != nil {
		tb.Fatal(err)
	}
	observer, err := NewCore(CoreConfig{Us: 1, Range: rng, Quorum: 2, Observer: true})
	if err != nil {
		tb.Fatal(err)
	}
	return []*Core{proposer, owner, observer}
}

// fuzzSeededState is a seeded ring among peers 1, 2 and 3 in which peer 1
// has allocations.
func fuzzSeededState(tb testing.TB) persisted {
	tb.Helper()
	n := newCoreNet(tb, "10.32.0.0/24", 3, 1, 2, 3)
	n.seed()
	for i := range 5 {
		mustAllocate(tb, n.cores[1], fmt.Sprint("c", i), "10.32.0.0/24")
	}
	n.cores[1].Hold("c2", t0.Add(time.Minute))
	n.deliver()
	return n.cores[1].snapshot()
}

// FuzzOnMessage feeds arbitrary bytes to OnMessage: it must never panic,
// must change nothing when it returns an error, and must leave a valid
// ring, allocations in our own space, and messages of ours that decode.
func FuzzOnMessage(f *testing.F) {
	seeded := fuzzSeededState(f)
	f.Add([]byte(`{"ring":{"range":{"Start":169869312,"End":169869568},"seeds":null,"entries":null}}`), false)
	f.Fuzz(func(t *testing.T, b []byte, unicast bool) {
		// The fuzzer does not report an input that hangs (its rate just
		// drops to 0/sec): crash instead, which it reports with the input.
		hang := time.AfterFunc(10*time.Second, func() { panic(fmt.Sprintf("OnMessage hangs on %q (unicast %v)", b, unicast)) })
		defer hang.Stop()
		for _, c := range fuzzCores(t, seeded) {
			c.Flush()
			before := c.Ring()
			allocs := c.Allocs()
			changed, err := c.OnMessage(2, b, unicast)
			if err != nil {
				if changed || !sameRing(c.Ring(), before) || !slices.EqualFunc(c.Allocs(), allocs, sameAlloc) {
					t.Fatalf("OnMessage failed (%v) but changed the state", err)
				}
			}
			checkFuzzedCore(t, c)
			// The Core still works.
			c.Allocate("after", Subnet(c.cfg.Range), t0.Add(time.Second))
			c.Claim("static", pfx("10.32.0.7/24"), t0.Add(time.Second))
			c.Release("c1")
			c.Tick(t0.Add(time.Hour))
			c.Status()
			checkFuzzedCore(t, c)
		}
	})
}

func checkFuzzedCore(t *testing.T, c *Core) {
	t.Helper()
	if err := c.ring.validate(); err != nil {
		t.Fatalf("ring invalid: %v", err)
	}
	for a, al := range c.allocs {
		if owner, ok := c.ring.Owner(a); !ok || owner != c.cfg.Us {
			t.Fatalf("allocation %s of %s in space of %s", al.Addr, al.ID, owner)
		}
	}
	for _, o := range c.Flush() {
		if _, err := decode(o.Msg); err != nil {
			t.Fatalf("we would send an invalid message: %v\n%s", err, o.Msg)
		}
	}
	if _, err := decode(c.Gossip()); err != nil {
		t.Fatalf("our gossip is invalid: %v", err)
	}
}

// corpusKinds names the messages the seed corpus holds, by what they
// carry.
func corpusKind(b []byte) string {
	m, err := decode(b)
	switch {
	case err != nil:
		return ""
	case m.Ask != nil:
		return "ask"
	case m.Refuse != nil:
		return "refuse"
	case m.Heir:
		return "heir"
	case m.Ack:
		return "ack"
	case len(m.Claims) > 0:
		for _, cl := range m.Claims {
			if !cl.Accepted.IsZero() {
				return "claims-accepted"
			}
		}
		return "claims"
	case m.Ring.Seeded():
		for _, e := range m.Ring.Entries {
			if e.Version > reclaimBump {
				return "ring-rmpeer"
			}
		}
		if len(m.Ring.Entries) > 20 {
			return "ring-large"
		}
		return "ring"
	}
	return "ring-unseeded"
}

// corpusFromSimulation runs the simulator until it has seen every kind of
// message, keeping two of each (the first, and one from later on).
func corpusFromSimulation(t *testing.T) map[string][]string {
	kinds := []string{"ask", "refuse", "heir", "ack", "claims", "claims-accepted", "ring", "ring-large", "ring-rmpeer", "ring-unseeded"}
	out := make(map[string][]string)
	for seed := uint64(1); seed < 200; seed++ {
		cfg := randomSimConfig(rand.New(rand.NewPCG(seed, 0xc0f1)), 10, 300)
		s := newSim(t, strconv.FormatUint(seed, 10), rand.NewPCG(seed, 0x1b5a), cfg)
		seen := make(map[string]int)
		s.onSend = func(msg []byte, unicast bool) {
			k := corpusKind(msg)
			seen[k]++
			if len(out[k]) == 0 || (len(out[k]) == 1 && seen[k] == 50) {
				out[k] = append(out[k], fmt.Sprintf("[]byte(%s)\nbool(%v)", strconv.Quote(string(msg)), unicast))
			}
		}
		s.run()
		done := true
		for _, k := range kinds {
			done = done && len(out[k]) > 0
		}
		if done {
			return out
		}
	}
	var missing []string
	for _, k := range kinds {
		if len(out[k]) == 0 {
			missing = append(missing, k)
		}
	}
	t.Fatalf("no simulation sent messages of kinds %v", missing)
	return nil
}

// TestWriteFuzzCorpus regenerates testdata/fuzz/FuzzOnMessage with
// -write-corpus (messages the simulator sends, of every kind); otherwise
// it checks that the corpus exists.
func TestWriteFuzzCorpus(t *testing.T) {
	dir := filepath.Join("testdata", "fuzz", "FuzzOnMessage")
	if !*writeCorpus {
		files, err := os.ReadDir(dir)
		if err != nil || len(files) < 10 {
			t.Errorf("no seed corpus in %s (run go test -run TestWriteFuzzCorpus -write-corpus): %v", dir, err)
		}
		return
	}
	corpus := corpusFromSimulation(t)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for kind, entries := range corpus {
		if kind == "" {
			continue
		}
		for i, e := range entries {
			data := "go test fuzz v1\n" + e + "\n"
			if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("%s-%d", kind, i)), []byte(data), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
}
