package daemon

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/weavelab/weave/dns/table"
	"github.com/weavelab/weave/mesh/identity"
	"github.com/weavelab/weave/router/docker"
	"github.com/weavelab/weave/router/plugin"
	"github.com/weavelab/weave/router/plugin/plugintest"
)

// fakeDNS is weaveDNS's name table without its server and replication.
type fakeDNS struct{ *table.Table }

var _ dnsPart = fakeDNS{}

func newFakeDNS(t *testing.T) fakeDNS {
	t.Helper()
	cfg := table.DefaultConfig()
	cfg.Self = identity.PeerName(0x0a0000000001)
	tab, err := table.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return fakeDNS{tab}
}

func (fakeDNS) Domain() string            { return "weave.local." }
func (fakeDNS) Address() netip.AddrPort   { return netip.MustParseAddrPort("169.254.53.53:53") }
func (fakeDNS) Upstreams() []string       { return nil }
func (fakeDNS) InDomain(fqdn string) bool { return strings.HasSuffix(fqdn, ".weave.local.") }
func (fakeDNS) Stats() any                { return nil }
func (f fakeDNS) Entries() []table.Entry  { return f.Live() }
func (f fakeDNS) Add(container, fqdn string, ips []netip.Addr) ([]table.Entry, error) {
	return f.Table.Add(container, fqdn, ips...)
}
func (f fakeDNS) Remove(m table.Match) ([]table.Entry, error) { return f.Table.Remove(time.Now(), m) }
func (f fakeDNS) RemoveContainer(container string) []string {
	return table.NamesOf(f.Table.RemoveContainer(time.Now(), container))
}

// names returns the live names, sorted.
func (f fakeDNS) names() []string {
	var out []string
	for _, e := range f.Live() {
		out = append(out, strings.TrimSuffix(e.Name, "."))
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// TestDNSForgetDeadKeepsPluginContainers: at start, weaveDNS forgets the
// names of weave's containers that went while the router was down, but
// not those of the containers that the plugin's state file says are
// joined (the plugin registers them again a moment later), nor names
// added by hand.
func TestDNSForgetDeadKeepsPluginContainers(t *testing.T) {
	ids := map[string]string{}
	for _, name := range []string{"weavelive", "weavedead", "plugindb", "pluginweb", "pluginidle"} {
		ids[name] = fmt.Sprintf("%-64s", name)
		ids[name] = strings.ReplaceAll(ids[name], " ", "0")
	}
	setup := func(t *testing.T) (*node, fakeDNS) {
		n, _, _ := newTestNode(t)
		dns := newFakeDNS(t)
		n.dns = dns
		n.net.(*fakeNet).attached[ids["weavelive"]] = []netip.Prefix{netip.MustParsePrefix("10.32.0.1/12")}
		for name, addr := range map[string]string{
			"weavelive": "10.32.0.1", "weavedead": "10.32.0.2",
			"plugindb": "10.32.5.3", "pluginweb": "10.32.5.2", "pluginidle": "10.32.5.4",
		} {
			if _, err := dns.Add(ids[name], name+".weave.local.", []netip.Addr{netip.MustParseAddr(addr)}); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := dns.Add(table.ContainerExtern, "ext.weave.local.", []netip.Addr{netip.MustParseAddr("10.32.9.9")}); err != nil {
			t.Fatal(err)
		}
		return n, dns
	}
	// The plugin: db and web joined, idle's endpoint created only.
	cfg := plugin.DefaultConfig()
	cfg.Dir = t.TempDir()
	cfg.Links = plugintest.NewLinks()
	srv, err := plugin.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	pluginCall(t, srv, "NetworkDriver.CreateNetwork", map[string]any{"NetworkID": "net1id",
		"IPv4Data": []map[string]any{{"AddressSpace": plugin.LocalAddressSpace, "Pool": "10.32.5.0/24"}}})
	for id, addr := range map[string]string{"ep-db": "10.32.5.3/24", "ep-web": "10.32.5.2/24", "ep-idle": "10.32.5.4/24"} {
		pluginCall(t, srv, "NetworkDriver.CreateEndpoint", map[string]any{"NetworkID": "net1id", "EndpointID": id, "Interface": map[string]any{"Address": addr}})
		if id != "ep-idle" {
			pluginCall(t, srv, "NetworkDriver.Join", map[string]any{"NetworkID": "net1id", "EndpointID": id, "SandboxKey": "/x/" + id})
		}
	}

	for _, tc := range []struct {
		name string
		psrv *plugin.Server
		want []string
	}{
		{"with the plugin", srv, []string{"ext.weave.local", "plugindb.weave.local", "pluginweb.weave.local", "weavelive.weave.local"}},
		{"without a plugin", nil, []string{"ext.weave.local", "weavelive.weave.local"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n, dns := setup(t)
			n.dnsForgetDead(context.Background(), tc.psrv)
			if got := dns.names(); !slices.Equal(got, tc.want) {
				t.Errorf("names left: %v\nwant %v", got, tc.want)
			}
		})
	}
}

// TestPluginEngine: the plugin hears of every endpoint the Engine has on
// a network, joined or not; the Engine's not-found is the plugin's
// ErrNoNetwork, and nothing else is.
func TestPluginEngine(t *testing.T) {
	nets := &fakeNets{nets: map[string]docker.NetworkEndpoints{"net1id": {
		Name: "net1", Containers: map[string]string{"ep-web": webID}, All: map[string]bool{"ep-web": true, "ep-idle": true},
	}}}
	e := pluginEngine{nets}
	ctx := context.Background()
	got, err := e.NetworkEndpoints(ctx, "net1id")
	if err != nil || len(got) != 2 || !got["ep-web"] || !got["ep-idle"] {
		t.Errorf("NetworkEndpoints(net1id) = %v, %v; want ep-web and ep-idle", got, err)
	}
	if _, err := e.NetworkEndpoints(ctx, "gone"); !errors.Is(err, plugin.ErrNoNetwork) {
		t.Errorf("NetworkEndpoints(gone) = %v, want ErrNoNetwork", err)
	}
	nets.down = true
	if _, err := e.NetworkEndpoints(ctx, "gone"); err == nil || errors.Is(err, plugin.ErrNoNetwork) {
		t.Errorf("NetworkEndpoints with the Engine down = %v, want an error that is not ErrNoNetwork", err)
	}
}
