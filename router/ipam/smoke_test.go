package ipam

import (
	"net/netip"
	"testing"
	"time"

	"github.com/weavelab/weave/mesh/identity"
)

func TestSmokeThreePeers(t *testing.T) {
	rng := netip.MustParsePrefix("10.32.0.0/24")
	peers := map[identity.PeerName]*Core{}
	for i := 1; i <= 3; i++ {
		c, err := NewCore(CoreConfig{Us: identity.PeerName(i), Range: rng, Quorum: 2})
		if err != nil {
			t.Fatal(err)
		}
		peers[identity.PeerName(i)] = c
	}
	now := time.Unix(0, 0)
	deliver := func() {
		for round := 0; round < 50; round++ {
			any := false
			for src, c := range peers {
				for _, o := range c.Flush() {
					any = true
					for dst, d := range peers {
						if dst == src || (!o.Broadcast && o.To != dst) {
							continue
						}
						if _, err := d.OnMessage(src, o.Msg, !o.Broadcast); err != nil {
							t.Fatalf("%v -> %v: %v", src, dst, err)
						}
					}
				}
			}
			if !any {
				return
			}
		}
	}
	sub := Subnet(rng)
	if _, err := peers[1].Allocate("a", sub, now); err == nil {
		t.Fatal("allocated before consensus")
	}
	deliver()
	for n, c := range peers {
		if !c.Seeded() {
			t.Fatalf("peer %v not seeded: %+v", n, c.Status())
		}
	}
	got := map[netip.Addr]bool{}
	for i := 0; i < 200; i++ {
		p := identity.PeerName(i%3 + 1)
		var a netip.Prefix
		var err error
		for try := 0; try < 10; try++ {
			a, err = peers[p].Allocate("c"+string(rune('A'+i%26))+string(rune('0'+i/26)), sub, now)
			if err == nil {
				break
			}
			now = now.Add(3 * time.Second)
			deliver()
		}
		if err != nil {
			t.Fatalf("alloc %d on %v: %v", i, p, err)
		}
		if got[a.Addr()] {
			t.Fatalf("duplicate %v", a)
		}
		got[a.Addr()] = true
	}
	t.Logf("status 1: %+v", peers[1].Status())
}
