package ipam

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/weavelab/weave/mesh/identity"
)

// seededCore is a lone Core (quorum 1) with its ring seeded.
func seededCore(tb testing.TB, rng string) *Core {
	tb.Helper()
	c := newTestCore(tb, 1, rng, 1)
	if _, err := c.Allocate("trigger", Subnet(pfx(rng)), t0); !errors.Is(err, errWait) {
		tb.Fatalf("first Allocate = %v, want errWait", err)
	}
	if !c.Seeded() {
		tb.Fatal("not seeded")
	}
	c.Flush()
	return c
}

func mustAllocate(tb testing.TB, c *Core, id string, s string) netip.Prefix {
	tb.Helper()
	p, err := c.Allocate(id, sub(s), t0)
	if err != nil {
		tb.Fatalf("Allocate(%s, %s) on %s: %v", id, s, c.cfg.Us, err)
	}
	return p
}

func TestAllocateLowestFree(t *testing.T) {
	c := seededCore(t, "10.32.0.0/24")
	for i, want := range []string{"10.32.0.1/24", "10.32.0.2/24", "10.32.0.3/24"} {
		if got := mustAllocate(t, c, fmt.Sprint("c", i), "10.32.0.0/24"); got != pfx(want) {
			t.Errorf("allocation %d = %s, want %s", i, got, want)
		}
	}
	if freed := c.Release("c1"); !slices.Equal(freed, []netip.Addr{netip.MustParseAddr("10.32.0.2")}) {
		t.Fatalf("Release = %v", freed)
	}
	if got := mustAllocate(t, c, "c9", "10.32.0.0/24"); got != pfx("10.32.0.2/24") {
		t.Errorf("after a release got %s, want the freed 10.32.0.2", got)
	}
	// A subnet's addresses come from it, with its prefix length.
	if got := mustAllocate(t, c, "s", "10.32.0.64/26"); got != pfx("10.32.0.65/26") {
		t.Errorf("in 10.32.0.64/26 got %s", got)
	}
}

func TestAllocateIdempotent(t *testing.T) {
	c := seededCore(t, "10.32.0.0/24")
	a := mustAllocate(t, c, "x", "10.32.0.0/24")
	if b := mustAllocate(t, c, "x", "10.32.0.0/24"); b != a {
		t.Errorf("second Allocate for x = %s, first %s", b, a)
	}
	other := mustAllocate(t, c, "x", "10.32.0.128/25")
	if other == a || !pfx("10.32.0.128/25").Contains(other.Addr()) {
		t.Errorf("x in another subnet got %s", other)
	}
	// A claimed address in the same subnet does not change the answer,
	// however the map is ordered.
	if err := c.Claim("x", pfx("10.32.0.200/24"), t0); err != nil {
		t.Fatal(err)
	}
	if err := c.Claim("x", pfx("10.32.0.0/24"), t0); err != nil { // the network address, statically
		t.Fatal(err)
	}
	for range 20 {
		if b := mustAllocate(t, c, "x", "10.32.0.0/24"); b != pfx("10.32.0.0/24") {
			t.Fatalf("with several addresses Allocate answers %s, want the lowest", b)
		}
	}
	if got := len(c.Lookup("x")); got != 4 {
		t.Errorf("Lookup(x) = %d addresses, want 4", got)
	}
}

func TestAllocateNeverNetworkOrBroadcast(t *testing.T) {
	for _, tt := range []struct {
		subnet string
		want   []string
	}{
		{"10.32.0.4/30", []string{"10.32.0.5", "10.32.0.6"}},
		{"10.32.0.0/29", []string{"10.32.0.1", "10.32.0.2", "10.32.0.3", "10.32.0.4", "10.32.0.5", "10.32.0.6"}},
		{"10.32.0.248/29", []string{"10.32.0.249", "10.32.0.250", "10.32.0.251", "10.32.0.252", "10.32.0.253", "10.32.0.254"}},
	} {
		t.Run(tt.subnet, func(t *testing.T) {
			c := seededCore(t, "10.32.0.0/24")
			var got []string
			for i := 0; ; i++ {
				p, err := c.Allocate(fmt.Sprint("c", i), sub(tt.subnet), t0)
				if errors.Is(err, ErrFull) {
					break
				}
				if err != nil || i > 10 {
					t.Fatalf("Allocate %d: %s, %v", i, p, err)
				}
				got = append(got, p.Addr().String())
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("handed out %v, want %v", got, tt.want)
			}
		})
	}
	// The whole range as the subnet: 254 addresses, not .0 nor .255.
	c := seededCore(t, "10.32.0.0/24")
	n := 0
	for ; ; n++ {
		p, err := c.Allocate(fmt.Sprint("c", n), sub("10.32.0.0/24"), t0)
		if errors.Is(err, ErrFull) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if a := p.Addr().As4(); a[3] == 0 || a[3] == 255 {
			t.Fatalf("handed out %s", p)
		}
	}
	if n != 254 {
		t.Errorf("%d addresses handed out of a /24, want 254", n)
	}
	if e := c.Ring().Entries[0]; e.Free != 0 {
		t.Errorf("full peer advertises %d free (the range's network and broadcast addresses are not free)", e.Free)
	}
}

func TestClaim(t *testing.T) {
	n := newCoreNet(t, "10.32.0.0/24", 2, 1, 2)
	c1 := n.cores[1]
	if err := c1.Claim("s", pfx("10.32.0.5/24"), t0); !errors.Is(err, errWait) {
		t.Fatalf("Claim before the ring = %v, want errWait", err)
	}
	n.deliver()
	n.gossipAll()
	if !n.cores[2].Seeded() {
		t.Fatal("peer 2 not seeded")
	}
	// 1 owns 10.32.0.0-127, 2 owns 128-255.
	tests := []struct {
		name string
		id   string
		addr string
		err  error
	}{
		{"in our space", "s", "10.32.0.5/24", nil},
		{"again, same container", "s", "10.32.0.5/24", nil},
		{"in use by another container", "t", "10.32.0.5/24", ErrInUse},
		{"owned by another peer", "t", "10.32.0.200/24", ErrOwnedElsewhere},
		{"outside the range: not IPAM's", "t", "192.168.1.1/24", nil},
		{"a host route", "u", "10.32.0.9/32", nil},
	}
	for _, tt := range tests {
		err := c1.Claim(tt.id, pfx(tt.addr), t0)
		if tt.err == nil && err != nil || tt.err != nil && !errors.Is(err, tt.err) {
			t.Errorf("%s: Claim(%s, %s) = %v, want %v", tt.name, tt.id, tt.addr, err, tt.err)
		}
	}
	if err := c1.Claim("t", pfx("10.32.0.5/24"), t0); err == nil || !strings.Contains(err.Error(), "by s") {
		t.Errorf("in-use error does not name the holder: %v", err)
	}
	if err := c1.Claim("t", pfx("10.32.0.200/24"), t0); err == nil || !strings.Contains(err.Error(), identity.PeerName(2).String()) {
		t.Errorf("owned-elsewhere error does not name the owner: %v", err)
	}
	if got := c1.Lookup("s"); len(got) != 1 || got[0].Prefix() != pfx("10.32.0.5/24") {
		t.Errorf("Lookup(s) = %v", got)
	}
	if got := c1.Lookup("t"); len(got) != 0 {
		t.Errorf("failed claims recorded %v", got)
	}
	// A claimed address is not handed out again.
	for i := range 10 {
		if p := mustAllocate(t, c1, fmt.Sprint("a", i), "10.32.0.0/24"); p.Addr() == netip.MustParseAddr("10.32.0.5") {
			t.Fatal("claimed address allocated")
		}
	}
}

func TestHoldAndGrace(t *testing.T) {
	c := seededCore(t, "10.32.0.0/24")
	a := mustAllocate(t, c, "dead", "10.32.0.0/24")
	mustAllocate(t, c, "live", "10.32.0.0/24")
	until := t0.Add(30 * time.Second)
	if n := c.Hold("dead", until); n != 1 {
		t.Fatalf("Hold = %d", n)
	}
	if n := c.Hold("dead", until.Add(time.Hour)); n != 0 {
		t.Errorf("holding again marked %d (the first deadline stands)", n)
	}
	if st := c.Status(); st.Allocated != 1 || st.Held != 1 {
		t.Errorf("status %+v", st)
	}
	if freed := c.Tick(until.Add(-time.Millisecond)); len(freed) != 0 {
		t.Fatalf("freed before the grace ended: %v", freed)
	}
	if p := mustAllocate(t, c, "other", "10.32.0.0/24"); p == a {
		t.Fatal("a held address went to another container")
	}
	// The container comes back within the grace: same address, no
	// longer held.
	if p := mustAllocate(t, c, "dead", "10.32.0.0/24"); p != a {
		t.Fatalf("back within the grace got %s, want %s", p, a)
	}
	if freed := c.Tick(until.Add(time.Hour)); len(freed) != 0 {
		t.Fatalf("an address taken back was freed: %v", freed)
	}

	// It dies again and stays dead past the grace.
	c.Hold("dead", until)
	freed := c.Tick(until)
	if len(freed) != 1 || freed[0].ID != "dead" || freed[0].Prefix() != a {
		t.Fatalf("Tick after the grace freed %v", freed)
	}
	if len(c.Lookup("dead")) != 0 {
		t.Error("still allocated after the grace")
	}
	if p := mustAllocate(t, c, "new", "10.32.0.0/24"); p != a {
		t.Errorf("freed address not reused: got %s, want %s", p, a)
	}

	// Claim within the grace takes a held address back too.
	c.Hold("new", until.Add(time.Hour))
	if err := c.Claim("new", a, until); err != nil {
		t.Fatal(err)
	}
	if freed := c.Tick(until.Add(2 * time.Hour)); len(freed) != 0 {
		t.Errorf("claimed back, yet freed: %v", freed)
	}
}

// TestAskForSpace: peer 1 fills its half; its next allocation asks peer 2,
// which hands over the upper half of its largest free run.
func TestAskForSpace(t *testing.T) {
	n := newCoreNet(t, "10.32.0.0/24", 2, 1, 2)
	n.seed()
	n.gossipAll()
	c1, c2 := n.cores[1], n.cores[2]
	// Peer 2 uses 10.32.0.128-135 and 10.32.0.200: its largest free run is
	// 10.32.0.136-199 (64 addresses) and half of it is 10.32.0.168-199.
	for i := range 8 {
		mustAllocate(t, c2, fmt.Sprint("p2-", i), "10.32.0.128/25")
	}
	if err := c2.Claim("p2-x", pfx("10.32.0.200/24"), t0); err != nil {
		t.Fatal(err)
	}
	n.deliver()
	for i := range 127 {
		mustAllocate(t, c1, fmt.Sprint("p1-", i), "10.32.0.0/24") // .1 to .127
	}
	n.deliver()
	_, err := c1.Allocate("more", sub("10.32.0.0/24"), t0)
	if !errors.Is(err, errWait) {
		t.Fatalf("Allocate on a full peer = %v, want errWait", err)
	}
	out := c1.Flush()
	if len(out) != 1 || out[0].Broadcast || out[0].To != 2 || kindOf(out[0]) != "ask" {
		t.Fatalf("expected one ask to peer 2, got %v", out)
	}
	// Asking again at once does not send another ask.
	if _, err := c1.Allocate("more", sub("10.32.0.0/24"), t0.Add(askInterval/2)); !errors.Is(err, errWait) {
		t.Fatal(err)
	}
	if out := c1.Flush(); len(out) != 0 {
		t.Errorf("asked again within askInterval: %d messages", len(out))
	}
	if _, err := c2.OnMessage(1, out[0].Msg, true); err != nil {
		t.Fatal(err)
	}
	n.deliver()
	want := Range{Start: mustAddr("10.32.0.168"), End: uint64(mustAddr("10.32.0.200"))}
	if got := c1.Ring().Owned(1); !slices.Contains(got, want) {
		t.Fatalf("peer 1 owns %v, want %s among them", got, want)
	}
	if p := mustAllocate(t, c1, "more", "10.32.0.0/24"); p != pfx("10.32.0.168/24") {
		t.Errorf("allocated %s in the donated space, want 10.32.0.168", p)
	}
	n.deliver()
	n.sameRings()
}

// TestAskForSpaceInFullSubnet: when nobody has a free address in a
// subnet, though they have elsewhere, the asker hears so and reports
// ErrFull instead of asking forever.
func TestAskForSpaceInFullSubnet(t *testing.T) {
	n := newCoreNet(t, "10.32.0.0/24", 2, 1, 2)
	n.seed()
	n.gossipAll()
	c1, c2 := n.cores[1], n.cores[2]
	for i := range 6 {
		mustAllocate(t, c1, fmt.Sprint("c", i), "10.32.0.8/29") // all of 10.32.0.9-14
	}
	n.deliver()
	now := t0
	var err error
	for try := 0; try < 5; try++ {
		if _, err = c2.Allocate("x", sub("10.32.0.8/29"), now); !errors.Is(err, errWait) {
			break
		}
		n.deliver()
		now = now.Add(askInterval)
	}
	if !errors.Is(err, ErrFull) {
		t.Fatalf("Allocate in a full subnet = %v, want ErrFull", err)
	}
	if got := c1.Ring().Owned(2); len(got) != 1 || got[0].Start != mustAddr("10.32.0.128") {
		t.Errorf("peer 1 gave away space it cannot use for the subnet: peer 2 owns %v", got)
	}
	// Once peer 1 frees one there, peer 2 asks again and gets it.
	c1.Release("c3")
	n.deliver()
	p, err := c2.Allocate("x", sub("10.32.0.8/29"), now)
	for try := 0; errors.Is(err, errWait) && try < 5; try++ {
		n.deliver()
		now = now.Add(askInterval)
		p, err = c2.Allocate("x", sub("10.32.0.8/29"), now)
	}
	if err != nil || p != pfx("10.32.0.12/29") {
		t.Fatalf("after a release in the subnet: %s, %v", p, err)
	}
}

func TestFullRange(t *testing.T) {
	n := newCoreNet(t, "10.32.0.0/28", 3, 1, 2, 3)
	n.seed()
	n.gossipAll()
	now := t0
	got := map[netip.Addr]bool{}
	full := 0
	for i := 0; full < 3 && i < 200; i++ {
		p := n.names[i%3]
		a, err := n.cores[p].Allocate(fmt.Sprint("c", i), sub("10.32.0.0/28"), now)
		switch {
		case err == nil:
			if got[a.Addr()] {
				t.Fatalf("%s handed out twice", a)
			}
			got[a.Addr()] = true
			full = 0
		case errors.Is(err, ErrFull):
			full++
		case !errors.Is(err, errWait):
			t.Fatal(err)
		}
		n.deliver()
		now = now.Add(askInterval)
	}
	if len(got) != 14 {
		t.Errorf("%d addresses handed out of a /28, want 14", len(got))
	}
	for _, p := range n.names {
		if _, err := n.cores[p].Allocate("late", sub("10.32.0.0/28"), now); !errors.Is(err, ErrFull) {
			t.Errorf("%s: Allocate on a full range = %v, want ErrFull", p, err)
		}
	}
}

func TestAskUnreachable(t *testing.T) {
	n := newCoreNet(t, "10.32.0.0/24", 2, 1, 2)
	n.seed()
	n.gossipAll()
	for i := range 127 {
		mustAllocate(t, n.cores[1], fmt.Sprint("c", i), "10.32.0.0/24")
	}
	n.cut[2] = true
	_, err := n.cores[1].Allocate("x", sub("10.32.0.0/24"), t0)
	if !errors.Is(err, errWait) || !strings.Contains(err.Error(), "unreachable") {
		t.Errorf("with the only donor unreachable: %v", err)
	}
}

// TestAskFromUnreachable: an ask that arrives after its sender became
// unreachable (it may have died) gets no space, which would be lost.
func TestAskFromUnreachable(t *testing.T) {
	n := newCoreNet(t, "10.32.0.0/24", 2, 1, 2)
	n.seed()
	n.gossipAll()
	for i := range 127 {
		mustAllocate(t, n.cores[1], fmt.Sprint("c", i), "10.32.0.0/24")
	}
	n.deliver()
	if _, err := n.cores[1].Allocate("more", sub("10.32.0.0/24"), t0); !errors.Is(err, errWait) {
		t.Fatal(err)
	}
	out := n.cores[1].Flush()
	n.cut[1] = true
	if changed, err := n.cores[2].OnMessage(1, out[0].Msg, true); err != nil || changed {
		t.Fatalf("ask from an unreachable peer: %v, %v", changed, err)
	}
	if sh := n.cores[2].Ring().Shares(); sh[1].Size != 128 {
		t.Errorf("space given to an unreachable peer: %+v", sh)
	}
}

func TestLeave(t *testing.T) {
	n := newCoreNet(t, "10.32.0.0/24", 3, 1, 2, 3)
	n.seed()
	mustAllocate(t, n.cores[1], "a", "10.32.0.0/24")
	n.deliver()
	owned := n.cores[1].Ring().Shares()[1].Size
	if got := n.cores[1].Leave(3); got != owned {
		t.Errorf("Leave handed over %d addresses, owns %d", got, owned)
	}
	if len(n.cores[1].Allocs()) != 0 {
		t.Error("allocations kept after Leave")
	}
	if n.cores[1].HeirAcked(3) {
		t.Error("acked before anything was sent")
	}
	n.deliver()
	if !n.cores[1].HeirAcked(3) || n.cores[1].HeirAcked(2) {
		t.Error("heir did not ack")
	}
	if n.sent["heir"] != 1 || n.sent["ack"] != 1 {
		t.Errorf("messages %v", n.sent)
	}
	n.sameRings()
	sh := n.cores[2].Ring().Shares()
	if sh[1].Size != 0 || sh[3].Size+sh[2].Size != 256 {
		t.Errorf("shares after leave %+v", sh)
	}
	// The heir advertises the free space it got.
	if sh[3].Free == 0 {
		t.Error("heir advertises no free space")
	}
}

// TestLeaveResent: the hand-over to the heir is lost; Tick sends it again
// until the heir acknowledges, then stops.
func TestLeaveResent(t *testing.T) {
	n := newCoreNet(t, "10.32.0.0/24", 2, 1, 2)
	n.seed()
	c := n.cores[1]
	c.Leave(2)
	c.Flush() // lost
	now := t0
	c.Tick(now)
	if out := c.Flush(); len(out) != 0 {
		t.Fatalf("resent at once: %v", out)
	}
	now = now.Add(askInterval)
	c.Tick(now)
	out := c.Flush()
	if len(out) != 1 || out[0].To != 2 || kindOf(out[0]) != "heir" {
		t.Fatalf("after askInterval sent %v", out)
	}
	if _, err := n.cores[2].OnMessage(1, out[0].Msg, true); err != nil {
		t.Fatal(err)
	}
	n.deliver()
	if !c.HeirAcked(2) {
		t.Fatal("not acked")
	}
	now = now.Add(10 * askInterval)
	c.Tick(now)
	if out := c.Flush(); len(out) != 0 {
		t.Errorf("sent after the ack: %v", out)
	}
	n.sameRings()
}

func TestRmPeer(t *testing.T) {
	n := newCoreNet(t, "10.32.0.0/24", 3, 1, 2, 3)
	n.seed()
	if _, err := n.cores[1].RmPeer(1); err == nil {
		t.Error("removed ourselves")
	}
	dead := n.cores[3].Ring().Shares()[3].Size
	n.cut[3] = true
	got, err := n.cores[1].RmPeer(3)
	if err != nil || got != dead {
		t.Fatalf("RmPeer = %d, %v; want %d", got, err, dead)
	}
	n.deliver()
	n.sameRings()
	if sh := n.cores[2].Ring().Shares(); sh[3].Size != 0 || sh[1].Size+sh[2].Size != 256 {
		t.Errorf("shares after rmpeer %+v", sh)
	}
	// The removed peer, back with its old state, is refused.
	_, err = n.cores[3].OnMessage(1, n.cores[1].Gossip(), false)
	if !errors.Is(err, ErrIncompatible) {
		t.Errorf("removed peer merging = %v, want ErrIncompatible", err)
	}
}

// TestRmPeerStaleView shows why rmpeer needs more than a dead peer: the
// peer that runs it must also have heard the dead peer's last changes.
// Peer 3 gives space to peer 1, which peer 2 does not hear of; 3 dies; 2
// runs rmpeer 3 and takes that space too. Both own it (both may hand out
// its addresses) until they meet, when each refuses the other's ring:
// peer 2 because a token appears inside its space, peer 1 because the
// merge would be contradictory.
func TestRmPeerStaleView(t *testing.T) {
	n := newCoreNet(t, "10.32.0.0/24", 3, 1, 2, 3)
	n.seed()
	n.gossipAll()
	for i := range 84 {
		mustAllocate(t, n.cores[1], fmt.Sprint("c", i), "10.32.0.0/24") // fills 1's third
	}
	n.deliver()
	n.cut[2] = true
	if _, err := n.cores[1].Allocate("more", sub("10.32.0.0/24"), t0); !errors.Is(err, errWait) {
		t.Fatal(err)
	}
	n.deliver() // 3 gives 1 half of its space; 2 hears nothing
	p := mustAllocate(t, n.cores[1], "more", "10.32.0.0/24")
	n.cut[3] = true // dies
	delete(n.cut, 2)
	if _, err := n.cores[2].RmPeer(3); err != nil {
		t.Fatal(err)
	}
	o1, _ := n.cores[1].Ring().Owner(AddrFrom(p.Addr()))
	o2, _ := n.cores[2].Ring().Owner(AddrFrom(p.Addr()))
	if o1 != 1 || o2 != 2 {
		t.Fatalf("owners of %s: %s for peer 1, %s for peer 2", p, o1, o2)
	}
	if _, err := n.cores[1].OnMessage(2, n.cores[2].Gossip(), false); !errors.Is(err, ErrIncompatible) {
		t.Errorf("peer 1 merging the stale reclaim: %v", err)
	}
	if _, err := n.cores[2].OnMessage(1, n.cores[1].Gossip(), false); !errors.Is(err, ErrIncompatible) {
		t.Errorf("peer 2 merging peer 1's ring: %v", err)
	}
}

func TestOnMessageRefuses(t *testing.T) {
	c := seededCore(t, "10.32.0.0/24")
	other := seededCore(t, "10.32.1.0/24")
	before := c.Ring()
	for _, tt := range []struct {
		name string
		msg  []byte
		err  error
	}{
		{"another range", other.Gossip(), ErrIncompatible},
		{"seeded apart", newTestCoreSeeded(t, 7, "10.32.0.0/24").Gossip(), ErrIncompatible},
		{"not JSON", []byte("\x00garbage"), ErrInvalid},
		{"no ring", []byte(`{"claims":{}}`), ErrInvalid},
		{"too big", make([]byte, maxMessage+1), ErrInvalid},
		{"bad ask subnet", []byte(`{"ring":{"range":{"Start":169869312,"End":169869568},"seeds":null,"entries":null},"ask":{"subnet":"fd00::/64"}}`), ErrInvalid},
	} {
		t.Run(tt.name, func(t *testing.T) {
			changed, err := c.OnMessage(2, tt.msg, true)
			if !errors.Is(err, tt.err) || changed {
				t.Errorf("OnMessage = %v, %v; want %v", changed, err, tt.err)
			}
			if !sameRing(c.Ring(), before) {
				t.Error("ring changed")
			}
		})
	}
}

func newTestCoreSeeded(tb testing.TB, us identity.PeerName, rng string) *Core {
	tb.Helper()
	c := newTestCore(tb, us, rng, 1)
	c.Allocate("x", sub(rng), t0)
	c.Flush()
	return c
}

// TestNoRelayStorm: a change is broadcast by the peer that made it only;
// the others merge it without broadcasting it again.
func TestNoRelayStorm(t *testing.T) {
	names := []identity.PeerName{1, 2, 3, 4, 5, 6, 7, 8}
	n := newCoreNet(t, "10.32.0.0/24", 5, names...)
	n.seed()
	clear(n.sent)
	mustAllocate(t, n.cores[4], "a", "10.32.0.0/24")
	n.deliver()
	if got, want := n.sent["broadcast"], len(names)-1; got != want {
		t.Errorf("one allocation caused %d deliveries, want %d", got, want)
	}
	n.sameRings()
}

// TestRestartLostChange: a peer restarts from a state saved before its
// last change went out (the Allocator may publish a merge's result before
// it is saved). Peers that saw the change must not make it refuse them.
func TestRestartLostChange(t *testing.T) {
	for _, tt := range []struct {
		name      string
		afterLoad func(c *Core) // what the restarted peer does before hearing from peer 2
	}{
		// Its entry is a version behind peer 2's.
		{"behind", func(c *Core) {}},
		// It changes its entry again: two contents of one version.
		{"collision", func(c *Core) { c.Release("kept") }},
	} {
		t.Run(tt.name, func(t *testing.T) {
			n := newCoreNet(t, "10.32.0.0/24", 2, 1, 2)
			n.seed()
			mustAllocate(t, n.cores[1], "kept", "10.32.0.0/24")
			n.deliver()
			saved := n.cores[1].snapshot()
			mustAllocate(t, n.cores[1], "lost", "10.32.0.0/24")
			n.deliver() // peer 2 has the newer version of peer 1's entry

			c, err := NewCore(n.cores[1].cfg)
			if err != nil {
				t.Fatal(err)
			}
			if err := c.restore(saved); err != nil {
				t.Fatal(err)
			}
			n.cores[1] = c
			tt.afterLoad(c)
			if _, err := c.OnMessage(2, n.cores[2].Gossip(), false); err != nil {
				t.Fatalf("restarted peer merging peer 2's ring: %v", err)
			}
			n.deliver()
			n.sameRings()
			want := uint32(127 - len(c.allocs))
			if e := n.cores[2].Ring().Entries[0]; e.Peer != 1 || e.Free != want {
				t.Errorf("peer 2 sees %+v, want peer 1 with %d free", e, want)
			}
		})
	}
}

func TestStatus(t *testing.T) {
	n := newCoreNet(t, "10.32.0.0/24", 2, 1, 2)
	c := n.cores[1]
	if st := c.Status(); st.State != "idle" || st.Quorum != 2 || len(st.Peers) != 0 {
		t.Errorf("fresh status %+v", st)
	}
	c.Allocate("a", sub("10.32.0.0/24"), t0)
	if st := c.Status(); st.State != "awaiting consensus" || !slices.Equal(st.Participants, []identity.PeerName{1}) {
		t.Errorf("status while proposing %+v", st)
	}
	n.deliver()
	mustAllocate(t, c, "a", "10.32.0.0/24")
	c.Hold("a", t0.Add(time.Minute))
	mustAllocate(t, c, "b", "10.32.0.0/24")
	n.deliver()
	st := c.Status()
	if st.State != "ready" || st.Range != pfx("10.32.0.0/24") || st.Allocated != 1 || st.Held != 1 || !slices.Equal(st.Seeds, []identity.PeerName{1, 2}) {
		t.Errorf("status %+v", st)
	}
	want := []PeerShare{{Peer: 1, Size: 128, Free: 125, Reachable: true, Us: true}, {Peer: 2, Size: 128, Free: 127, Reachable: true}}
	if !slices.Equal(st.Peers, want) {
		t.Errorf("peers %+v, want %+v", st.Peers, want)
	}
	n.cut[2] = true
	if st := c.Status(); st.Peers[1].Reachable {
		t.Error("cut peer reachable")
	}
}
