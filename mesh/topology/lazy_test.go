package topology

import (
	"reflect"
	"testing"
)

// TestRoutesFuncSnapshot: a lazy snapshot computes the routes of the
// topology as it was when taken, even after our entry and others change.
func TestRoutesFuncSnapshot(t *testing.T) {
	topo := newTopo(t, 1)
	topo.SetOurConns([]Conn{est(2)})
	mustMerge(t, topo, mk(2, 5, 3, est(1), est(3)), mk(3, 5, 3, est(2)))
	want := topo.Routes().NextHops()
	f := topo.RoutesFunc()
	topo.SetOurConns(nil)
	mustMerge(t, topo, mk(2, 5, 4))
	if got := f().NextHops(); !reflect.DeepEqual(got, want) {
		t.Fatalf("snapshot next hops = %v, want %v", got, want)
	}
	if f() != f() {
		t.Fatal("snapshot computed twice")
	}
	if got := topo.RoutesFunc()().NextHops(); len(got) != 0 {
		t.Fatalf("routes after dropping our links = %v, want none", got)
	}
}

// TestGCFlags: NeedsGC after a peer is added or a connection lost,
// LostConns only after a loss, both clear after GC; the digest follows
// every change, as computed from the summary.
func TestGCFlags(t *testing.T) {
	topo := newTopo(t, 1)
	topo.SetOurConns([]Conn{est(2)})
	mustMerge(t, topo, mk(2, 5, 3, est(1), est(3)))
	if !topo.NeedsGC() || topo.LostConns() {
		t.Fatalf("after add: NeedsGC=%v LostConns=%v, want true false", topo.NeedsGC(), topo.LostConns())
	}
	topo.GC()
	if topo.NeedsGC() || topo.LostConns() {
		t.Fatal("flags not cleared by GC")
	}
	mustMerge(t, topo, mk(2, 5, 4, est(1), est(3), est(4)))
	if topo.NeedsGC() {
		t.Fatal("NeedsGC after a connection was only added")
	}
	mustMerge(t, topo, mk(2, 5, 5, est(1)))
	if !topo.NeedsGC() || !topo.LostConns() {
		t.Fatal("flags not set after a lost connection")
	}
	if topo.Digest() != topo.Summary().Digest() {
		t.Fatal("incremental digest differs from the summary's")
	}
	topo.GC()
	if topo.Digest() != topo.Summary().Digest() {
		t.Fatal("incremental digest differs from the summary's after GC")
	}
}
