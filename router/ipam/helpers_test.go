package ipam

import (
	"net/netip"
	"slices"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/weavelab/weave/mesh/identity"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var t0 = time.Unix(1_000_000, 0)

// newTestCore returns a Core for peer us over range rng.
func newTestCore(tb testing.TB, us identity.PeerName, rng string, quorum int) *Core {
	tb.Helper()
	c, err := NewCore(CoreConfig{Us: us, Range: netip.MustParsePrefix(rng), Quorum: quorum})
	if err != nil {
		tb.Fatal(err)
	}
	return c
}

// coreNet connects Cores directly: deliver hands every queued message to
// its destination at once, in order, until none is left. Peers listed in
// cut neither send nor receive.
type coreNet struct {
	tb    testing.TB
	cores map[identity.PeerName]*Core
	names []identity.PeerName
	cut   map[identity.PeerName]bool
	// sent counts the messages delivered, by kind.
	sent map[string]int
}

func newCoreNet(tb testing.TB, rng string, quorum int, names ...identity.PeerName) *coreNet {
	tb.Helper()
	n := &coreNet{tb: tb, cores: make(map[identity.PeerName]*Core), cut: make(map[identity.PeerName]bool), sent: make(map[string]int)}
	for _, name := range names {
		n.add(name, CoreConfig{Us: name, Range: netip.MustParsePrefix(rng), Quorum: quorum})
	}
	return n
}

func (n *coreNet) add(name identity.PeerName, cfg CoreConfig) *Core {
	n.tb.Helper()
	cfg.Reachable = func(p identity.PeerName) bool { _, ok := n.cores[p]; return ok && !n.cut[p] && !n.cut[name] }
	c, err := NewCore(cfg)
	if err != nil {
		n.tb.Fatal(err)
	}
	n.cores[name] = c
	n.names = append(n.names, name)
	slices.Sort(n.names)
	return c
}

// deliver runs the network until no message is left, failing on any
// error.
func (n *coreNet) deliver() {
	n.tb.Helper()
	for round := 0; ; round++ {
		if round > 1000 {
			n.tb.Fatal("messages never stop")
		}
		any := false
		for _, src := range n.names {
			for _, o := range n.cores[src].Flush() {
				any = true
				if n.cut[src] {
					continue
				}
				for _, dst := range n.names {
					if dst == src || n.cut[dst] || (!o.Broadcast && o.To != dst) {
						continue
					}
					n.sent[kindOf(o)]++
					if _, err := n.cores[dst].OnMessage(src, o.Msg, !o.Broadcast); err != nil {
						n.tb.Fatalf("%s -> %s: %v", src, dst, err)
					}
				}
			}
		}
		if !any {
			return
		}
	}
}

// gossipAll exchanges every pair's whole state, then delivers.
func (n *coreNet) gossipAll() {
	n.tb.Helper()
	for _, a := range n.names {
		for _, b := range n.names {
			if a != b && !n.cut[a] && !n.cut[b] {
				if _, err := n.cores[b].OnMessage(a, n.cores[a].Gossip(), false); err != nil {
					n.tb.Fatalf("gossip %s -> %s: %v", a, b, err)
				}
			}
		}
	}
	n.deliver()
}

func kindOf(o Outgoing) string {
	if o.Broadcast {
		return "broadcast"
	}
	m, err := decode(o.Msg)
	switch {
	case err != nil:
		return "invalid"
	case m.Ask != nil:
		return "ask"
	case m.Heir:
		return "heir"
	case m.Ack:
		return "ack"
	}
	return "reply"
}

// seed has the first core allocate, which starts the consensus, and
// delivers until every core is seeded.
func (n *coreNet) seed() {
	n.tb.Helper()
	if _, err := n.cores[n.names[0]].Allocate("seed-trigger", Subnet(n.cores[n.names[0]].cfg.Range), t0); err == nil {
		n.tb.Fatal("allocated before the ring was seeded")
	}
	n.deliver()
	for _, name := range n.names {
		if !n.cut[name] && !n.cores[name].Seeded() {
			n.tb.Fatalf("%s not seeded: %+v", name, n.cores[name].Status())
		}
	}
	n.cores[n.names[0]].Release("seed-trigger")
	n.deliver()
}

// sameRings fails unless every (uncut) core has the same ring.
func (n *coreNet) sameRings() {
	n.tb.Helper()
	var first *Ring
	for _, name := range n.names {
		if n.cut[name] {
			continue
		}
		r := n.cores[name].Ring()
		if first == nil {
			first = r
			continue
		}
		if !slices.Equal(r.Seeds, first.Seeds) || !slices.Equal(r.Entries, first.Entries) {
			n.tb.Fatalf("rings differ:\n %s: %s\n %s: %s", n.names[0], ringString(first), name, ringString(r))
		}
	}
}

func pfx(s string) netip.Prefix { return netip.MustParsePrefix(s) }

func sub(s string) Subnet { return Subnet(netip.MustParsePrefix(s)) }
