package plugin_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/weavelab/weave/router/plugin"
	"github.com/weavelab/weave/router/plugin/plugintest"
)

// restart starts another Server on r's state file, IPAM and links (as a
// relaunched router finds them), asking eng; tune, if set, changes its
// config first.
func (r *rig) restart(eng plugin.Engine, tune func(*plugin.Config)) *rig {
	r.t.Helper()
	r2 := &rig{t: r.t, ipam: r.ipam, links: r.links, obs: &observer{}, cfg: r.cfg}
	r2.cfg.Dir = r.t.TempDir()
	r2.cfg.Observer = r2.obs
	r2.cfg.Engine = eng
	r2.cfg.EngineRetry, r2.cfg.EngineRetryMax = time.Millisecond, 5*time.Millisecond
	if tune != nil {
		tune(&r2.cfg)
	}
	r2.start()
	return r2
}

// endpoint runs the Engine's calls for a container on network nw: an
// address, the endpoint and, if join, the join. It returns the address.
func (r *rig) endpoint(poolID, nw, id string, join bool) string {
	r.t.Helper()
	addr := r.must("IpamDriver.RequestAddress", m{"PoolID": poolID})["Address"].(string)
	r.must("NetworkDriver.CreateEndpoint", m{"NetworkID": nw, "EndpointID": id, "Interface": m{"Address": addr}})
	if join {
		r.must("NetworkDriver.Join", m{"NetworkID": nw, "EndpointID": id, "SandboxKey": "/var/run/docker/netns/" + id})
	}
	return addr
}

// endpointIDs returns the Server's endpoint IDs, sorted.
func endpointIDs(s *plugin.Server) []string {
	var out []string
	for _, ep := range s.Endpoints() {
		out = append(out, ep.EndpointID)
	}
	slices.Sort(out)
	return out
}

func networkIDs(s *plugin.Server) []string {
	var out []string
	for _, n := range s.Networks() {
		out = append(out, n.ID)
	}
	return out
}

// waitFor polls cond until it holds, failing the test after 10 s.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

func (o *observer) leftIDs() []string {
	o.mu.Lock()
	defer o.mu.Unlock()
	var out []string
	for _, ep := range o.left {
		out = append(out, ep.EndpointID)
	}
	slices.Sort(out)
	return out
}

// addrsOf returns the addresses (without prefix length) of the given
// CIDRs, sorted.
func addrsOf(cidrs ...string) []netip.Addr {
	var out []netip.Addr
	for _, c := range cidrs {
		out = append(out, netip.MustParsePrefix(c).Addr())
	}
	slices.SortFunc(out, func(a, b netip.Addr) int { return a.Compare(b) })
	return out
}

// forgetAllocIDs rewrites a state file as a router from before
// Endpoint.AllocID wrote it.
func forgetAllocIDs(t testing.TB, state string) {
	t.Helper()
	b, err := os.ReadFile(state)
	if err != nil {
		t.Fatal(err)
	}
	var st map[string][]map[string]any
	if err := json.Unmarshal(b, &st); err != nil {
		t.Fatal(err)
	}
	for _, ep := range st["endpoints"] {
		if _, ok := ep["alloc"]; !ok {
			t.Fatalf("state file endpoint without an alloc id: %v", ep)
		}
		delete(ep, "alloc")
	}
	if b, err = json.Marshal(st); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(state, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestRestartDropsWhatDockerLacks: a restarted Server drops the endpoints
// and networks of its state file that the Engine positively no longer has
// (removed while the router was down), with their veths, addresses and
// names, and keeps the rest: endpoints the Engine lists, joined or not,
// and networks it has, with or without endpoints.
func TestRestartDropsWhatDockerLacks(t *testing.T) {
	for _, legacy := range []bool{false, true} {
		t.Run(fmt.Sprintf("legacy=%v", legacy), func(t *testing.T) {
			state := filepath.Join(t.TempDir(), "plugin.json")
			r := newRig(t, state)
			pool1 := r.createNetwork("net1", "10.40.1.0/24")
			pool2 := r.createNetwork("net2", "10.40.2.0/24")
			r.createNetwork("net3", "10.40.3.0/24")
			kept1 := r.endpoint(pool1, "net1", "ep1", true)  // joined, Docker has it
			r.endpoint(pool1, "net1", "ep2", true)           // joined, removed
			kept3 := r.endpoint(pool1, "net1", "ep3", false) // created, not joined: Docker lists it too
			r.endpoint(pool1, "net1", "ep5", false)          // created, then lost
			r.endpoint(pool2, "net2", "ep4", true)           // on a removed network
			if legacy {
				forgetAllocIDs(t, state)
			}

			eng := plugintest.NewEngine()
			eng.SetNetwork("net1", "ep1", "ep3", "ep-of-another-driver")
			eng.SetNetwork("net3")
			r2 := r.restart(eng, nil)
			waitFor(t, "the gone endpoints to be dropped", func() bool {
				return slices.Equal(endpointIDs(r2.srv), []string{"ep1", "ep3"}) && len(r2.obs.leftIDs()) == 2 && len(r.ipam.Allocated()) == 2
			})
			if got := networkIDs(r2.srv); !slices.Equal(got, []string{"net1", "net3"}) {
				t.Errorf("networks = %v, want net1 and net3 (net2 is gone from docker)", got)
			}
			for id, want := range map[string]bool{"ep1": true, "ep2": false, "ep3": true, "ep4": false, "ep5": false} {
				if got := r.links.Has(id); got != want {
					t.Errorf("veth of %s exists = %v, want %v", id, got, want)
				}
			}
			if got, want := r.ipam.Allocated(), addrsOf(kept1, kept3); !slices.Equal(got, want) {
				t.Errorf("IPAM holds %v, want %v (the kept endpoints')", got, want)
			}
			if got := r2.obs.leftIDs(); !slices.Equal(got, []string{"ep2", "ep4"}) {
				t.Errorf("observer told of leaving: %v, want ep2 and ep4 (the joined ones that went)", got)
			}

			// What was dropped stays dropped; what is kept still works.
			r3 := r2.restart(nil, nil)
			if got := endpointIDs(r3.srv); !slices.Equal(got, []string{"ep1", "ep3"}) {
				t.Errorf("endpoints in the state file = %v, want ep1 and ep3", got)
			}
			r3.must("NetworkDriver.Join", m{"NetworkID": "net1", "EndpointID": "ep3", "SandboxKey": "/x"})
			r3.must("NetworkDriver.DeleteNetwork", m{"NetworkID": "net3"})
		})
	}
}

// syncBuffer is a log sink for a slog handler on several goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// TestRestartKeepsAllWhileDockerFails: an Engine that does not answer
// drops nothing; it is asked again until it answers, and only a bounded
// time.
func TestRestartKeepsAllWhileDockerFails(t *testing.T) {
	setup := func(t *testing.T) (*rig, []string) {
		state := filepath.Join(t.TempDir(), "plugin.json")
		r := newRig(t, state)
		pool := r.createNetwork("net1", "10.40.1.0/24")
		a1 := r.endpoint(pool, "net1", "ep1", true)
		a2 := r.endpoint(pool, "net1", "ep2", true)
		return r, []string{a1, a2}
	}
	t.Run("never answers", func(t *testing.T) {
		r, addrs := setup(t)
		eng := plugintest.NewEngine() // knows no network: a drop would follow any answer
		eng.Fail(-1)
		var logs syncBuffer
		r2 := r.restart(eng, func(c *plugin.Config) {
			c.EngineRetryFor = 30 * time.Millisecond
			c.Logger = slog.New(slog.NewTextHandler(&logs, nil))
		})
		waitFor(t, "the check to give up", func() bool { return strings.Contains(logs.String(), "keeping them") })
		calls := eng.Calls()
		if calls < 2 {
			t.Errorf("docker was asked %d times, want retries", calls)
		}
		if got := endpointIDs(r2.srv); !slices.Equal(got, []string{"ep1", "ep2"}) {
			t.Errorf("endpoints = %v, want both kept", got)
		}
		if got := networkIDs(r2.srv); !slices.Equal(got, []string{"net1"}) {
			t.Errorf("networks = %v, want net1 kept", got)
		}
		if got := r.ipam.Allocated(); !slices.Equal(got, addrsOf(addrs...)) {
			t.Errorf("IPAM holds %v, want %v", got, addrs)
		}
		if r.links.Count() != 2 || len(r2.obs.leftIDs()) != 0 {
			t.Errorf("%d veths, left %v: want 2 and none", r.links.Count(), r2.obs.leftIDs())
		}
		r2.srv.Close()
		if got := eng.Calls(); got != calls {
			t.Errorf("docker was asked %d times after the check gave up", got-calls)
		}
	})
	t.Run("answers later", func(t *testing.T) {
		r, addrs := setup(t)
		eng := plugintest.NewEngine()
		eng.SetNetwork("net1", "ep1")
		eng.Fail(3)
		r2 := r.restart(eng, nil)
		waitFor(t, "ep2 to be dropped", func() bool { return len(r2.obs.leftIDs()) == 1 })
		if got := eng.Calls(); got != 4 {
			t.Errorf("docker was asked %d times, want 4 (3 failures, 1 answer)", got)
		}
		if got := endpointIDs(r2.srv); !slices.Equal(got, []string{"ep1"}) {
			t.Errorf("endpoints = %v, want ep1", got)
		}
		waitFor(t, "ep2's address to be released", func() bool { return slices.Equal(r.ipam.Allocated(), addrsOf(addrs[0])) })
	})
}

// TestCheckRacesWithEngineCalls: the Engine's calls that run while the
// check waits for the Engine's answer (which was made before them), or
// while it drops an endpoint, are not undone by it: an endpoint created
// meanwhile is kept, and the address of a gone endpoint that the Engine
// released meanwhile and IPAM gave to another container stays that
// container's.
func TestCheckRacesWithEngineCalls(t *testing.T) {
	state := filepath.Join(t.TempDir(), "plugin.json")
	r := newRig(t, state)
	pool := r.createNetwork("net1", "10.40.1.0/24")
	old := r.endpoint(pool, "net1", "old", true)
	gone := r.endpoint(pool, "net1", "gone", true)
	released := r.endpoint(pool, "net1", "released", true)

	eng := plugintest.NewEngine()
	eng.SetNetwork("net1", "old")
	ready := make(chan struct{})
	var r2 *rig
	var newAddr, reused string
	eng.Answered = func(string) {
		<-ready
		// The Engine creates and joins a new container's endpoint (it
		// records it only after the answer was made) ...
		newAddr = r2.endpoint(pool, "net1", "new", true)
		// ... and deletes "released" on its own, whose address goes to
		// another container at once.
		r2.must("NetworkDriver.Leave", m{"NetworkID": "net1", "EndpointID": "released"})
		r2.must("NetworkDriver.DeleteEndpoint", m{"NetworkID": "net1", "EndpointID": "released"})
		r2.must("IpamDriver.ReleaseAddress", m{"PoolID": pool, "Address": released})
		reused = r2.must("IpamDriver.RequestAddress", m{"PoolID": pool})["Address"].(string)
	}
	// While the check drops gone (its record removed, its address not yet
	// released), the Engine releases gone's address itself and it goes to
	// another container at once.
	var reusedGone string
	r.links.Deleted = func(id string) {
		if id != "gone" {
			return
		}
		r2.must("IpamDriver.ReleaseAddress", m{"PoolID": pool, "Address": gone})
		reusedGone = r2.must("IpamDriver.RequestAddress", m{"PoolID": pool})["Address"].(string)
	}
	r2 = r.restart(eng, nil)
	close(ready)
	waitFor(t, "gone to be dropped", func() bool { return slices.Equal(r2.obs.leftIDs(), []string{"gone", "released"}) })
	r2.srv.Close()
	if got := endpointIDs(r2.srv); !slices.Equal(got, []string{"new", "old"}) {
		t.Errorf("endpoints = %v, want new and old", got)
	}
	if reused != released || reusedGone != gone {
		t.Fatalf("the fake IPAM gave %s and %s, not the released %s and %s: the test checks nothing", reused, reusedGone, released, gone)
	}
	if got := r.ipam.Allocated(); !slices.Equal(got, addrsOf(old, gone, released, newAddr)) {
		t.Errorf("IPAM holds %v: want old's, new's and the reused addresses of gone and released", got)
	}
	if !r.links.Has("new") || r.links.Has("gone") {
		t.Errorf("veths: new %v, gone %v; want new's only", r.links.Has("new"), r.links.Has("gone"))
	}
}

// TestCheckWithConcurrentCreates runs the check while the Engine creates
// and joins endpoints on many goroutines (for -race): none of them is
// dropped, though every answer lacks them.
func TestCheckWithConcurrentCreates(t *testing.T) {
	state := filepath.Join(t.TempDir(), "plugin.json")
	r := newRig(t, state)
	pool := r.createNetwork("net1", "10.40.1.0/24")
	for i := range 8 {
		r.endpoint(pool, "net1", fmt.Sprintf("gone%d", i), i%2 == 0)
	}
	eng := plugintest.NewEngine()
	eng.SetNetwork("net1")
	eng.Fail(2) // a few rounds, so that creates interleave with them
	r2 := r.restart(eng, nil)
	var wg sync.WaitGroup
	const n = 16
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			id := fmt.Sprintf("new%02d", i)
			a, e := r2.call("IpamDriver.RequestAddress", m{"PoolID": pool})
			if e != "" {
				t.Errorf("request address: %s", e)
				return
			}
			if _, e := r2.call("NetworkDriver.CreateEndpoint", m{"NetworkID": "net1", "EndpointID": id, "Interface": m{"Address": a["Address"]}}); e != "" {
				t.Errorf("create endpoint %s: %s", id, e)
				return
			}
			if _, e := r2.call("NetworkDriver.Join", m{"NetworkID": "net1", "EndpointID": id, "SandboxKey": "/x/" + id}); e != "" {
				t.Errorf("join %s: %s", id, e)
			}
		}()
	}
	wg.Wait()
	waitFor(t, "the gone endpoints to be dropped", func() bool { return len(r2.obs.leftIDs()) == 4 && r.links.Count() == n })
	r2.srv.Close()
	got := endpointIDs(r2.srv)
	if len(got) != n || !strings.HasPrefix(got[0], "new") {
		t.Errorf("endpoints = %v, want the %d new ones", got, n)
	}
	if a := r.ipam.Allocated(); len(a) != n {
		t.Errorf("IPAM holds %d addresses, want %d", len(a), n)
	}
}

// TestDeleteAfterLostLeave: the Engine's Leave was lost (the router was
// down) and its DeleteEndpoint comes through: the Observer hears of the
// leave then, once.
func TestDeleteAfterLostLeave(t *testing.T) {
	r := newRig(t, "")
	pool := r.createNetwork("net1", "10.40.1.0/24")
	r.endpoint(pool, "net1", "ep1", true)
	r.endpoint(pool, "net1", "ep2", true)
	r.must("NetworkDriver.Leave", m{"NetworkID": "net1", "EndpointID": "ep2"})
	for _, id := range []string{"ep1", "ep2"} {
		r.must("NetworkDriver.DeleteEndpoint", m{"NetworkID": "net1", "EndpointID": id})
	}
	if got := r.obs.leftIDs(); !slices.Equal(got, []string{"ep1", "ep2"}) {
		t.Errorf("observer told of leaving: %v, want ep1 (at its delete) and ep2 (at its leave), once each", got)
	}
}
