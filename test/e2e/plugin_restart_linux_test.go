package e2e

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/weavelab/weave/router/api"
	"github.com/weavelab/weave/test/harness"
)

// TestPluginRouterRestart restarts the router of a host whose containers
// joined a weave network through the Docker plugin, once with weave stop
// and once with SIGKILL, and checks what a user expects to survive: the
// containers keep their addresses and reach each other across hosts, by
// address and by name; IPAM keeps their addresses; new containers join;
// Docker's calls made while the router is down fail with an error; a
// container removed (docker rm -f) while the router is down, whose Leave
// and DeleteEndpoint the Engine could not make, is released by the
// relaunched router: its address, names, ps line and veth go; and
// disconnect and docker rm -f release addresses and names as before.
func TestPluginRouterRestart(t *testing.T) {
	// Mostly waiting for Docker's retries while a router is down, on
	// engines of its own: it runs beside the others.
	t.Parallel()
	start := time.Now()
	l := harness.New(t)
	img := harness.DockerImage(t)
	h1 := newPluginHost(t, l, "h1", img)
	h2 := newPluginHost(t, l, "h2", img)

	// h1 dials h2, so that a relaunched h1 connects at once instead of
	// waiting for h2's next attempt.
	h2.Launch("--plugin-name", h2.plugin, "--no-default-network")
	launch1 := []string{"--plugin-name", h1.plugin, h2.IP}
	h1.Launch(launch1...)
	waitPluginMesh(t, h1)
	for _, h := range []*pluginHost{h1, h2} {
		h.d.MustDocker("network", "create", "-d", h.plugin, "--ipam-driver", h.plugin, "--subnet", pluginSubnet, "net1")
	}
	base1 := h1.allocated(t)

	// db and cache on h1, web on h2, which asks weaveDNS.
	h1.d.MustDocker("run", "-d", "--net", "net1", "--name", "db", img, "db")
	h1.d.MustDocker("run", "-d", "--net", "net1", "--name", "cache",
		"--dns", "169.254.53.53", "--dns-search", "weave.local", img, "db")
	h2.d.MustDocker("run", "-d", "--net", "net1", "--name", "web",
		"--dns", "169.254.53.53", "--dns-search", "weave.local", img, "sleep")
	dbIP, cacheIP := h1.containerIP(t, "db", "net1"), h1.containerIP(t, "cache", "net1")
	if got := h2.probe(t, "web", "db.weave.local"); !strings.Contains(got, dbIP) {
		t.Fatalf("probe db.weave.local before the restart answered %q, want %s", got, dbIP)
	}
	t.Logf("set up in %s", time.Since(start).Round(time.Millisecond))

	for _, how := range []string{"stop", "kill"} {
		t0 := time.Now()
		// gone is removed while the router is down.
		gone := "gone-" + how
		goneID := h1.d.MustDocker("run", "-d", "--net", "net1", "--name", gone, img, "sleep")
		goneIP := h1.containerIP(t, gone, "net1")
		harness.WaitFor(t, 20*time.Second, func() (bool, string) {
			got := h2.lookup(gone)
			return slices.Equal(got, []string{goneIP}), fmt.Sprintf("before %s: h2: dns-lookup %s = %v, want %s", how, gone, got, goneIP)
		})
		if how == "stop" {
			h1.Stop()
		} else {
			h1.Kill()
		}
		// docker rm -f while the router is down: the Engine removes the
		// container though it cannot make the plugin's calls (Leave,
		// DeleteEndpoint, ReleaseAddress: about 15 s of retries each).
		// It runs alongside docker run below, which waits for the same
		// retries. After weave stop, the router comes back while the
		// Engine still retries (the Engine's later calls and the
		// router's check of its records meet); after SIGKILL, only once
		// the Engine has given up on all three, so that the relaunched
		// router alone releases what gone had.
		rmDone := make(chan harness.Result, 1)
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
			defer cancel()
			t1 := time.Now()
			r := h1.d.Docker(ctx, "rm", "-f", gone)
			r.Stderr += fmt.Sprintf(" (after %s)", time.Since(t1).Round(time.Millisecond))
			rmDone <- r
		}()
		// A container started while the router is down (its socket gone
		// after weave stop, left dead by SIGKILL): the Engine cannot
		// reach the plugin, and says so within its own retry bound
		// instead of hanging.
		ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
		t1 := time.Now()
		r := h1.d.Docker(ctx, "run", "-d", "--net", "net1", "--name", "early", img, "sleep")
		timedOut := ctx.Err() != nil
		cancel()
		t.Logf("%s (after %s)", r, time.Since(t1).Round(time.Millisecond))
		if r.OK() || timedOut || !strings.Contains(r.Stderr, h1.plugin) {
			t.Errorf("after %s: docker run with the router down: %s; want a prompt error naming the plugin %s", how, r, h1.plugin)
		}
		h1.d.Docker(context.Background(), "rm", "-f", "early")
		rmGone := func() {
			r := <-rmDone
			t.Logf("docker rm -f %s with the router down: %s", gone, r)
			if !r.OK() || h1.d.Docker(context.Background(), "inspect", "--format", "{{.Id}}", gone).OK() {
				t.Fatalf("after %s: docker rm -f %s did not remove it: %s", how, gone, r)
			}
		}
		if how == "kill" {
			rmGone()
		}

		t2 := time.Now()
		h1.Launch(launch1...)
		waitPluginMesh(t, h1)

		// The relaunched router finds gone gone from Docker and releases
		// what the Engine could not have the plugin release.
		harness.WaitFor(t, 20*time.Second, func() (bool, string) {
			bad := released(t, []*pluginHost{h1, h2}, []string{gone}, h1, base1+2, 2, "db's and cache's")
			if ps := h1.psLines(t, goneID); len(ps) > 0 {
				bad = append(bad, fmt.Sprintf("h1: weave ps lists %s: %v", gone, ps))
			}
			return len(bad) == 0, fmt.Sprintf("after %s: %s removed while the router was down: %s", how, gone, strings.Join(bad, "; "))
		})
		t.Logf("after %s: %s released %s after the relaunch", how, gone, time.Since(t2).Round(time.Millisecond))
		if how == "stop" {
			rmGone()
		} else if !strings.Contains(h1.Log(), "endpoint removed from docker while the router was down") {
			t.Errorf("after %s: h1's log does not say that %s's endpoint was dropped", how, gone)
		}

		// db kept its address and is reached again; its name comes back
		// from the restarted router, on both hosts.
		if got := h2.probe(t, "web", dbIP); !strings.Contains(got, dbIP) {
			t.Errorf("after %s: probe db by address answered %q", how, got)
		}
		for _, h := range []*pluginHost{h1, h2} {
			harness.WaitFor(t, 20*time.Second, func() (bool, string) {
				got := h.lookup("db")
				return slices.Equal(got, []string{dbIP}), fmt.Sprintf("after %s: %s: dns-lookup db = %v, want %s", how, h.HostName, got, dbIP)
			})
		}
		if got := h2.probe(t, "web", "db.weave.local"); !strings.Contains(got, dbIP) {
			t.Errorf("after %s: probe db.weave.local answered %q", how, got)
		}
		// h1's own weaveDNS, through the way to it that cache was given
		// before the restart.
		if got := h1.probe(t, "cache", "db.weave.local"); !strings.Contains(got, dbIP) {
			t.Errorf("after %s: probe db.weave.local from cache on h1 answered %q", how, got)
		}
		var st api.IPAM
		if err := h1.StatusJSON("ipam", &st); err != nil {
			t.Fatal(err)
		}
		if st.Allocated != base1+2 || st.Held != 0 {
			t.Errorf("after %s: h1 IPAM holds %d addresses (%d held for the grace period), want %d live", how, st.Allocated, st.Held, base1+2)
		}
		t.Logf("router %s and relaunch checked in %s", how, time.Since(t0).Round(time.Millisecond))
	}

	// A new container gets an address of its own.
	h1.d.MustDocker("run", "-d", "--net", "net1", "--name", "db2", img, "db")
	db2IP := h1.containerIP(t, "db2", "net1")
	if db2IP == "" || db2IP == dbIP || db2IP == cacheIP {
		t.Errorf("db2 got %q after the restarts; db has %s, cache %s", db2IP, dbIP, cacheIP)
	}
	if got := h2.probe(t, "web", "db2.weave.local"); !strings.Contains(got, db2IP) {
		t.Errorf("probe db2.weave.local answered %q, want %s", got, db2IP)
	}

	// Containers that joined before the restarts leave as before: their
	// addresses, names and veths go.
	h1.d.MustDocker("network", "disconnect", "net1", "cache")
	h1.d.MustDocker("rm", "-f", "db")
	harness.WaitFor(t, 10*time.Second, func() (bool, string) {
		bad := released(t, []*pluginHost{h1, h2}, []string{"db", "cache"}, h1, base1+1, 1, "db2's")
		return len(bad) == 0, "after disconnect cache and rm -f db: " + strings.Join(bad, "; ")
	})
	if got := h2.probe(t, "web", "db2.weave.local"); !strings.Contains(got, db2IP) {
		t.Errorf("probe db2.weave.local at the end answered %q, want %s", got, db2IP)
	}
	t.Logf("scenario took %s", time.Since(start).Round(time.Millisecond))
}

// waitPluginMesh waits until h is connected to a peer.
func waitPluginMesh(t *testing.T, h *pluginHost) {
	t.Helper()
	harness.WaitFor(t, convergeTimeout, func() (bool, string) {
		st, err := h.Status()
		return err == nil && len(st.Connections) > 0, fmt.Sprintf("%s not connected yet (%v)", h.HostName, err)
	})
}

// released lists what is still held for containers that are gone: their
// names in any of hosts' weaveDNS, and on owner an IPAM count other than
// wantAlloc or a plugin veth count other than wantVeths (those of whose,
// the containers still there).
func released(t *testing.T, hosts []*pluginHost, names []string, owner *pluginHost, wantAlloc, wantVeths int, whose string) []string {
	var bad []string
	for _, h := range hosts {
		for _, name := range names {
			if got := h.lookup(name); len(got) > 0 {
				bad = append(bad, fmt.Sprintf("%s: dns-lookup %s = %v", h.HostName, name, got))
			}
		}
	}
	if n := owner.allocated(t); n != wantAlloc {
		bad = append(bad, fmt.Sprintf("%s IPAM holds %d addresses, want %d (%s)", owner.HostName, n, wantAlloc, whose))
	}
	if n := owner.vethCount(t); n != wantVeths {
		bad = append(bad, fmt.Sprintf("%s has %d plugin veths, want %d (%s)", owner.HostName, n, wantVeths, whose))
	}
	return bad
}
