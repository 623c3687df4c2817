package daemon

import (
	"context"
	"errors"
	"log/slog"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/weavelab/weave/mesh/identity"
	"github.com/weavelab/weave/router/docker"
	"github.com/weavelab/weave/router/docker/dockertest"
	"github.com/weavelab/weave/router/ipam"
)

// newIPAMNode is a test node with a real allocator (alone in its mesh, so
// it seeds the ring at the first allocation) and a fake Docker Engine.
func newIPAMNode(t *testing.T) (*node, *ipam.Allocator, *dockertest.Fake) {
	t.Helper()
	n, _, _ := newTestNode(t)
	alloc, err := ipam.New(ipam.Config{
		Peer: identity.PeerName(0x0a0000000001), Range: netip.MustParsePrefix("10.40.0.0/24"),
		StateDir: t.TempDir(), Grace: time.Hour, Logger: slog.New(slog.DiscardHandler),
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	alloc.Start(ctx, nil)
	t.Cleanup(func() { cancel(); alloc.Close() })
	fake := dockertest.New()
	n.ipam, n.docker = alloc, fake
	return n, alloc, fake
}

const dbID = "4f2a9c0e1b3d5f7a9c0e1b3d5f7a9c0e1b3d5f7a9c0e1b3d5f7a9c0e1b3d5f7a"

func TestNodeAttachAllocates(t *testing.T) {
	n, alloc, fake := newIPAMNode(t)
	fake.Put(docker.Container{ID: dbID, Name: "db", PID: 4242, Running: true})
	ctx := context.Background()

	got, err := n.Attach(ctx, "db", nil, false)
	if err != nil || len(got) != 1 || got[0] != "10.40.0.1/24" {
		t.Fatalf("attach db = %v, %v; want the lowest address of the range", got, err)
	}
	if as := alloc.Lookup(dbID); len(as) != 1 || as[0].Addr != netip.MustParseAddr("10.40.0.1") {
		t.Fatalf("allocations of db: %+v", as)
	}
	got, err = n.Attach(ctx, "netns:c2", []string{"net:10.40.0.128/25", "10.9.9.9/24"}, false)
	if err != nil || !slices.Equal(got, []string{"10.40.0.129/25", "10.9.9.9/24"}) {
		t.Fatalf("attach c2 = %v, %v", got, err)
	}
	cs, err := n.PS(ctx, []string{"db"})
	if err != nil || len(cs) != 1 || cs[0].ID != dbID {
		t.Fatalf("ps db = %+v, %v", cs, err)
	}
	if err := n.Detach(ctx, "db", nil); err != nil {
		t.Fatal(err)
	}
	if as := alloc.Lookup(dbID); len(as) != 0 {
		t.Fatalf("detach left allocations %+v", as)
	}
}

func TestNodeAttachBadInputChangesNothing(t *testing.T) {
	n, alloc, fake := newIPAMNode(t)
	fake.Put(docker.Container{ID: dbID, Name: "stopped"})
	ctx := context.Background()
	if _, err := n.Attach(ctx, "netns:c1", nil, false); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		container string
		addrs     []string
		want      string
	}{
		{"netns:c2", []string{"net:10.99.0.0/24"}, "outside the allocation range"},
		{"netns:c2", []string{"net:10.40.0.0/33"}, "malformed CIDR"},
		{"netns:c2", []string{"net:10.40.0.0/31"}, "too small"},
		{"netns:c2", []string{"10.40.0.1/24"}, "in use by netns:c1"},
		{"netns:c2", []string{"net:default", "net:default"}, "given twice"},
		{"no-such", nil, "no such container"},
		{"stopped", nil, "not running"},
	} {
		before := alloc.Allocs()
		_, err := n.Attach(ctx, tt.container, tt.addrs, false)
		if tt.want == "" {
			if err != nil {
				t.Errorf("attach %s %v: %v", tt.container, tt.addrs, err)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), tt.want) || strings.Contains(err.Error(), "\n") {
			t.Errorf("attach %s %v: err = %v, want one line with %q", tt.container, tt.addrs, err, tt.want)
		}
		if after := alloc.Allocs(); !slices.Equal(after, before) {
			t.Errorf("attach %s %v changed the allocations: %v -> %v", tt.container, tt.addrs, before, after)
		}
	}
	// The allocation succeeds, the attach fails: the address goes back,
	// but one the container had before stays.
	before := alloc.Allocs()
	n.net.(*fakeNet).fail = errors.New("already has an interface ethwe that this router did not make")
	if _, err := n.Attach(ctx, "netns:c1", []string{"net:default", "net:10.40.0.64/26"}, false); err == nil || !strings.Contains(err.Error(), "did not make") {
		t.Errorf("attach refused by the router: err = %v", err)
	}
	if after := alloc.Allocs(); !slices.Equal(after, before) {
		t.Errorf("a failed attach changed the allocations: %v -> %v", before, after)
	}
	n.net.(*fakeNet).fail = nil
	fake.SetUnavailable(true)
	if _, err := n.Attach(ctx, "db", nil, false); err == nil || !strings.Contains(err.Error(), "not reachable") {
		t.Errorf("attach with Docker down: %v", err)
	}
}

func TestNodeGoneHoldsThenRestartReattaches(t *testing.T) {
	n, alloc, fake := newIPAMNode(t)
	fake.Put(docker.Container{ID: dbID, Name: "db", PID: 4242, Running: true})
	ctx := context.Background()
	got, err := n.Attach(ctx, "db", []string{"net:default", "10.9.9.9/24"}, false)
	if err != nil {
		t.Fatal(err)
	}
	// The namespace goes: the router reports it gone.
	n.net.(*fakeNet).attached = map[string][]netip.Prefix{}
	n.onGone(dbID, []netip.Prefix{netip.MustParsePrefix(got[0]), netip.MustParsePrefix(got[1])})
	if st := alloc.Status(); st.Held != 1 || st.Allocated != 0 {
		t.Fatalf("after death: %+v, want 1 held", st)
	}
	fake.Start(dbID, 4343)
	dockerEvents{ctx: ctx, n: n}.OnEvent(docker.Event{Action: docker.ActionStart, ID: dbID})
	as, _ := n.net.PSRefs(ctx)
	if len(as) != 1 || !slices.Equal(prefixStrings(as[0].Addrs), got) {
		t.Fatalf("after restart ps = %+v, want %v", as, got)
	}
	if st := alloc.Status(); st.Held != 0 || st.Allocated != 1 {
		t.Fatalf("after restart: %+v, want 1 live", st)
	}
	dockerEvents{ctx: ctx, n: n}.OnEvent(docker.Event{Action: docker.ActionDestroy, ID: dbID})
	if st := alloc.Status(); st.Allocated != 0 {
		t.Fatalf("after destroy: %+v, want nothing allocated", st)
	}
}
