package replicate_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/weavelab/weave/dns/replicate"
	"github.com/weavelab/weave/mesh"
	"github.com/weavelab/weave/mesh/handshake"
	"github.com/weavelab/weave/mesh/identity"
	"github.com/weavelab/weave/mesh/meshtest"
)

// TestOverMesh runs Replicators on real mesh routers with a password, in a
// line 0 — 1 — 2 where 0 and 2 have no connection: broadcasts and a push/
// pull of a 1 MiB state cross two encrypted hops on the "dns" channel.
func TestOverMesh(t *testing.T) {
	network := meshtest.NewNetwork()
	psk := handshake.DeriveKey([]byte("weave test password"), nil)
	routers := make([]*mesh.Router, 3)
	for i := range routers {
		host := network.Host(fmt.Sprintf("10.0.0.%d", i+1))
		cfg := mesh.DefaultConfig()
		cfg.Key = meshtest.Key(i)
		cfg.Peer = identity.Peer{Name: meshPeer(i), NickName: fmt.Sprintf("r%d", i), UID: identity.UID(100 + i)}
		cfg.Transport = host
		cfg.PSK = psk
		cfg.NoDiscovery = true
		cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
		cfg.HeartbeatInterval = 50 * time.Millisecond
		cfg.DeadAfter = 100
		cfg.BackoffBase = 10 * time.Millisecond
		cfg.BackoffMax = 200 * time.Millisecond
		cfg.GossipInterval = 100 * time.Millisecond
		r, err := mesh.New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		if err := r.Start(context.Background()); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { r.Close() })
		routers[i] = r
	}
	for i := 1; i < 3; i++ {
		if err := routers[i].Connect([]string{fmt.Sprintf("10.0.0.%d:%d", i, mesh.DefaultPort)}, false); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, 20*time.Second, "a route from 0 to 2", func() bool {
		hops, ok := routers[0].Routes().Distance(meshPeer(2))
		_, back := routers[2].Routes().Distance(meshPeer(0))
		return ok && back && hops == 2
	})

	// Peer 2 starts with a big state, so the join's push/pull moves a 1 MiB
	// stream across both hops.
	states := make([]*setState, 3)
	reps := make([]*replicate.Replicator, 3)
	for i := range reps {
		states[i] = newSetState()
		cfg := replicate.DefaultConfig()
		cfg.Self = meshPeer(i)
		cfg.State = states[i]
		cfg.Memberlist = testMemberlistConfig()
		// Only the joins' push/pulls (compressing a 1 MiB state every
		// 500 ms is slow under the race detector), so failure detection
		// is slowed down too.
		noAntiEntropy(cfg.Memberlist)
		cfg.Memberlist.TCPTimeout = 10 * time.Second
		cfg.Logger = testLogger().With("self", meshPeer(i).String())
		cfg.OnJoin = states[i].back
		cfg.OnLeave = states[i].drop
		cfg.Connect = func(g mesh.Gossiper) replicate.Sender { return routers[i].NewGossipChannel("dns", g) }
		if i == 2 {
			for j := range 16 << 10 {
				states[i].add(meshPeer(i), fmt.Sprintf("big-%05d-%s", j, "0123456789abcdef0123456789abcdef0123456789"))
			}
		}
		rep, err := replicate.New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = rep.Shutdown() })
		reps[i] = rep
	}
	t.Logf("peer 2's full state is %d bytes", len(states[2].FullState()))
	start := time.Now()
	for time.Since(start) < 20*time.Second {
		done := true
		for i, rep := range reps {
			if len(rep.Members()) < 3 {
				done = false
				if _, err := rep.Join(routers[i].Routes().Reachable()); err != nil {
					t.Logf("%s join (will retry): %v", meshPeer(i), err)
				}
			}
		}
		if done {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	waitFor(t, 20*time.Second, "peer 2's big state at peer 0", func() bool {
		return states[0].count() >= 16<<10
	})
	t.Logf("membership and 1 MiB state across two hops after %v", time.Since(start))

	if err := reps[0].Broadcast(states[0].add(meshPeer(0), "db.weave.local")); err != nil {
		t.Fatal(err)
	}
	d := waitFor(t, 20*time.Second, "the broadcast two hops away", func() bool {
		return states[2].has("db.weave.local")
	})
	t.Logf("broadcast crossed two hops in %v", d)
}

// meshPeer is the name of router i: a mesh router's name is its key's.
func meshPeer(i int) identity.PeerName { return meshtest.Name(i) }
