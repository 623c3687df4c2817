package daemon

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/weavelab/weave/mesh"
	"github.com/weavelab/weave/mesh/identity"
	"github.com/weavelab/weave/mesh/topology"
	"github.com/weavelab/weave/router"
	"github.com/weavelab/weave/router/api"
	"github.com/weavelab/weave/router/netdev"
	"github.com/weavelab/weave/router/overlay"
)

type fakeMesh struct {
	mu      sync.Mutex
	targets []string
	calls   int
	status  mesh.Status
}

var _ meshPart = (*fakeMesh)(nil)

func (m *fakeMesh) Connect(peers []string, replace bool) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.calls++
	if replace {
		m.targets = nil
	}
	for _, p := range peers {
		if !slices.Contains(m.targets, p) {
			m.targets = append(m.targets, p)
		}
	}
	slices.Sort(m.targets)
	return nil
}

func (m *fakeMesh) Forget(peers []string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.calls++
	m.targets = slices.DeleteFunc(m.targets, func(t string) bool { return slices.Contains(peers, t) })
	return nil
}

func (m *fakeMesh) Targets() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return slices.Clone(m.targets)
}

func (m *fakeMesh) Status() mesh.Status { return m.status }

type fakeNet struct {
	attached map[string][]netip.Prefix
	exposed  []netip.Prefix
	fail     error // AttachRef's answer when set
}

var _ netPart = (*fakeNet)(nil)

func (n *fakeNet) AttachRef(ctx context.Context, ref netdev.ContainerRef, ps []netip.Prefix) ([]netip.Prefix, error) {
	if n.fail != nil {
		return nil, n.fail
	}
	c := ref.String()
	n.attached[c] = append(n.attached[c], ps...)
	return n.attached[c], nil
}

func (n *fakeNet) DetachRef(ctx context.Context, ref netdev.ContainerRef, pick func(netip.Prefix) bool, listed []netip.Prefix) ([]netip.Prefix, error) {
	c := ref.String()
	had, ok := n.attached[c]
	if !ok {
		return nil, errors.New("detach " + c + ": not attached")
	}
	delete(n.attached, c)
	return had, nil
}

func (n *fakeNet) PSRefs(ctx context.Context, refs ...netdev.ContainerRef) ([]router.Attachment, error) {
	for _, r := range refs {
		if _, ok := n.attached[r.String()]; !ok {
			return nil, fmt.Errorf("ps %s: %w", r, router.ErrNotAttached)
		}
	}
	var out []router.Attachment
	for _, id := range slices.Sorted(func(yield func(string) bool) {
		for k := range n.attached {
			if !yield(k) {
				return
			}
		}
	}) {
		if len(refs) > 0 && !slices.ContainsFunc(refs, func(r netdev.ContainerRef) bool { return r.String() == id }) {
			continue
		}
		out = append(out, router.Attachment{ID: id, MAC: "0a:58:00:00:00:01", Addrs: n.attached[id]})
	}
	return out, nil
}

func (n *fakeNet) Reconcile() error { return nil }

func (n *fakeNet) Gone(id string) error { delete(n.attached, id); return nil }

func (n *fakeNet) Expose(addrs []string) ([]netip.Prefix, error) {
	ps, err := router.ParseAddrs(addrs)
	n.exposed = append(n.exposed, ps...)
	return ps, err
}

func (n *fakeNet) Hide(addrs []string) error { n.exposed = nil; return nil }

func (n *fakeNet) Exposed() ([]netip.Prefix, error) { return n.exposed, nil }

type fakeStats struct{ st overlay.Stats }

func (f fakeStats) Stats() overlay.Stats { return f.st }

func newTestNode(t *testing.T) (*node, *fakeMesh, *State) {
	t.Helper()
	st, err := OpenState(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	m := &fakeMesh{}
	n := &node{
		info: nodeInfo{Version: "v", PID: 1}, mesh: m, net: &fakeNet{attached: map[string][]netip.Prefix{}},
		stats: fakeStats{}, state: st, log: slog.New(slog.DiscardHandler),
	}
	return n, m, st
}

func TestNodeTargetsPersisted(t *testing.T) {
	n, m, st := newTestNode(t)
	ctx := context.Background()
	if err := n.Connect(ctx, []string{"10.0.0.1", "h2:7000"}, false); err != nil {
		t.Fatal(err)
	}
	saved, _ := st.Targets()
	if want := []string{"10.0.0.1:6783", "h2:7000"}; !slices.Equal(saved, want) {
		t.Fatalf("saved %v, want %v", saved, want)
	}
	// Malformed input: error, mesh untouched, saved targets unchanged.
	calls := m.calls
	if err := n.Connect(ctx, []string{"10.0.0.3", "10.0.0.4:99999"}, false); !errors.Is(err, ErrBadPeer) {
		t.Fatalf("err = %v, want ErrBadPeer", err)
	}
	if err := n.Forget(ctx, []string{"bad host"}); !errors.Is(err, ErrBadPeer) {
		t.Fatalf("err = %v, want ErrBadPeer", err)
	}
	if m.calls != calls {
		t.Fatal("mesh called with malformed peers")
	}
	if err := n.Forget(ctx, []string{"10.0.0.1"}); err != nil {
		t.Fatal(err)
	}
	saved, _ = st.Targets()
	if want := []string{"h2:7000"}; !slices.Equal(saved, want) {
		t.Fatalf("after forget: saved %v, want %v", saved, want)
	}
	if err := n.Connect(ctx, nil, true); err != nil {
		t.Fatal(err)
	}
	if saved, _ = st.Targets(); len(saved) != 0 {
		t.Fatalf("after connect --replace: saved %v", saved)
	}
	if err := n.Connect(ctx, nil, false); err == nil {
		t.Fatal("connect with no peers: no error")
	}
}

func TestNodeRestoreTargets(t *testing.T) {
	n, m, st := newTestNode(t)
	st.SetTargets([]string{"10.0.0.1:6783", "h2:6783"})
	if err := n.restoreTargets([]string{"10.0.0.9", "h2"}); err != nil {
		t.Fatal(err)
	}
	want := []string{"10.0.0.1:6783", "10.0.0.9:6783", "h2:6783"}
	if got := m.Targets(); !slices.Equal(got, want) {
		t.Errorf("mesh targets %v, want %v", got, want)
	}
	if saved, _ := st.Targets(); !slices.Equal(saved, want) {
		t.Errorf("saved %v, want %v", saved, want)
	}
}

func TestNodeContainers(t *testing.T) {
	n, _, _ := newTestNode(t)
	ctx := context.Background()
	got, err := n.Attach(ctx, "netns:c1", []string{"10.2.1.4/24", "ip:10.3.1.4/24"}, false)
	if err != nil || !slices.Equal(got, []string{"10.2.1.4/24", "10.3.1.4/24"}) {
		t.Fatalf("attach = %v, %v", got, err)
	}
	if _, err := n.Attach(ctx, "netns:c2", []string{"net:default"}, false); err == nil || !strings.Contains(err.Error(), "automatic allocation is off") {
		t.Fatalf("attach net:default: err = %v", err)
	}
	cs, err := n.PS(ctx, nil)
	if err != nil || len(cs) != 1 || cs[0].ID != "netns:c1" || len(cs[0].Addrs) != 2 {
		t.Fatalf("ps = %+v, %v", cs, err)
	}
	if _, err := n.Expose(ctx, []string{"10.2.1.254/24"}); err != nil {
		t.Fatal(err)
	}
	n.bridgeMAC = func() string { return "7a:00:00:00:00:01" }
	cs, err = n.PS(ctx, nil)
	if err != nil || len(cs) != 2 || cs[0].ID != ExposeID || cs[0].MAC != "7a:00:00:00:00:01" || cs[0].Addrs[0] != "10.2.1.254/24" {
		t.Fatalf("ps with exposed = %+v, %v", cs, err)
	}
	if cs, err = n.PS(ctx, []string{"netns:c1"}); err != nil || len(cs) != 1 {
		t.Fatalf("ps netns:c1 = %+v, %v; want no expose line", cs, err)
	}
	rep, err := n.Report(ctx)
	if err != nil || len(rep.Containers) != 1 || !slices.Equal(rep.Exposed, []string{"10.2.1.254/24"}) {
		t.Fatalf("report = %+v, %v", rep, err)
	}
	if err := n.Detach(ctx, "netns:c9", nil); err == nil {
		t.Fatal("detach of an unknown container: no error")
	}
}

func name(t *testing.T, s string) identity.PeerName {
	t.Helper()
	n, err := identity.ParsePeerName(s)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func TestBuildStatus(t *testing.T) {
	us := identity.Peer{Name: name(t, "0a:00:00:00:00:05"), NickName: "us", UID: 5}
	p1 := identity.Peer{Name: name(t, "0a:00:00:00:00:01"), NickName: "one", UID: 1}
	p9 := identity.Peer{Name: name(t, "0a:00:00:00:00:09"), NickName: "nine", UID: 9}
	since := time.Unix(1700000000, 0)
	ms := mesh.Status{
		Peer: us, Encryption: true, Discovery: true, Port: 6783,
		Peers: []mesh.PeerStatus{
			{Peer: p9, Version: 2, Conns: []topology.Conn{{Remote: us.Name, RemoteAddr: "10.0.0.5:6783", Established: true}}},
			{Peer: p1, Version: 3},
			{Peer: us, Version: 7, Conns: []topology.Conn{{Remote: p9.Name, RemoteAddr: "10.0.0.9:6783", Outbound: true, Established: true}}},
		},
		Connections: []mesh.ConnectionStatus{
			{Peer: identity.Peer{Name: p9.Name, UID: 9}, Addr: "10.0.0.9:6783", Outbound: true, State: mesh.StateEstablished, Since: since},
			{Peer: p1, Addr: "10.0.0.1:6783", Outbound: true, State: mesh.StateHandshake},
			{Addr: "10.0.0.7:6783", Outbound: true, State: mesh.StateFailed, Reason: "timeout", Since: since},
			{Addr: "10.0.0.7:6783", Outbound: true, State: mesh.StateFailed, Reason: "connection refused", Since: since.Add(time.Second)},
			{Addr: "10.0.0.9:6783", Outbound: true, State: mesh.StateFailed, Reason: "superseded by the live one"},
		},
		Targets: []mesh.TargetStatus{
			{Addr: "10.0.0.9:6783", State: mesh.TargetConnected},
			{Addr: "10.0.0.1:6783", State: mesh.TargetConnected, Discovered: true},
		},
	}
	ds := overlay.Stats{ContainerMTU: 1376, Peers: []overlay.PeerStats{
		{Peer: p9.Name, State: "established", FramesIn: 4, BytesIn: 400, Drops: map[string]uint64{"replay": 1}},
		{Peer: p1.Name, State: "connecting", Reason: "no heartbeat from 10.0.0.1:6783 yet"},
	}}
	st := buildStatus(nodeInfo{Version: "v1", PID: 77, Salt: api.SaltNetwork}, ms, ds)

	if st.Version != "v1" || st.PID != 77 || st.Peer != us || !st.Encryption || !st.Discovery || st.MTU != 1376 || st.Salt != api.SaltNetwork {
		t.Errorf("header = %+v", st)
	}
	var order []string
	for _, p := range st.Peers {
		order = append(order, p.NickName)
	}
	if !slices.Equal(order, []string{"us", "one", "nine"}) {
		t.Errorf("peer order %v, want us first then by name", order)
	}
	if r := st.Peers[0].Conns[0].Remote; r != p9 {
		t.Errorf("our conn's remote = %+v, want %+v (nickname filled in)", r, p9)
	}
	if st.Peers[1].Conns == nil {
		t.Error("peer without conns has nil Conns (prints null)")
	}
	c := st.Connections
	if len(c) != 3 {
		t.Fatalf("connections = %+v", c)
	}
	if c[0].Peer == nil || c[0].Peer.NickName != "nine" || c[0].Stats == nil || c[0].Stats.FramesIn != 4 ||
		c[0].Stats.Drops["replay"] != 1 || !c[0].Since.Equal(since) || c[0].Reason != "" {
		t.Errorf("established conn = %+v (stats %+v)", c[0], c[0].Stats)
	}
	if c[1].Reason != "no heartbeat from 10.0.0.1:6783 yet" {
		t.Errorf("pending conn reason = %q, want the data plane's", c[1].Reason)
	}
	if c[2].Peer != nil || c[2].Stats != nil || c[2].Reason != "connection refused" {
		t.Errorf("failed conn = %+v", c[2])
	}
	if len(st.Targets) != 1 || st.Targets[0].Addr != "10.0.0.9:6783" || len(st.Discovered) != 1 {
		t.Errorf("targets = %+v", st.Targets)
	}

	// The API form round-trips through the client's decoder (a zero peer
	// name would not).
	var b []byte
	b, err := jsonRoundTrip(st)
	if err != nil {
		t.Fatalf("round trip: %v (%s)", err, b)
	}
}

func jsonRoundTrip(st api.Status) ([]byte, error) {
	b, err := jsonMarshal(st)
	if err != nil {
		return nil, err
	}
	var back api.Status
	return b, jsonUnmarshal(b, &back)
}

func jsonMarshal(v any) ([]byte, error)   { return json.Marshal(v) }
func jsonUnmarshal(b []byte, v any) error { return json.Unmarshal(b, v) }
