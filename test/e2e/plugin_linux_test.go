package e2e

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/weavelab/weave/router/api"
	"github.com/weavelab/weave/test/harness"
)

// The Docker network plugin scenario: two hosts, each with a router and a
// Docker Engine of its own (the driver's interfaces are made in the
// Engine's namespace), driven with the real docker CLI. Plugin names are
// unique to the LAN: /run/docker/plugins is the machine's.

// pluginSubnet is the subnet of the test network, inside the default range.
const pluginSubnet = "10.40.1.0/24"

// pluginHost is a host with its own Engine, a router serving the plugin
// under plugin.
type pluginHost struct {
	*harness.Host
	d      *harness.Dockerd
	plugin string
}

func newPluginHost(t *testing.T, l *harness.LAN, name, img string) *pluginHost {
	t.Helper()
	h := l.AddHost(name)
	d := h.StartDockerd()
	d.LoadImage(img)
	return &pluginHost{Host: h, d: d, plugin: h.PluginName()}
}

// allocated is the number of addresses the host's IPAM holds.
func (h *pluginHost) allocated(t *testing.T) int {
	t.Helper()
	var st api.IPAM
	if err := h.StatusJSON("ipam", &st); err != nil {
		t.Fatal(err)
	}
	return st.Allocated
}

// lookup is weave dns-lookup NAME on the host (the IPs, or none).
func (h *pluginHost) lookup(name string) []string {
	return strings.Fields(h.WeaveQuiet("dns-lookup", name).Stdout)
}

// containerIP is a container's address on network nw.
func (h *pluginHost) containerIP(t *testing.T, container, nw string) string {
	t.Helper()
	return h.d.MustDocker("inspect", "--format", fmt.Sprintf("{{(index .NetworkSettings.Networks %q).IPAddress}}", nw), container)
}

// probe runs weavetest probe ADDR:7000 in container and returns what db
// answered, retrying for a while (the name's replication, the first ARP).
func (h *pluginHost) probe(t *testing.T, container, target string) string {
	t.Helper()
	var last harness.Result
	ok, _ := harness.Eventually(20*time.Second, func() (bool, string) {
		last = h.d.Docker(context.Background(), "exec", container, "/weavetest", "probe", target+":7000")
		return last.OK(), last.String()
	})
	if !ok {
		t.Fatalf("%s: %s cannot reach %s: %s", h.HostName, container, target, last)
	}
	return strings.TrimSpace(last.Stdout)
}

// psLines is the lines of `weave ps [CONTAINER...]` on the host that
// show the Docker container id (by its short ID), failing the test when
// ps fails.
func (h *pluginHost) psLines(t *testing.T, id string, containers ...string) []psEntry {
	t.Helper()
	ps, err := weavePS(h.Host, containers...)
	if err != nil {
		t.Fatal(err)
	}
	var out []psEntry
	for _, e := range ps {
		if e.ID == id[:12] {
			out = append(out, e)
		}
	}
	return out
}

// checkPS checks that `weave ps` and `weave ps NAME` on the host list the
// plugin's container name (full ID id) on network nw with address ip,
// and that the API's JSON says so.
func (h *pluginHost) checkPS(t *testing.T, name, id, nw, ip string) {
	t.Helper()
	mac := h.d.MustDocker("inspect", "--format", fmt.Sprintf("{{(index .NetworkSettings.Networks %q).MacAddress}}", nw), name)
	want := fmt.Sprint([]psEntry{{ID: id[:12], MAC: mac, Addrs: []netip.Prefix{netip.MustParsePrefix(ip + "/24")}}})
	for _, args := range [][]string{nil, {name}} {
		if got := h.psLines(t, id, args...); fmt.Sprint(got) != want {
			t.Errorf("%s: weave ps %v: %v for %s, want %s", h.HostName, args, got, name, want)
		}
	}
	cs, err := api.NewClient(filepath.Join(h.RunDir, "weave.sock")).PS(context.Background(), []string{name})
	if err != nil || len(cs) != 1 || cs[0].ID != id || cs[0].Via != api.ViaPlugin || cs[0].Network != nw || cs[0].MAC != mac {
		t.Errorf("%s: API ps %s = %+v, %v; want one entry with the full ID, via %s, network %s", h.HostName, name, cs, err, api.ViaPlugin, nw)
	}
}

// vethCount is the number of the plugin's host-side veths on the host.
func (h *pluginHost) vethCount(t *testing.T) int {
	t.Helper()
	r := h.Run(context.Background(), "ip", "-o", "link", "show")
	if !r.OK() {
		t.Fatal(r)
	}
	n := 0
	for _, line := range strings.Split(r.Stdout, "\n") {
		if f := strings.Fields(line); len(f) > 1 && strings.HasPrefix(f[1], "vwp") {
			n++
		}
	}
	return n
}

func TestPluginDockerNetwork(t *testing.T) {
	start := time.Now()
	l := harness.New(t)
	img := harness.DockerImage(t)
	h1 := newPluginHost(t, l, "h1", img)
	h2 := newPluginHost(t, l, "h2", img)
	t.Logf("two engines up in %s", time.Since(start).Round(time.Millisecond))

	// h1 creates the default network; h2 is told not to.
	h1.Launch("--plugin-name", h1.plugin)
	h2.Launch("--plugin-name", h2.plugin, "--no-default-network", h1.IP)
	harness.WaitFor(t, 20*time.Second, func() (bool, string) {
		r := h1.d.Docker(context.Background(), "network", "inspect", "--format", "{{.Driver}} {{.IPAM.Driver}}", "weave")
		want := h1.plugin + " " + h1.plugin
		return r.OK() && strings.TrimSpace(r.Stdout) == want, fmt.Sprintf("default network on h1: %s, want drivers %q", r, want)
	})
	harness.WaitFor(t, 20*time.Second, func() (bool, string) {
		st, err := h1.Status()
		return err == nil && len(st.Connections) > 0, fmt.Sprintf("h1 not connected to h2 yet (%v)", err)
	})

	// The same network on both hosts, from the same subnet.
	for _, h := range []*pluginHost{h1, h2} {
		h.d.MustDocker("network", "create", "-d", h.plugin, "--ipam-driver", h.plugin, "--subnet", pluginSubnet, "net1")
		if got := h.d.MustDocker("network", "inspect", "--format", "{{.Scope}} {{(index .IPAM.Config 0).Subnet}}", "net1"); got != "local "+pluginSubnet {
			t.Errorf("%s: network inspect net1: %q, want local scope and %s", h.HostName, got, pluginSubnet)
		}
	}
	base1, base2 := h1.allocated(t), h2.allocated(t)

	// db on h1, web on h2, both from IPAM; web asks weaveDNS.
	h1.d.MustDocker("run", "-d", "--net", "net1", "--name", "db", img, "db")
	h2.d.MustDocker("run", "-d", "--net", "net1", "--name", "web",
		"--dns", "169.254.53.53", "--dns-search", "weave.local", img, "sleep")
	dbIP, webIP := h1.containerIP(t, "db", "net1"), h2.containerIP(t, "web", "net1")
	if dbIP == "" || dbIP == webIP {
		t.Fatalf("db has %q, web %q: want two addresses", dbIP, webIP)
	}
	if got := h1.allocated(t); got != base1+1 {
		t.Errorf("h1 IPAM holds %d addresses after docker run, want %d", got, base1+1)
	}
	if got := h2.allocated(t); got != base2+1 {
		t.Errorf("h2 IPAM holds %d addresses after docker run, want %d", got, base2+1)
	}
	// weave status shows the plugin: h1 has the default network and net1,
	// one endpoint (db).
	if st, err := h1.Status(); err != nil || st.Plugin == nil || st.Plugin.Name != h1.plugin ||
		st.Plugin.Networks != 2 || st.Plugin.Endpoints != 1 {
		t.Errorf("h1 status plugin = %+v (%v), want %s with 2 networks and 1 endpoint", st.Plugin, err, h1.plugin)
	}
	if r := h1.Weave("status"); !strings.Contains(r.Stdout, "Plugin: "+h1.plugin+" at ") {
		t.Errorf("weave status on h1 has no plugin line: %s", r)
	}
	// weave ps lists the plugin's containers, by name too.
	dbID := h1.d.MustDocker("inspect", "--format", "{{.Id}}", "db")
	h1.checkPS(t, "db", dbID, "net1", dbIP)
	h2.checkPS(t, "web", h2.d.MustDocker("inspect", "--format", "{{.Id}}", "web"), "net1", webIP)
	pid := h1.d.MustDocker("inspect", "--format", "{{.State.Pid}}", "db")
	if out := h1.Run(context.Background(), "nsenter", "--net=/proc/"+pid+"/ns/net", "ip", "-o", "link", "show", "ethwe0"); !strings.Contains(out.Stdout, "mtu 1376") {
		t.Errorf("db's ethwe0: %s, want mtu 1376", out)
	}

	// web reaches db across the overlay, by address and by name.
	if got := h2.probe(t, "web", dbIP); !strings.Contains(got, dbIP) {
		t.Errorf("probe db by address answered %q", got)
	}
	harness.WaitFor(t, 10*time.Second, func() (bool, string) {
		got := h2.lookup("db")
		return len(got) == 1 && got[0] == dbIP, fmt.Sprintf("h2: dns-lookup db = %v, want %s", got, dbIP)
	})
	if got := h2.probe(t, "web", "db.weave.local"); !strings.Contains(got, dbIP) {
		t.Errorf("probe db.weave.local answered %q", got)
	}

	// disconnect: address, name and veth go; connect brings them back.
	h1.d.MustDocker("network", "disconnect", "net1", "db")
	harness.WaitFor(t, 10*time.Second, func() (bool, string) {
		got := h2.lookup("db")
		return len(got) == 0, fmt.Sprintf("h2: dns-lookup db = %v after disconnect, want none", got)
	})
	if got := h1.allocated(t); got != base1 {
		t.Errorf("h1 IPAM holds %d addresses after disconnect, want %d", got, base1)
	}
	if n := h1.vethCount(t); n != 0 {
		t.Errorf("h1 has %d plugin veths after disconnect, want 0", n)
	}
	if got := h1.psLines(t, dbID); len(got) != 0 {
		t.Errorf("weave ps after disconnect lists db: %v", got)
	}
	if r := h1.Weave("ps", "db"); r.OK() || !strings.Contains(r.Stderr, "not attached") {
		t.Errorf("weave ps db after disconnect: %s, want a failure saying not attached", r)
	}
	// Back with the same address given as --ip (a static address in
	// this host's part of the range: IPAM claims it).
	h1.d.MustDocker("network", "connect", "--ip", dbIP, "net1", "db")
	if got := h1.containerIP(t, "db", "net1"); got != dbIP {
		t.Errorf("db reconnected with --ip %s has %q", dbIP, got)
	}
	if got := h1.allocated(t); got != base1+1 {
		t.Errorf("h1 IPAM holds %d addresses after connect --ip, want %d", got, base1+1)
	}
	harness.WaitFor(t, 10*time.Second, func() (bool, string) {
		got := h2.lookup("db")
		return len(got) == 1 && got[0] == dbIP, fmt.Sprintf("h2: dns-lookup db = %v after connect, want %s", got, dbIP)
	})
	if got := h2.probe(t, "web", "db.weave.local"); !strings.Contains(got, dbIP) {
		t.Errorf("probe db.weave.local after connect answered %q", got)
	}
	h1.checkPS(t, "db", dbID, "net1", dbIP)

	// Container death: docker rm -f releases the address and the name.
	h1.d.MustDocker("rm", "-f", "db")
	harness.WaitFor(t, 10*time.Second, func() (bool, string) {
		got := h2.lookup("db")
		return len(got) == 0 && h1.allocated(t) == base1 && h1.vethCount(t) == 0,
			fmt.Sprintf("after rm -f db: h2 dns-lookup db = %v, h1 IPAM holds %d (want %d), %d veths", got, h1.allocated(t), base1, h1.vethCount(t))
	})
	if got := h1.psLines(t, dbID); len(got) != 0 {
		t.Errorf("weave ps after rm -f db lists it: %v", got)
	}
	h2.d.MustDocker("rm", "-f", "web")
	if got := h2.allocated(t); got != base2 {
		t.Errorf("h2 IPAM holds %d addresses after rm -f web, want %d", got, base2)
	}

	// Bad input: a clear error, nothing made.
	for _, tc := range []struct {
		args    []string
		mention string
	}{
		{[]string{"--subnet", "192.168.77.0/24"}, "outside the allocation range"},
		{[]string{"-o", "foo=bar"}, `"foo"`},
	} {
		args := append([]string{"network", "create", "-d", h1.plugin, "--ipam-driver", h1.plugin}, tc.args...)
		r := h1.d.Docker(context.Background(), append(args, "bad")...)
		t.Logf("%s", r)
		if r.OK() || !strings.Contains(r.Stderr, tc.mention) {
			t.Errorf("%s: want a failure mentioning %s", r, tc.mention)
		}
		if r := h1.d.Docker(context.Background(), "network", "inspect", "bad"); r.OK() {
			t.Errorf("network bad exists after a failed create")
		}
	}

	// docker network rm on both hosts; h2 never had the default network.
	for _, h := range []*pluginHost{h1, h2} {
		h.d.MustDocker("network", "rm", "net1")
	}
	if r := h2.d.Docker(context.Background(), "network", "inspect", "weave"); r.OK() {
		t.Errorf("h2 was launched with --no-default-network but has a network weave")
	}

	// weave reset removes the plugin's networks from Docker (nothing could
	// serve them with the state gone); a launch makes the default again.
	defaultID := h1.d.MustDocker("network", "inspect", "--format", "{{.ID}}", "weave")
	h1.MustWeave("reset")
	if r := h1.d.Docker(context.Background(), "network", "inspect", "weave"); r.OK() {
		t.Errorf("the default network is still in Docker after weave reset")
	}
	h1.Launch("--plugin-name", h1.plugin)
	harness.WaitFor(t, 20*time.Second, func() (bool, string) {
		r := h1.d.Docker(context.Background(), "network", "inspect", "--format", "{{.ID}}", "weave")
		return r.OK() && strings.TrimSpace(r.Stdout) != defaultID, "no new default network after reset and launch: " + r.String()
	})
	// The router's record lost (state dir emptied by hand) while Docker
	// keeps the default network: the launch makes it again, usable.
	h1.Stop()
	if err := os.Remove(filepath.Join(h1.StateDir, "docker-plugin.json")); err != nil {
		t.Fatal(err)
	}
	h1.Launch("--plugin-name", h1.plugin)
	harness.WaitFor(t, 20*time.Second, func() (bool, string) {
		return strings.Contains(h1.Log(), "made the default network again"), "the relaunched router did not make the default network again"
	})
	h1.d.MustDocker("run", "-d", "--name", "again", "--net", "weave", img, "sleep")
	h1.d.MustDocker("rm", "-f", "again")
	t.Logf("scenario took %s", time.Since(start).Round(time.Millisecond))
}
