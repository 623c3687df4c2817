package plugin_test

import (
	"net/netip"
	"slices"
	"testing"

	"github.com/weavelab/weave/router/plugin"
)

// TestJoined: only endpoints joined to a container are listed, each with
// its address, MAC and sandbox, in network and endpoint order; a Leave
// takes one off the list and a Join puts it back.
func TestJoined(t *testing.T) {
	r := newRig(t, "")
	for _, nw := range []struct{ id, subnet string }{{"net2", "10.40.2.0/24"}, {"net1", "10.40.1.0/24"}} {
		poolID := r.createNetwork(nw.id, nw.subnet)
		for _, ep := range []string{"ep-b", "ep-a", "ep-idle"} {
			addr := r.must("IpamDriver.RequestAddress", m{"PoolID": poolID})["Address"].(string)
			r.must("NetworkDriver.CreateEndpoint", m{"NetworkID": nw.id, "EndpointID": nw.id + "/" + ep, "Interface": m{"Address": addr}})
			if ep != "ep-idle" {
				r.must("NetworkDriver.Join", m{"NetworkID": nw.id, "EndpointID": nw.id + "/" + ep, "SandboxKey": "/var/run/docker/netns/" + nw.id + ep})
			}
		}
	}
	ids := func(eps []plugin.Endpoint) []string {
		var out []string
		for _, ep := range eps {
			out = append(out, ep.EndpointID)
		}
		return out
	}

	got := r.srv.Joined()
	if want := []string{"net1/ep-a", "net1/ep-b", "net2/ep-a", "net2/ep-b"}; !slices.Equal(ids(got), want) {
		t.Fatalf("Joined = %v, want %v (no idle endpoint, sorted)", ids(got), want)
	}
	for _, ep := range got {
		if ep.Sandbox != "/var/run/docker/netns/"+ep.NetworkID+ep.EndpointID[len(ep.NetworkID)+1:] {
			t.Errorf("%s: sandbox %q", ep.EndpointID, ep.Sandbox)
		}
		if !ep.Addr.IsValid() || ep.MAC.String() != plugin.MACFor(ep.Addr.Addr()).String() {
			t.Errorf("%s: addr %s, MAC %s", ep.EndpointID, ep.Addr, ep.MAC)
		}
		if !netip.MustParsePrefix("10.40.0.0/16").Contains(ep.Addr.Addr()) || ep.Addr.Bits() != 24 {
			t.Errorf("%s: addr %s, want one of its network's /24", ep.EndpointID, ep.Addr)
		}
	}
	// The copies are the caller's.
	got[0].MAC[0] ^= 0xff
	if again := r.srv.Joined(); again[0].MAC.String() == got[0].MAC.String() {
		t.Error("changing Joined's result changed the server's endpoint")
	}

	r.must("NetworkDriver.Leave", m{"NetworkID": "net1", "EndpointID": "net1/ep-a"})
	if got, want := ids(r.srv.Joined()), []string{"net1/ep-b", "net2/ep-a", "net2/ep-b"}; !slices.Equal(got, want) {
		t.Errorf("Joined after Leave = %v, want %v", got, want)
	}
	r.must("NetworkDriver.DeleteEndpoint", m{"NetworkID": "net1", "EndpointID": "net1/ep-a"})
	r.must("NetworkDriver.Join", m{"NetworkID": "net1", "EndpointID": "net1/ep-idle", "SandboxKey": "/x"})
	if got, want := ids(r.srv.Joined()), []string{"net1/ep-b", "net1/ep-idle", "net2/ep-a", "net2/ep-b"}; !slices.Equal(got, want) {
		t.Errorf("Joined after joining the idle endpoint = %v, want %v", got, want)
	}
	if n := len(r.srv.Endpoints()); n != 5 {
		t.Errorf("Joined changed the endpoints: %d, want 5", n)
	}
}
