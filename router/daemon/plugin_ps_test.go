package daemon

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync"
	"testing"

	"github.com/weavelab/weave/router"
	"github.com/weavelab/weave/router/api"
	"github.com/weavelab/weave/router/docker"
	"github.com/weavelab/weave/router/plugin"
	"github.com/weavelab/weave/router/plugin/plugintest"
)

// fakeNets is the Engine's record of networks: network ID -> record.
type fakeNets struct {
	mu   sync.Mutex
	nets map[string]docker.NetworkEndpoints
	down bool
}

func (f *fakeNets) NetworkEndpoints(ctx context.Context, networkID string) (docker.NetworkEndpoints, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.down {
		return docker.NetworkEndpoints{}, fmt.Errorf("inspect network: %w", docker.ErrUnavailable)
	}
	nw, ok := f.nets[networkID]
	if !ok {
		return docker.NetworkEndpoints{}, fmt.Errorf("inspect network: %w", docker.ErrNotFound)
	}
	return nw, nil
}

// RemoveNetwork removes a network without containers, as the Engine does.
func (f *fakeNets) RemoveNetwork(ctx context.Context, id string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.down {
		return fmt.Errorf("remove network: %w", docker.ErrUnavailable)
	}
	nw, ok := f.nets[id]
	if !ok {
		return fmt.Errorf("remove network: %w", docker.ErrNotFound)
	}
	if len(nw.Containers) > 0 {
		return fmt.Errorf("error while removing network: network %s id %s has active endpoints", nw.Name, id)
	}
	delete(f.nets, id)
	return nil
}

// TestRemoveNetworks: weave reset's request removes the plugin's networks
// from Docker, and reports one that still has containers instead of
// failing.
func TestRemoveNetworks(t *testing.T) {
	n, _, _ := newIPAMNode(t)
	ctx := context.Background()
	if resp, err := n.RemoveNetworks(ctx); err != nil || len(resp.Removed)+len(resp.Failed) != 0 {
		t.Fatalf("without a plugin: %+v, %v; want nothing", resp, err)
	}
	srv := newTestPlugin(t)
	for i, id := range []string{"emptyid", "busyid"} {
		pluginCall(t, srv, "NetworkDriver.CreateNetwork", map[string]any{"NetworkID": id,
			"IPv4Data": []map[string]any{{"AddressSpace": plugin.LocalAddressSpace, "Pool": fmt.Sprintf("10.32.%d.0/24", 5+i)}}})
	}
	nets := &fakeNets{nets: map[string]docker.NetworkEndpoints{
		"emptyid": {Name: "weave", Containers: map[string]string{}},
		"busyid":  {Name: "busy", Containers: map[string]string{"ep-1": webID}},
	}}
	n.plugin.Store(srv)
	n.pluginNets = nets
	resp, err := n.RemoveNetworks(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(resp.Removed) != "[weave]" || len(resp.Failed) != 1 || !strings.Contains(resp.Failed[0], "busy") || !strings.Contains(resp.Failed[0], "active endpoints") {
		t.Errorf("RemoveNetworks = %+v; want weave removed and busy reported", resp)
	}
	if _, ok := nets.nets["emptyid"]; ok {
		t.Error("the empty network is still in Docker")
	}
}

// newTestPlugin is a plugin server over fake IPAM and links, not serving.
func newTestPlugin(t *testing.T) *plugin.Server {
	t.Helper()
	cfg := plugin.DefaultConfig()
	cfg.Dir = t.TempDir()
	cfg.IPAM, cfg.Links = plugintest.NewIPAM(netip.MustParsePrefix("10.32.0.0/12")), plugintest.NewLinks()
	srv, err := plugin.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	return srv
}

// pluginCall makes the Engine's call method on srv and fails on an error.
func pluginCall(t *testing.T, srv *plugin.Server, method string, req any) {
	t.Helper()
	b, err := json.Marshal(req)
	if err != nil {
		t.Fatal(err)
	}
	w := httptest.NewRecorder()
	srv.Handler().ServeHTTP(w, httptest.NewRequest("POST", "/"+method, strings.NewReader(string(b))))
	var resp struct{ Err string }
	if err := json.Unmarshal(w.Body.Bytes(), &resp); err != nil || resp.Err != "" {
		t.Fatalf("%s: %q (%v)", method, resp.Err, err)
	}
}

const webID = "9b8c7d6e5f4a3b2c1d0e9f8a7b6c5d4e3f2a1b0c9d8e7f6a5b4c3d2e1f0a9b8c"

// TestPSListsPluginEndpoints: ps lists each plugin endpoint joined to a
// container, after weave's own, with via and network; by name too; not
// one that is idle, that the Engine has no container for, or that left.
func TestPSListsPluginEndpoints(t *testing.T) {
	n, _, fake := newIPAMNode(t)
	ctx := context.Background()
	fake.Put(docker.Container{ID: dbID, Name: "db", PID: 4242, Running: true})
	fake.Put(docker.Container{ID: webID, Name: "web", PID: 4343, Running: true})
	fake.Put(docker.Container{ID: strings.Repeat("c", 64), Name: "other", PID: 4444, Running: true})

	srv := newTestPlugin(t)
	pluginCall(t, srv, "NetworkDriver.CreateNetwork", map[string]any{"NetworkID": "net1id",
		"IPv4Data": []map[string]any{{"AddressSpace": plugin.LocalAddressSpace, "Pool": "10.32.5.0/24"}}})
	endpoint := func(id, addr string, join bool) {
		pluginCall(t, srv, "NetworkDriver.CreateEndpoint", map[string]any{"NetworkID": "net1id", "EndpointID": id, "Interface": map[string]any{"Address": addr}})
		if join {
			pluginCall(t, srv, "NetworkDriver.Join", map[string]any{"NetworkID": "net1id", "EndpointID": id, "SandboxKey": "/var/run/docker/netns/" + id})
		}
	}
	endpoint("ep-web", "10.32.5.2/24", true)
	endpoint("ep-db", "10.32.5.3/24", true)
	endpoint("ep-idle", "10.32.5.4/24", false)
	endpoint("ep-new", "10.32.5.5/24", true) // the Engine has not recorded its container yet
	nets := &fakeNets{nets: map[string]docker.NetworkEndpoints{"net1id": {Name: "net1", Containers: map[string]string{
		"ep-web": webID, "ep-db": dbID, "ep-idle": strings.Repeat("d", 64),
	}}}}
	n.plugin.Store(srv)
	n.pluginNets = nets
	if _, err := n.Attach(ctx, "db", nil, false); err != nil {
		t.Fatal(err)
	}

	weaveDB := api.Container{ID: dbID, MAC: "0a:58:00:00:00:01", Addrs: []string{"10.40.0.1/24"}}
	pluginDB := api.Container{ID: dbID, MAC: plugin.MACFor(netip.MustParseAddr("10.32.5.3")).String(), Addrs: []string{"10.32.5.3/24"}, Via: api.ViaPlugin, Network: "net1"}
	pluginWeb := api.Container{ID: webID, MAC: plugin.MACFor(netip.MustParseAddr("10.32.5.2")).String(), Addrs: []string{"10.32.5.2/24"}, Via: api.ViaPlugin, Network: "net1"}
	for _, tc := range []struct {
		name string
		args []string
		want []api.Container
		err  error
	}{
		{"all", nil, []api.Container{weaveDB, pluginDB, pluginWeb}, nil},
		{"by name, both ways", []string{"db"}, []api.Container{weaveDB, pluginDB}, nil},
		{"by name, plugin only", []string{"web"}, []api.Container{pluginWeb}, nil},
		{"by ID, in argument order", []string{webID[:12], dbID}, []api.Container{pluginWeb, weaveDB, pluginDB}, nil},
		{"on neither", []string{"web", "other"}, nil, router.ErrNotAttached},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := n.PS(ctx, tc.args)
			if tc.err != nil {
				if !errors.Is(err, tc.err) {
					t.Fatalf("ps %v = %+v, %v; want %v", tc.args, got, err, tc.err)
				}
				return
			}
			if err != nil || fmt.Sprint(got) != fmt.Sprint(tc.want) {
				t.Fatalf("ps %v = %+v, %v\nwant %+v", tc.args, got, err, tc.want)
			}
		})
	}

	// The JSON of weave's own entries is as before; the plugin's say so.
	b, _ := json.Marshal([]api.Container{weaveDB, pluginWeb})
	if want := `[{"id":"` + dbID + `","mac":"0a:58:00:00:00:01","addrs":["10.40.0.1/24"]},{"id":"` + webID + `","mac":"` + pluginWeb.MAC + `","addrs":["10.32.5.2/24"],"via":"plugin","network":"net1"}]`; string(b) != want {
		t.Errorf("JSON %s\nwant %s", b, want)
	}

	// An Engine that does not answer leaves the plugin's entries out, not
	// weave's.
	nets.mu.Lock()
	nets.down = true
	nets.mu.Unlock()
	if got, err := n.PS(ctx, nil); err != nil || fmt.Sprint(got) != fmt.Sprint([]api.Container{weaveDB}) {
		t.Errorf("ps with the Engine down = %+v, %v; want db's weave entry", got, err)
	}
	nets.mu.Lock()
	nets.down = false
	nets.mu.Unlock()

	// web leaves its network (docker rm -f): gone from ps.
	pluginCall(t, srv, "NetworkDriver.Leave", map[string]any{"NetworkID": "net1id", "EndpointID": "ep-web"})
	pluginCall(t, srv, "NetworkDriver.DeleteEndpoint", map[string]any{"NetworkID": "net1id", "EndpointID": "ep-web"})
	if got, err := n.PS(ctx, nil); err != nil || fmt.Sprint(got) != fmt.Sprint([]api.Container{weaveDB, pluginDB}) {
		t.Errorf("ps after web left = %+v, %v", got, err)
	}
	if _, err := n.PS(ctx, []string{"web"}); !errors.Is(err, router.ErrNotAttached) {
		t.Errorf("ps web after it left = %v, want ErrNotAttached", err)
	}
}
