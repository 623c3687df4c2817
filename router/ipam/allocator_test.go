package ipam

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/weavelab/weave/mesh"
	"github.com/weavelab/weave/mesh/identity"
)

func TestAllocatorWaitsForConsensus(t *testing.T) {
	n := newMemNet(t)
	a1 := n.start(t, n.config(1, "10.32.0.0/24", 2))
	if st := a1.Status(); st.State != "idle" || st.DefaultSubnet != pfx("10.32.0.0/24") {
		t.Errorf("status %+v", st)
	}
	got := make(chan error, 1)
	var p netip.Prefix
	go func() {
		var err error
		p, err = a1.Allocate(ctxTimeout(t, 10*time.Second), "c1", netip.Prefix{})
		got <- err
	}()
	// It cannot finish alone: wait until it is pending, then add a peer.
	for a1.Status().Pending == 0 {
		select {
		case err := <-got:
			t.Fatalf("Allocate finished without a quorum: %v", err)
		case <-time.After(time.Millisecond):
		}
	}
	if st := a1.Status(); st.State != "awaiting consensus" || st.Ready() {
		t.Errorf("status while waiting %+v", st)
	}
	a2 := n.start(t, n.config(2, "10.32.0.0/24", 2))
	if err := <-got; err != nil {
		t.Fatal(err)
	}
	if !pfx("10.32.0.0/24").Contains(p.Addr()) || p.Bits() != 24 {
		t.Errorf("allocated %s", p)
	}
	n.quiet(t)
	for _, a := range []*Allocator{a1, a2} {
		if st := a.Status(); !st.Ready() || !slices.Equal(st.Seeds, []identity.PeerName{1, 2}) || st.Pending != 0 {
			t.Errorf("%s: status %+v", a.cfg.Peer, st)
		}
	}
	if l := a1.Lookup("c1"); len(l) != 1 || l[0].Prefix() != p {
		t.Errorf("Lookup = %v", l)
	}
}

// TestAllocatorConcurrent: many goroutines allocate on two peers of a
// small range at once; every address is distinct and in its peer's space.
func TestAllocatorConcurrent(t *testing.T) {
	n := newMemNet(t)
	as := []*Allocator{n.start(t, n.config(1, "10.32.0.0/25", 2)), n.start(t, n.config(2, "10.32.0.0/25", 2))}
	const each = 60 // 120 of the 126 addresses: peers must ask each other
	type res struct {
		peer int
		id   string
		p    netip.Prefix
		err  error
	}
	results := make(chan res, 2*each)
	var wg sync.WaitGroup
	for i := range 2 * each {
		wg.Add(1)
		go func() {
			defer wg.Done()
			id := fmt.Sprintf("c%d", i)
			p, err := as[i%2].Allocate(ctxTimeout(t, 20*time.Second), id, netip.Prefix{})
			results <- res{i % 2, id, p, err}
		}()
	}
	wg.Wait()
	close(results)
	seen := map[netip.Addr]string{}
	for r := range results {
		if r.err != nil {
			t.Errorf("%s on peer %d: %v", r.id, r.peer+1, r.err)
			continue
		}
		if prev, dup := seen[r.p.Addr()]; dup {
			t.Errorf("%s given to %s and %s", r.p, prev, r.id)
		}
		seen[r.p.Addr()] = r.id
	}
	n.quiet(t)
	for _, a := range as {
		for _, al := range a.Allocs() {
			if owner, _ := a.core.ring.Owner(AddrFrom(al.Addr)); owner != a.cfg.Peer {
				t.Errorf("%s: allocation %s in space of %s", a.cfg.Peer, al.Addr, owner)
			}
		}
	}
	if len(seen) != 2*each {
		t.Errorf("%d distinct addresses, want %d", len(seen), 2*each)
	}
}

func TestAllocatorTimeout(t *testing.T) {
	n := newMemNet(t)
	a := n.start(t, n.config(1, "10.32.0.0/24", 2))
	start := time.Now()
	_, err := a.Allocate(ctxTimeout(t, 50*time.Millisecond), "c1", netip.Prefix{})
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "not seeded") || !strings.Contains(err.Error(), "c1") {
		t.Errorf("Allocate without a quorum = %v", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("returned after %s", d)
	}
	if st := a.Status(); st.Pending != 0 || st.Allocated != 0 || len(a.Allocs()) != 0 {
		t.Errorf("after the timeout: %+v, %v", st, a.Allocs())
	}

	// Seeded, full, and the peer with free space unreachable.
	n2 := newMemNet(t)
	b1 := n2.start(t, n2.config(1, "10.32.0.0/29", 2))
	b2 := n2.start(t, n2.config(2, "10.32.0.0/29", 2))
	for i := range 3 {
		if _, err := b1.Allocate(ctxTimeout(t, 10*time.Second), fmt.Sprint("c", i), netip.Prefix{}); err != nil {
			t.Fatal(err)
		}
	}
	n2.quiet(t)
	n2.setDown(2, true)
	// (Long enough for the actor to try it once and note why it waits.)
	_, err = b1.Allocate(ctxTimeout(t, 300*time.Millisecond), "more", netip.Prefix{})
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "unreachable") {
		t.Errorf("Allocate with the donor unreachable = %v", err)
	}
	if l := b1.Lookup("more"); len(l) != 0 {
		t.Errorf("timed-out request allocated %v", l)
	}
	_ = b2
}

func TestAllocatorErrors(t *testing.T) {
	n := newMemNet(t)
	a := n.start(t, n.config(1, "10.32.0.0/24", 1))
	ctx := ctxTimeout(t, 10*time.Second)
	if _, err := a.Allocate(ctx, "c", pfx("10.40.0.0/24")); !errors.Is(err, ErrOutOfRange) {
		t.Errorf("subnet outside the range: %v", err)
	}
	if err := a.Claim(ctx, "c", pfx("192.168.0.5/24")); err != nil {
		t.Errorf("claim outside the range: %v", err)
	}
	if err := a.Claim(ctx, "c", pfx("10.32.0.5/24")); err != nil {
		t.Fatal(err)
	}
	if err := a.Claim(ctx, "d", pfx("10.32.0.5/24")); !errors.Is(err, ErrInUse) {
		t.Errorf("claim of a used address: %v", err)
	}
	// Fill the range: the next one is ErrFull at once.
	for i := range 253 {
		if _, err := a.Allocate(ctx, fmt.Sprint("f", i), netip.Prefix{}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := a.Allocate(ctx, "last", netip.Prefix{}); !errors.Is(err, ErrFull) {
		t.Errorf("Allocate on a full range: %v", err)
	}
	// Another network's ring is refused as incompatible.
	other := newTestCoreSeeded(t, 9, "10.32.0.0/24")
	if _, err := a.OnGossip(9, other.Gossip()); !errors.Is(err, mesh.ErrIncompatible) || !errors.Is(err, ErrIncompatible) {
		t.Errorf("OnGossip of another ring: %v", err)
	}
	if err := a.OnUnicast(9, []byte("junk")); !errors.Is(err, ErrInvalid) {
		t.Errorf("OnUnicast of junk: %v", err)
	}
	if _, err := a.RmPeer(1); err == nil {
		t.Error("RmPeer of ourselves succeeded")
	}
	// Not started: clear errors, not hangs.
	b, err := New(n.config(5, "10.32.0.0/24", 1))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.Allocate(ctx, "x", netip.Prefix{}); err == nil {
		t.Error("Allocate on an Allocator not started")
	}
	if st := b.Status(); st.State != "stopped" {
		t.Errorf("status before Start: %+v", st)
	}
	b.Close()
	if _, err := New(Config{Peer: 1, Range: pfx("10.32.0.0/24"), DefaultSubnet: pfx("10.33.0.0/24")}); !errors.Is(err, ErrOutOfRange) {
		t.Errorf("default subnet outside the range: %v", err)
	}
}

func TestAllocatorHoldAndGrace(t *testing.T) {
	n := newMemNet(t)
	clock := &fakeClock{t: t0}
	cfg := n.config(1, "10.32.0.0/24", 1)
	cfg.Grace = time.Minute
	cfg.Now = clock.Now
	a := n.start(t, cfg)
	ctx := ctxTimeout(t, 10*time.Second)
	p, err := a.Allocate(ctx, "c1", netip.Prefix{})
	if err != nil {
		t.Fatal(err)
	}
	if got := a.Hold("c1"); got != 1 {
		t.Fatalf("Hold = %d", got)
	}
	clock.Add(30 * time.Second)
	waitTicks(t, a, 3)
	if q, err := a.Allocate(ctx, "c1", netip.Prefix{}); err != nil || q != p {
		t.Fatalf("back within the grace: %s, %v; want %s", q, err, p)
	}
	a.Hold("c1")
	clock.Add(59 * time.Second)
	waitTicks(t, a, 3)
	if len(a.Lookup("c1")) != 1 {
		t.Fatal("freed before the grace ended")
	}
	clock.Add(2 * time.Second)
	deadline := time.Now().Add(5 * time.Second)
	for len(a.Lookup("c1")) != 0 {
		if time.Now().After(deadline) {
			t.Fatal("not freed after the grace")
		}
		waitTicks(t, a, 1)
	}
	if q, err := a.Allocate(ctx, "c2", netip.Prefix{}); err != nil || q != p {
		t.Errorf("freed address not reused: %s, %v", q, err)
	}
}

// waitTicks lets the actor's ticker fire about n times.
func waitTicks(tb testing.TB, a *Allocator, n int) {
	tb.Helper()
	time.Sleep(time.Duration(n) * a.cfg.Tick) // a timer, not convergence: the ticker is real time
	a.Status()
}

func TestAllocatorRestart(t *testing.T) {
	n := newMemNet(t)
	dir := t.TempDir()
	cfg1 := n.config(1, "10.32.0.0/24", 2)
	cfg1.StateDir = dir
	a1 := n.start(t, cfg1)
	a2 := n.start(t, n.config(2, "10.32.0.0/24", 2))
	ctx := ctxTimeout(t, 10*time.Second)
	var want []Alloc
	for i := range 5 {
		if _, err := a1.Allocate(ctx, fmt.Sprint("c", i), netip.Prefix{}); err != nil {
			t.Fatal(err)
		}
	}
	if err := a1.Claim(ctx, "s", pfx("10.32.0.100/24")); err != nil {
		t.Fatal(err)
	}
	a1.Hold("c3")
	n.quiet(t)
	want = a1.Allocs()
	ring := a1.Status().Peers
	n.stop(a1)

	back := n.start(t, cfg1)
	if got := back.Allocs(); !slices.EqualFunc(got, want, sameAlloc) {
		t.Errorf("allocations after restart\n got  %v\n want %v", got, want)
	}
	if st := back.Status(); !st.Ready() || !slices.EqualFunc(st.Peers, ring, sameShare) {
		t.Errorf("status after restart %+v, want peers %+v", st, ring)
	}
	if p, err := back.Allocate(ctx, "c0", netip.Prefix{}); err != nil || p.Addr() != want[0].Addr {
		t.Errorf("c0 after restart: %s, %v; want %s", p, err, want[0].Addr)
	}
	n.quiet(t)
	n.gossip(t)
	if !slices.EqualFunc(a2.Status().Peers, back.Status().Peers, sameShare) {
		t.Errorf("peers disagree after restart:\n %+v\n %+v", a2.Status().Peers, back.Status().Peers)
	}

	// Another peer name in the same state dir starts afresh.
	n.stop(back)
	cfg9 := cfg1
	cfg9.Peer = 9
	other, err := New(cfg9)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	if st := other.core.Status(); st.State != "idle" || len(other.core.Allocs()) != 0 {
		t.Errorf("state of another peer restored: %+v", st)
	}
	// Another range is refused with the reason.
	cfgR := cfg1
	cfgR.Range = pfx("10.40.0.0/16")
	if _, err := New(cfgR); err == nil || !strings.Contains(err.Error(), "--ipalloc-range") {
		t.Errorf("New over another range's state: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, StateFile)); err != nil {
		t.Error(err)
	}
}

func sameShare(a, b PeerShare) bool { return a.Peer == b.Peer && a.Size == b.Size && a.Free == b.Free }

func TestAllocatorLeave(t *testing.T) {
	n := newMemNet(t)
	a1 := n.start(t, n.config(1, "10.32.0.0/24", 2))
	a2 := n.start(t, n.config(2, "10.32.0.0/24", 2))
	ctx := ctxTimeout(t, 10*time.Second)
	if _, err := a1.Allocate(ctx, "c", netip.Prefix{}); err != nil {
		t.Fatal(err)
	}
	n.quiet(t)
	heir, err := a1.Leave(ctx)
	if err != nil || heir != 2 {
		t.Fatalf("Leave = %s, %v", heir, err)
	}
	n.quiet(t)
	if len(a1.Allocs()) != 0 {
		t.Error("allocations kept after Leave")
	}
	for _, a := range []*Allocator{a1, a2} {
		for _, p := range a.Status().Peers {
			if p.Peer == 1 && p.Size != 0 || p.Peer == 2 && p.Size != 256 {
				t.Errorf("%s sees %+v", a.cfg.Peer, p)
			}
		}
	}
	// Nothing left to hand over.
	if heir, err := a1.Leave(ctx); err != nil || heir != 0 {
		t.Errorf("second Leave = %s, %v", heir, err)
	}
}

func TestAllocatorRmPeer(t *testing.T) {
	n := newMemNet(t)
	a1 := n.start(t, n.config(1, "10.32.0.0/24", 2))
	a2 := n.start(t, n.config(2, "10.32.0.0/24", 2))
	if _, err := a1.Allocate(ctxTimeout(t, 10*time.Second), "c", netip.Prefix{}); err != nil {
		t.Fatal(err)
	}
	n.quiet(t)
	if _, err := a1.RmPeer(2); err == nil || !strings.Contains(err.Error(), "reachable") {
		t.Errorf("RmPeer of a reachable peer: %v", err)
	}
	n.stop(a2)
	got, err := a1.RmPeer(2)
	if err != nil || got != 128 {
		t.Errorf("RmPeer = %d, %v", got, err)
	}
	if p := a1.Status().Peers; len(p) != 1 || p[0].Size != 256 {
		t.Errorf("after rmpeer %+v", p)
	}
}

// TestAllocatorGossip: what Gossip and OnGossip exchange brings a late
// peer the ring, and OnGossip passes on a delta only when something
// changed.
func TestAllocatorGossip(t *testing.T) {
	n := newMemNet(t)
	a1 := n.start(t, n.config(1, "10.32.0.0/24", 1))
	if _, err := a1.Allocate(ctxTimeout(t, 10*time.Second), "c", netip.Prefix{}); err != nil {
		t.Fatal(err)
	}
	n.quiet(t)
	late, err := New(Config{Peer: 3, Range: pfx("10.32.0.0/24"), Tick: 5 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	late.Start(context.Background(), sender{n: n, us: 3}) // sends to nobody: not on n
	defer late.Close()
	delta, err := late.OnGossip(1, a1.Gossip())
	if err != nil || delta == nil {
		t.Fatalf("first OnGossip = %q, %v", delta, err)
	}
	if st := late.Status(); !st.Ready() {
		t.Errorf("late peer not ready: %+v", st)
	}
	if delta, err := late.OnGossip(1, a1.Gossip()); err != nil || delta != nil {
		t.Errorf("same gossip again = %q, %v", delta, err)
	}
}

// TestAllocatorLeaveLostHandOver: the first hand-over to the heir is lost;
// Leave still completes (the Core resends it on Tick).
func TestAllocatorLeaveLostHandOver(t *testing.T) {
	n := newMemNet(t)
	a1 := n.start(t, n.config(1, "10.32.0.0/24", 2))
	n.start(t, n.config(2, "10.32.0.0/24", 2))
	if _, err := a1.Allocate(ctxTimeout(t, 10*time.Second), "c", netip.Prefix{}); err != nil {
		t.Fatal(err)
	}
	n.quiet(t)
	lost := 0
	n.mu.Lock()
	n.dropUnicast = func(src, dst identity.PeerName, msg []byte) bool {
		if m, err := decode(msg); err == nil && m.Heir && lost == 0 {
			lost++
			return true
		}
		return false
	}
	n.mu.Unlock()
	if heir, err := a1.Leave(ctxTimeout(t, 4*askInterval)); err != nil || heir != 2 {
		t.Fatalf("Leave with a lost hand-over = %s, %v", heir, err)
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if lost != 1 {
		t.Errorf("%d hand-overs lost", lost)
	}
}

// TestAllocatorStartRace: gossip that arrives while Start runs races with
// Start reading the Core (allocator.go, Start: a.core.Status() after the
// actor started). Run with -race.
func TestAllocatorStartRace(t *testing.T) {
	peer := newTestCoreSeeded(t, 2, "10.32.0.0/24")
	for range 20 {
		a, err := New(Config{Peer: 1, Range: pfx("10.32.0.0/24"), Tick: time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		stop := make(chan struct{})
		done := make(chan struct{})
		go func() {
			defer close(done)
			for {
				select {
				case <-stop:
					return
				default:
					a.OnGossip(2, peer.Gossip())
				}
			}
		}()
		a.Start(context.Background(), discard{})
		close(stop)
		<-done
		a.Close()
	}
}

type discard struct{}

func (discard) Broadcast([]byte)                        {}
func (discard) Unicast(identity.PeerName, []byte) error { return nil }

// TestAllocatorSaveFailureKeepsExisting: when saving fails, settle fails
// the allocations answered in that burst by releasing their addresses,
// even an address the container already had (allocator.go, settle).
func TestAllocatorSaveFailureKeepsExisting(t *testing.T) {
	n := newMemNet(t)
	dir := filepath.Join(t.TempDir(), "state")
	cfg := n.config(1, "10.32.0.0/24", 1)
	cfg.StateDir = dir
	a := n.start(t, cfg)
	ctx := ctxTimeout(t, 10*time.Second)
	p, err := a.Allocate(ctx, "c", netip.Prefix{})
	if err != nil {
		t.Fatal(err)
	}
	a.Hold("c") // the container restarts...
	a.Status()  // (the save after Hold is done)
	a.Status()
	// ...while the state dir cannot be written.
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dir, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Allocate(ctx, "c", netip.Prefix{}); err == nil {
		t.Log("the re-allocation succeeded despite the failed save")
	}
	if l := a.Lookup("c"); len(l) != 1 || l[0].Prefix() != p {
		t.Errorf("the container's address %s was released by a failed save: Lookup = %v", p, l)
	}
}
