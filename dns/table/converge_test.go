package table

import (
	"fmt"
	"maps"
	"math/rand/v2"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"
)

// Property tests: however changes at several origins are interleaved, and
// in whatever order, with whatever repeats, routers receive them, every
// router ends with the same table, and that table holds exactly what each
// origin holds live.

var (
	simNames      = []string{"db.weave.local", "WEB.weave.local", "cache.weave.local", "x.other"}
	simAddrs      = []string{"10.32.0.1", "10.32.0.2", "10.32.0.3", "fd00::1"}
	simContainers = []string{"c1", "c2", ContainerExtern}
)

// simOrigin is one origin's table with a model of the keys it holds live.
type simOrigin struct {
	t        *Table
	live     map[Key]bool // the model
	saved    []Entry      // Own() as last persisted
	savedMod map[Key]bool // the model at that moment
}

// randomOp makes one random change at o and returns its delta.
func (o *simOrigin) randomOp(tb testing.TB, rng *rand.Rand, now time.Time) []Entry {
	tb.Helper()
	pick := func(s []string) string { return s[rng.IntN(len(s))] }
	self := o.t.Self()
	switch op := rng.IntN(10); {
	case op < 5: // add 1 or 2 addresses
		c, n := pick(simContainers), pick(simNames)
		addrs := []netip.Addr{ip(pick(simAddrs))}
		if rng.IntN(2) == 0 {
			addrs = append(addrs, ip(pick(simAddrs)))
		}
		delta, err := o.t.Add(c, n, addrs...)
		if err != nil {
			tb.Fatalf("Add: %v", err)
		}
		cn, _ := CanonicalName(n)
		for _, a := range addrs {
			o.live[Key{Origin: self, Container: c, Name: cn, Addr: a}] = true
		}
		return delta
	case op < 9: // remove by a random non-empty match
		var m Match
		for m.Container == "" && m.Name == "" && m.Addrs == nil {
			if rng.IntN(2) == 0 {
				m.Container = pick(simContainers)
			}
			if rng.IntN(2) == 0 {
				m.Name = pick(simNames)
			}
			if rng.IntN(3) == 0 {
				m.Addrs = []netip.Addr{ip(pick(simAddrs))}
			}
		}
		delta, err := o.t.Remove(now, m)
		if err != nil {
			tb.Fatalf("Remove(%+v): %v", m, err)
		}
		cn, _ := CanonicalName(m.Name)
		want := 0
		for k := range o.live {
			if (m.Container == "" || k.Container == m.Container) && (m.Name == "" || k.Name == cn) &&
				(m.Addrs == nil || k.Addr == m.Addrs[0]) {
				delete(o.live, k)
				want++
			}
		}
		if len(delta) != want {
			tb.Fatalf("Remove(%+v) tombstoned %d entries, model says %d", m, len(delta), want)
		}
		return delta
	default:
		c := pick(simContainers)
		maps.DeleteFunc(o.live, func(k Key, _ bool) bool { return k.Container == c })
		return o.t.RemoveContainer(now, c)
	}
}

// wire sends entries through the codec, as the replication layer does.
func wire(tb testing.TB, entries []Entry) []Entry {
	tb.Helper()
	out, err := Decode(Encode(entries), len(entries))
	if err != nil {
		tb.Fatalf("decode of an encoded message: %v\n%s", err, show(entries))
	}
	return out
}

// state renders a table for comparison; deletion times are left out: two
// runs of one origin can make one tombstone version at two times, and
// routers keep whichever copy they saw first (both say "deleted").
func state(t *Table) string {
	var b strings.Builder
	for _, e := range t.All() {
		fmt.Fprintf(&b, "%s %s %s %s v%d dead=%v\n", e.Name, e.Addr, e.Container, e.Origin, e.Version, e.Tombstone)
	}
	return b.String()
}

// checkAuthority fails unless every table holds live exactly the keys
// that the origins' models say.
func checkAuthority(tb testing.TB, tables []*Table, origins []*simOrigin) {
	tb.Helper()
	want := map[Key]bool{}
	for _, o := range origins {
		maps.Copy(want, o.live)
	}
	for _, t := range tables {
		got := map[Key]bool{}
		for _, e := range t.Live() {
			got[e.Key] = true
		}
		if !maps.Equal(got, want) {
			tb.Fatalf("%s holds live\n%s\nthe origins hold\n%v", t.Self(), show(t.Live()), slices.Collect(maps.Keys(want)))
		}
		checkIndexes(tb, t)
	}
}

func checkSame(tb testing.TB, tables []*Table) {
	tb.Helper()
	for _, t := range tables[1:] {
		if a, b := state(tables[0]), state(t); a != b {
			tb.Fatalf("tables differ:\n%s:\n%s%s:\n%s", tables[0].Self(), a, t.Self(), b)
		}
	}
}

// mergeConverges: origins make random changes; every message is then
// merged into each router (fresh observers and the origins themselves) in
// its own random order, each message one to three times, sometimes several
// messages as one batch.
func mergeConverges(tb testing.TB, seed uint64) {
	rng := rand.New(rand.NewPCG(seed, 0x5eed))
	now := t0
	origins := make([]*simOrigin, 3+rng.IntN(3))
	for i := range origins {
		origins[i] = &simOrigin{t: newTable(tb, i+1), live: map[Key]bool{}}
	}
	var msgs [][]Entry
	for range 10 + rng.IntN(60) {
		now = now.Add(time.Second)
		if d := origins[rng.IntN(len(origins))].randomOp(tb, rng, now); d != nil {
			msgs = append(msgs, d)
		}
	}
	tables := []*Table{newTable(tb, 10), newTable(tb, 11), newTable(tb, 12)}
	for _, o := range origins {
		tables = append(tables, o.t)
	}
	for _, t := range tables {
		var order []int
		for i := range msgs {
			for range 1 + rng.IntN(3) {
				order = append(order, i)
			}
		}
		rng.Shuffle(len(order), func(i, j int) { order[i], order[j] = order[j], order[i] })
		for len(order) > 0 {
			n := min(len(order), 1+rng.IntN(3))
			// One message never lists a key twice: keep the winner.
			var batch []Entry
			at := map[Key]int{}
			for _, i := range order[:n] {
				for _, e := range msgs[i] {
					if j, ok := at[e.Key]; !ok {
						at[e.Key] = len(batch)
						batch = append(batch, e)
					} else if e.beats(&batch[j]) {
						batch[j] = e
					}
				}
			}
			order = order[n:]
			mustMerge(tb, t, now, wire(tb, batch)...)
		}
	}
	checkSame(tb, tables)
	checkAuthority(tb, tables, origins)
}

func TestMergeConverges(t *testing.T) {
	for seed := range uint64(300) {
		t.Run(fmt.Sprint(seed), func(t *testing.T) { mergeConverges(t, seed) })
	}
}

// FuzzMergeConverges lets the fuzzer pick the interleavings.
func FuzzMergeConverges(f *testing.F) {
	for seed := range uint64(4) {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, seed uint64) { mergeConverges(t, seed) })
}

// gossipConverges: a stepped simulation of routers that are all origins.
// Each step makes a change, delivers a queued message (sometimes keeping
// it to deliver again), exchanges full state between two routers,
// persists a router's own entries, or restarts a router: with no state,
// with state persisted some steps ago, or with its latest state. Every
// delta is queued to every other router. Once the steps are done, queues
// are drained and full state exchanged until nothing changes.
func gossipConverges(tb testing.TB, seed uint64) {
	rng := rand.New(rand.NewPCG(seed, 0x9055))
	now := t0
	peers := make([]*simOrigin, 3+rng.IntN(3))
	inbox := make([][][]Entry, len(peers))
	broadcast := func(from int, d []Entry) {
		if len(d) == 0 {
			return
		}
		for i := range peers {
			if i != from {
				inbox[i] = append(inbox[i], d)
			}
		}
	}
	for i := range peers {
		peers[i] = &simOrigin{t: newTable(tb, i+1), live: map[Key]bool{}, savedMod: map[Key]bool{}}
	}
	deliver := func(i int, keep bool) {
		j := rng.IntN(len(inbox[i]))
		msg := inbox[i][j]
		if !keep {
			inbox[i] = slices.Delete(inbox[i], j, j+1)
		}
		broadcast(i, mustMerge(tb, peers[i].t, now, wire(tb, msg)...))
	}
	exchange := func(from, to int) bool {
		d := mustMerge(tb, peers[to].t, now, wire(tb, peers[from].t.All())...)
		broadcast(to, d)
		return len(d) > 0
	}
	for range 50 + rng.IntN(150) {
		now = now.Add(time.Second)
		i := rng.IntN(len(peers))
		p := peers[i]
		switch op := rng.IntN(20); {
		case op < 8:
			broadcast(i, p.randomOp(tb, rng, now))
		case op < 14:
			if len(inbox[i]) > 0 {
				deliver(i, rng.IntN(5) == 0)
			}
		case op < 16:
			exchange(rng.IntN(len(peers)), i)
		case op < 18:
			p.saved, p.savedMod = p.t.Own(), maps.Clone(p.live)
		default: // restart
			fresh := newTable(tb, i+1)
			switch rng.IntN(3) {
			case 0: // state dir lost
				p.live = map[Key]bool{}
			case 1: // state persisted some steps ago
				if err := fresh.LoadOwn(wire(tb, p.saved)); err != nil {
					tb.Fatalf("LoadOwn: %v", err)
				}
				p.live = maps.Clone(p.savedMod)
			default: // up-to-date state
				if err := fresh.LoadOwn(wire(tb, p.t.Own())); err != nil {
					tb.Fatalf("LoadOwn: %v", err)
				}
			}
			p.t = fresh
			inbox[i] = nil // messages in flight to the old run are lost
			broadcast(i, p.t.Own())
		}
	}
	tables := make([]*Table, len(peers))
	for i, p := range peers {
		tables[i] = p.t
	}
	for round := 0; ; round++ {
		if round == 20 {
			tb.Fatalf("no convergence after %d rounds of full state exchange", round)
		}
		for i := range peers {
			for len(inbox[i]) > 0 {
				deliver(i, false)
			}
		}
		changed := false
		for from := range peers {
			for to := range peers {
				if from != to && exchange(from, to) {
					changed = true
				}
			}
		}
		quiet := !changed
		for i := range inbox {
			quiet = quiet && len(inbox[i]) == 0
		}
		if quiet {
			break
		}
	}
	checkSame(tb, tables)
	checkAuthority(tb, tables, peers)
}

func TestGossipConvergesAcrossRestarts(t *testing.T) {
	for seed := range uint64(300) {
		t.Run(fmt.Sprint(seed), func(t *testing.T) { gossipConverges(t, seed) })
	}
}

// FuzzGossipConverges lets the fuzzer pick the interleavings.
func FuzzGossipConverges(f *testing.F) {
	for seed := range uint64(4) {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, seed uint64) { gossipConverges(t, seed) })
}
