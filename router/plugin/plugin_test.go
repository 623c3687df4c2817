package plugin_test

import (
	"bytes"
	"context"
	"encoding/json"
	"net"
	"net/http"
	"net/netip"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/weavelab/weave/router/plugin"
	"github.com/weavelab/weave/router/plugin/plugintest"
)

var testRange = netip.MustParsePrefix("10.32.0.0/12")

// observer records the joins and leaves it is told of.
type observer struct {
	mu     sync.Mutex
	joined []plugin.Endpoint
	left   []plugin.Endpoint
	// notify, if set, gets each joined endpoint too.
	notify chan plugin.Endpoint
}

func (o *observer) Joined(ctx context.Context, ep plugin.Endpoint) {
	o.mu.Lock()
	o.joined = append(o.joined, ep)
	o.mu.Unlock()
	if o.notify != nil {
		o.notify <- ep
	}
}

func (o *observer) Left(ep plugin.Endpoint) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.left = append(o.left, ep)
}

// rig is a Server on a Unix socket in a temp dir, with fakes, and an HTTP
// client that talks to it as the Engine does.
type rig struct {
	t      testing.TB
	srv    *plugin.Server
	ipam   *plugintest.IPAM
	links  *plugintest.Links
	obs    *observer
	client *http.Client
	cfg    plugin.Config
}

func newRig(t testing.TB, state string) *rig {
	t.Helper()
	r := &rig{t: t, ipam: plugintest.NewIPAM(testRange), links: plugintest.NewLinks(), obs: &observer{}}
	r.cfg = plugin.DefaultConfig()
	r.cfg.Name = "weave-test"
	r.cfg.Dir = t.TempDir()
	r.cfg.IPAM, r.cfg.Links, r.cfg.Observer = r.ipam, r.links, r.obs
	r.cfg.ServiceAddr = netip.MustParseAddr("169.254.53.53")
	r.cfg.StateFile = state
	r.start()
	return r
}

func (r *rig) start() {
	t := r.t
	t.Helper()
	srv, err := plugin.New(r.cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Listen(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx) }()
	tr := &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "unix", srv.SocketPath())
	}}
	r.srv, r.client = srv, &http.Client{Transport: tr}
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
		tr.CloseIdleConnections()
	})
}

// call posts req to /method and decodes the answer into a map; errMsg is
// its Err.
func (r *rig) call(method string, req any) (resp map[string]any, errMsg string) {
	r.t.Helper()
	var body []byte
	switch v := req.(type) {
	case string:
		body = []byte(v)
	default:
		var err error
		if body, err = json.Marshal(req); err != nil {
			r.t.Fatal(err)
		}
	}
	hr, err := r.client.Post("http://plugin/"+method, "application/vnd.docker.plugins.v1+json", bytes.NewReader(body))
	if err != nil {
		r.t.Fatalf("%s: %v", method, err)
	}
	defer hr.Body.Close()
	if err := json.NewDecoder(hr.Body).Decode(&resp); err != nil {
		r.t.Fatalf("%s: decode answer: %v", method, err)
	}
	e, _ := resp["Err"].(string)
	if e2, _ := resp["Error"].(string); e2 != e {
		r.t.Errorf("%s: Err %q but Error %q: the IPAM API reads Error", method, e, e2)
	}
	return resp, e
}

// must is call that fails the test on an Err.
func (r *rig) must(method string, req any) map[string]any {
	r.t.Helper()
	resp, e := r.call(method, req)
	if e != "" {
		r.t.Fatalf("%s: %s", method, e)
	}
	return resp
}

type m = map[string]any

func TestActivateAndCapabilities(t *testing.T) {
	r := newRig(t, "")
	resp := r.must("Plugin.Activate", "")
	if got := resp["Implements"]; !slices.Equal(toStrings(got), []string{"NetworkDriver", "IpamDriver"}) {
		t.Errorf("Implements = %v", got)
	}
	if got := r.must("NetworkDriver.GetCapabilities", m{}); got["Scope"] != "local" {
		t.Errorf("Scope = %v, want local", got["Scope"])
	}
	spaces := r.must("IpamDriver.GetDefaultAddressSpaces", m{})
	if spaces["LocalDefaultAddressSpace"] != plugin.LocalAddressSpace || spaces["GlobalDefaultAddressSpace"] != plugin.GlobalAddressSpace {
		t.Errorf("address spaces = %v", spaces)
	}
	for _, method := range []string{"DiscoverNew", "DiscoverDelete", "ProgramExternalConnectivity", "RevokeExternalConnectivity", "AllocateNetwork", "FreeNetwork"} {
		r.must("NetworkDriver."+method, m{})
	}
	if got := filepath.Base(r.srv.SocketPath()); got != "weave-test.sock" {
		t.Errorf("socket = %s", got)
	}
}

func toStrings(v any) []string {
	var out []string
	for _, s := range v.([]any) {
		out = append(out, s.(string))
	}
	return out
}

// createNetwork runs the Engine's calls for docker network create
// --subnet subnet, returning the network's pool ID.
func (r *rig) createNetwork(id, subnet string) string {
	r.t.Helper()
	pool := r.must("IpamDriver.RequestPool", m{"AddressSpace": plugin.LocalAddressSpace, "Pool": subnet})
	gw := r.must("IpamDriver.RequestAddress", m{"PoolID": pool["PoolID"], "Options": m{"RequestAddressType": "com.docker.network.gateway"}})
	r.must("NetworkDriver.CreateNetwork", m{"NetworkID": id, "Options": m{"com.docker.network.generic": m{}},
		"IPv4Data": []m{{"AddressSpace": plugin.LocalAddressSpace, "Pool": pool["Pool"], "Gateway": gw["Address"]}}})
	return pool["PoolID"].(string)
}

func TestNetworkLifecycle(t *testing.T) {
	r := newRig(t, "")
	poolID := r.createNetwork("net1", "10.40.1.0/24")
	if n := len(r.ipam.Allocated()); n != 0 {
		t.Errorf("network creation allocated %d addresses, want 0 (the gateway is no allocation)", n)
	}

	// Two containers get two addresses (one IPAM id each).
	var addrs []string
	for range 2 {
		a := r.must("IpamDriver.RequestAddress", m{"PoolID": poolID})["Address"].(string)
		addrs = append(addrs, a)
	}
	if addrs[0] == addrs[1] || !strings.HasSuffix(addrs[0], "/24") {
		t.Fatalf("addresses %v: want two distinct /24s", addrs)
	}
	ep := r.must("NetworkDriver.CreateEndpoint", m{"NetworkID": "net1", "EndpointID": "ep1", "Interface": m{"Address": addrs[0]}})
	mac, _ := ep["Interface"].(map[string]any)["MacAddress"].(string)
	if want := plugin.MACFor(netip.MustParsePrefix(addrs[0]).Addr()).String(); mac != want {
		t.Errorf("CreateEndpoint MAC %q, want %s (derived from the address)", mac, want)
	}
	join := r.must("NetworkDriver.Join", m{"NetworkID": "net1", "EndpointID": "ep1", "SandboxKey": "/var/run/docker/netns/x"})
	iface := join["InterfaceName"].(map[string]any)
	if iface["DstPrefix"] != plugin.IfPrefix || iface["SrcName"] == "" {
		t.Errorf("InterfaceName = %v", iface)
	}
	if gw, ok := join["Gateway"]; ok && gw != "" {
		t.Errorf("Gateway = %v, want none", gw)
	}
	routes, _ := join["StaticRoutes"].([]any)
	if len(routes) != 1 || routes[0].(map[string]any)["Destination"] != "169.254.53.53/32" {
		t.Errorf("StaticRoutes = %v, want the service address", routes)
	}
	if eps := r.srv.Endpoints(); len(eps) != 1 || eps[0].Sandbox == "" {
		t.Errorf("Endpoints = %+v", eps)
	}
	r.must("NetworkDriver.EndpointOperInfo", m{"NetworkID": "net1", "EndpointID": "ep1"})
	if _, e := r.call("NetworkDriver.DeleteNetwork", m{"NetworkID": "net1"}); e == "" {
		t.Error("DeleteNetwork with an endpoint on it succeeded")
	}

	r.must("NetworkDriver.Leave", m{"NetworkID": "net1", "EndpointID": "ep1"})
	r.must("NetworkDriver.DeleteEndpoint", m{"NetworkID": "net1", "EndpointID": "ep1"})
	r.obs.mu.Lock()
	if len(r.obs.joined) != 1 || len(r.obs.left) != 1 || r.obs.left[0].Addr.String() != addrs[0] {
		t.Errorf("observer: joined %v, left %v", r.obs.joined, r.obs.left)
	}
	r.obs.mu.Unlock()
	if n := r.links.Count(); n != 0 {
		t.Errorf("%d links left after DeleteEndpoint", n)
	}
	for _, a := range addrs {
		r.must("IpamDriver.ReleaseAddress", m{"PoolID": poolID, "Address": strings.TrimSuffix(a, "/24")})
	}
	r.must("IpamDriver.ReleaseAddress", m{"PoolID": poolID, "Address": "10.40.1.0"}) // the gateway
	if got := r.ipam.Allocated(); len(got) != 0 {
		t.Errorf("allocated after release: %v", got)
	}
	r.must("NetworkDriver.DeleteNetwork", m{"NetworkID": "net1"})
	r.must("IpamDriver.ReleasePool", m{"PoolID": poolID})
	if n := r.srv.Networks(); len(n) != 0 {
		t.Errorf("networks left: %v", n)
	}
	// Deleting twice is fine: the Engine retries.
	r.must("NetworkDriver.DeleteNetwork", m{"NetworkID": "net1"})
	r.must("NetworkDriver.DeleteEndpoint", m{"NetworkID": "net1", "EndpointID": "ep1"})
}

func TestStaticAddressAndDefaultPool(t *testing.T) {
	r := newRig(t, "")
	pool := r.must("IpamDriver.RequestPool", m{"AddressSpace": plugin.LocalAddressSpace})
	if pool["Pool"] != testRange.String() {
		t.Errorf("default pool = %v, want %s", pool["Pool"], testRange)
	}
	a := r.must("IpamDriver.RequestAddress", m{"PoolID": pool["PoolID"], "Address": "10.32.0.9"})
	if a["Address"] != "10.32.0.9/12" {
		t.Errorf("static address = %v", a["Address"])
	}
	if _, e := r.call("IpamDriver.RequestAddress", m{"PoolID": pool["PoolID"], "Address": "10.32.0.9"}); e == "" {
		t.Error("the same static address twice succeeded")
	}
	sub := r.must("IpamDriver.RequestPool", m{"AddressSpace": plugin.LocalAddressSpace, "Pool": "10.40.0.0/16", "SubPool": "10.40.7.0/24"})
	got := r.must("IpamDriver.RequestAddress", m{"PoolID": sub["PoolID"]})["Address"].(string)
	if p := netip.MustParsePrefix(got); p.Bits() != 16 || !netip.MustParsePrefix("10.40.7.0/24").Contains(p.Addr()) {
		t.Errorf("address from ip-range = %s, want one of 10.40.7.0/24 with the pool's /16", got)
	}
}

// TestBadInput: every bad call answers Err with one line and changes
// nothing.
func TestBadInput(t *testing.T) {
	r := newRig(t, "")
	poolID := r.createNetwork("net1", "10.40.1.0/24")
	addr := r.must("IpamDriver.RequestAddress", m{"PoolID": poolID})["Address"].(string)
	r.must("NetworkDriver.CreateEndpoint", m{"NetworkID": "net1", "EndpointID": "ep1", "Interface": m{"Address": addr}})
	for _, tc := range []struct {
		name, method string
		req          any
		mention      string
	}{
		{"malformed JSON", "NetworkDriver.CreateNetwork", "{", "malformed"},
		{"driver option", "NetworkDriver.CreateNetwork", m{"NetworkID": "net2", "Options": m{"com.docker.network.generic": m{"foo": "bar"}}, "IPv4Data": []m{{"Pool": "10.40.2.0/24"}}}, `"foo"`},
		{"ipv6 network", "NetworkDriver.CreateNetwork", m{"NetworkID": "net2", "IPv4Data": []m{{"Pool": "10.40.2.0/24"}}, "IPv6Data": []m{{"Pool": "fd00::/64"}}}, "IPv6"},
		{"no subnet", "NetworkDriver.CreateNetwork", m{"NetworkID": "net2"}, "--ipam-driver"},
		{"network twice", "NetworkDriver.CreateNetwork", m{"NetworkID": "net1", "IPv4Data": []m{{"Pool": "10.40.1.0/24"}}}, "exists"},
		{"unknown network", "NetworkDriver.CreateEndpoint", m{"NetworkID": "nope", "EndpointID": "ep2", "Interface": m{"Address": "10.40.1.99/24"}}, "unknown"},
		{"address outside network", "NetworkDriver.CreateEndpoint", m{"NetworkID": "net1", "EndpointID": "ep2", "Interface": m{"Address": "10.40.9.9/24"}}, "outside"},
		{"no address", "NetworkDriver.CreateEndpoint", m{"NetworkID": "net1", "EndpointID": "ep2"}, "no IPv4 address"},
		{"endpoint twice", "NetworkDriver.CreateEndpoint", m{"NetworkID": "net1", "EndpointID": "ep1", "Interface": m{"Address": addr}}, "exists"},
		{"join unknown endpoint", "NetworkDriver.Join", m{"NetworkID": "net1", "EndpointID": "ep9", "SandboxKey": "/x"}, "unknown"},
		{"info unknown endpoint", "NetworkDriver.EndpointOperInfo", m{"NetworkID": "net1", "EndpointID": "ep9"}, "unknown"},
		{"pool outside range", "IpamDriver.RequestPool", m{"AddressSpace": plugin.LocalAddressSpace, "Pool": "192.168.0.0/24"}, "not inside"},
		{"malformed pool", "IpamDriver.RequestPool", m{"AddressSpace": plugin.LocalAddressSpace, "Pool": "10.40.0.0/33"}, "not an IPv4 CIDR"},
		{"ipv6 pool", "IpamDriver.RequestPool", m{"AddressSpace": plugin.LocalAddressSpace, "V6": true}, "IPv6"},
		{"ipam option", "IpamDriver.RequestPool", m{"AddressSpace": plugin.LocalAddressSpace, "Options": m{"x": "y"}}, `"x"`},
		{"foreign address space", "IpamDriver.RequestPool", m{"AddressSpace": "LocalDefault"}, "address space"},
		{"sub-pool outside pool", "IpamDriver.RequestPool", m{"AddressSpace": plugin.LocalAddressSpace, "Pool": "10.40.1.0/24", "SubPool": "10.40.2.0/25"}, "not inside"},
		{"address outside pool", "IpamDriver.RequestAddress", m{"PoolID": poolID, "Address": "10.40.2.1"}, "outside"},
		{"unknown pool", "IpamDriver.RequestAddress", m{"PoolID": "nope"}, "not a weave pool"},
		{"release foreign pool", "IpamDriver.ReleaseAddress", m{"PoolID": "nope", "Address": "10.40.1.1"}, "not a weave pool"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			nets, eps, allocs, links := r.srv.Networks(), r.srv.Endpoints(), r.ipam.Allocated(), r.links.Count()
			_, e := r.call(tc.method, tc.req)
			if e == "" || strings.Contains(e, "\n") || !strings.Contains(e, tc.mention) {
				t.Errorf("Err = %q, want one line mentioning %q", e, tc.mention)
			}
			if !slices.EqualFunc(nets, r.srv.Networks(), func(a, b plugin.Network) bool { return a.ID == b.ID && slices.Equal(a.Pools, b.Pools) }) ||
				len(eps) != len(r.srv.Endpoints()) || !slices.Equal(allocs, r.ipam.Allocated()) || links != r.links.Count() {
				t.Errorf("state changed by a refused call")
			}
		})
	}
}

func TestStateSurvivesRestart(t *testing.T) {
	state := filepath.Join(t.TempDir(), "plugin.json")
	r := newRig(t, state)
	poolID := r.createNetwork("net1", "10.40.1.0/24")
	addr := r.must("IpamDriver.RequestAddress", m{"PoolID": poolID})["Address"].(string)
	r.must("NetworkDriver.CreateEndpoint", m{"NetworkID": "net1", "EndpointID": "ep1", "Interface": m{"Address": addr}})

	r2 := &rig{t: t, ipam: r.ipam, links: r.links, obs: &observer{}, cfg: r.cfg}
	r2.cfg.Dir = t.TempDir()
	r2.cfg.Observer = r2.obs
	r2.start()
	if n := r2.srv.Networks(); len(n) != 1 || n[0].ID != "net1" {
		t.Errorf("networks after restart: %v", n)
	}
	r2.must("NetworkDriver.Join", m{"NetworkID": "net1", "EndpointID": "ep1", "SandboxKey": "/x"})
	r2.must("NetworkDriver.Leave", m{"NetworkID": "net1", "EndpointID": "ep1"})
	r2.must("NetworkDriver.DeleteEndpoint", m{"NetworkID": "net1", "EndpointID": "ep1"})
}

// TestRestartRejoins: a restarted Server tells the Observer again of the
// endpoints that were joined when it stopped (the Engine does not join
// them again), so that their DNS names come back; not of the others.
func TestRestartRejoins(t *testing.T) {
	state := filepath.Join(t.TempDir(), "plugin.json")
	r := newRig(t, state)
	poolID := r.createNetwork("net1", "10.40.1.0/24")
	for _, id := range []string{"ep1", "ep2"} {
		addr := r.must("IpamDriver.RequestAddress", m{"PoolID": poolID})["Address"].(string)
		r.must("NetworkDriver.CreateEndpoint", m{"NetworkID": "net1", "EndpointID": id, "Interface": m{"Address": addr}})
	}
	r.must("NetworkDriver.Join", m{"NetworkID": "net1", "EndpointID": "ep1", "SandboxKey": "/x"})

	r2 := &rig{t: t, ipam: r.ipam, links: r.links, obs: &observer{notify: make(chan plugin.Endpoint, 4)}, cfg: r.cfg}
	r2.cfg.Dir = t.TempDir()
	r2.cfg.Observer = r2.obs
	r2.start()
	select {
	case ep := <-r2.obs.notify:
		if ep.EndpointID != "ep1" || ep.Sandbox != "/x" {
			t.Errorf("rejoined %+v, want ep1 in /x", ep)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the restarted server did not tell the observer of ep1")
	}
	r2.must("NetworkDriver.Leave", m{"NetworkID": "net1", "EndpointID": "ep1"})
	r2.srv.Close() // waits for the observer's goroutines
	r2.obs.mu.Lock()
	defer r2.obs.mu.Unlock()
	if len(r2.obs.joined) != 1 || len(r2.obs.left) != 1 || r2.obs.left[0].EndpointID != "ep1" {
		t.Errorf("observer after restart: joined %+v, left %+v; want ep1 once each", r2.obs.joined, r2.obs.left)
	}
}

func TestListenRefusesALiveSocket(t *testing.T) {
	r := newRig(t, "")
	other, err := plugin.New(r.cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	if err := other.Listen(); err == nil || !strings.Contains(err.Error(), "--plugin-name") {
		t.Errorf("second Listen on one name: %v, want an error naming --plugin-name", err)
	}
	r.must("Plugin.Activate", "") // the first still answers
}

func TestCheckName(t *testing.T) {
	for name, ok := range map[string]bool{"weave": true, "weave-h1": true, "w.e_b": true, "": false, "-x": false, "a/b": false, strings.Repeat("a", 65): false} {
		if err := plugin.CheckName(name); (err == nil) != ok {
			t.Errorf("CheckName(%q) = %v, want ok=%v", name, err, ok)
		}
	}
}
