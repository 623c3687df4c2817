package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/containernetworking/cni/libcni"
	"github.com/containernetworking/cni/pkg/types"
	types100 "github.com/containernetworking/cni/pkg/types/100"
	"github.com/containernetworking/cni/pkg/version"

	"github.com/weavelab/weave/router/api"
	"github.com/weavelab/weave/test/harness"
)

// cniSetup runs `weave setup-cni` on h into temp dirs (twice: it is
// idempotent) and returns them.
func cniSetup(t *testing.T, h *harness.Host) (binDir, confDir string) {
	t.Helper()
	dir := t.TempDir()
	binDir, confDir = filepath.Join(dir, "bin"), filepath.Join(dir, "net.d")
	for range 2 {
		h.MustWeave("setup-cni", "--bin-dir", binDir, "--conf-dir", confDir)
	}
	return binDir, confDir
}

// cniEnv is the environment a runtime gives the plugin.
func cniEnv(cmd, binDir string, c *harness.Container, args string) []string {
	env := []string{"CNI_COMMAND=" + cmd, "CNI_CONTAINERID=" + c.Name, "CNI_NETNS=" + c.NetnsPath(), "CNI_IFNAME=eth0", "CNI_PATH=" + binDir}
	if args != "" {
		env = append(env, "CNI_ARGS="+args)
	}
	return env
}

// cniError parses the error JSON of a failed plugin run and checks the
// exit code and the spec's code.
func cniError(t *testing.T, r harness.Result, code uint) {
	t.Helper()
	var e types.Error
	if err := json.Unmarshal([]byte(r.Stdout), &e); err != nil {
		t.Fatalf("%s: stdout is not the spec's error JSON: %v", r, err)
	}
	if r.ExitCode == 0 || e.Code != code || e.Msg == "" {
		t.Fatalf("%s: want a non-zero exit and error code %d, got code %d", r, code, e.Code)
	}
}

// psHas reports whether `weave ps` on h lists container.
func psHas(t *testing.T, h *harness.Host, container string) (bool, []string) {
	t.Helper()
	out := h.MustWeave("ps")
	for _, l := range strings.Split(out, "\n") {
		if f := strings.Fields(l); len(f) > 2 && f[0] == container {
			return true, f[2:]
		}
	}
	return false, nil
}

// podAddr returns the IPv4 addresses (CIDR) of eth0 in the pod, nil when
// it has no eth0.
func podAddr(t *testing.T, c *harness.Container) []string {
	t.Helper()
	r := c.Run(context.Background(), "ip", "-o", "-4", "addr", "show", "dev", "eth0")
	if !r.OK() {
		return nil
	}
	var out []string
	for _, l := range strings.Split(r.Stdout, "\n") {
		f := strings.Fields(l)
		if i := slices.Index(f, "inet"); i >= 0 && i+1 < len(f) {
			out = append(out, f[i+1])
		}
	}
	return out
}

// TestCNIPlugin drives the weave-net plugin as runtimes do, on two hosts:
// by hand (environment and stdin, spec 1.1.0) on h1 and through libcni
// with the conflist of `weave setup-cni` (spec 1.0.0) on h2. Pods get
// addresses and eth0 with the overlay's MTU, reach each other across the
// hosts and by weaveDNS name, pass CHECK, and DEL removes everything,
// twice over; bad configs get the spec's error JSON.
func TestCNIPlugin(t *testing.T) {
	t.Parallel()
	l := harness.New(t)
	h1, h2 := meshedPair(t, l)
	binDir, confDir := cniSetup(t, h1)
	plugin := filepath.Join(binDir, "weave-net")
	exposed := strings.TrimSpace(h1.MustWeave("expose"))
	ctx := context.Background()

	st, err := h1.Status()
	if err != nil {
		t.Fatal(err)
	}

	// h1: by hand, spec 1.1.0, with the pod's name in weaveDNS.
	p1 := l.AddContainer(h1, "p1")
	conf1 := []byte(`{"cniVersion":"1.1.0","name":"weave","type":"weave-net","registerDNS":true}`)
	r := h1.CNI(ctx, plugin, cniEnv("ADD", binDir, p1, "IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=db"), conf1)
	if !r.OK() {
		t.Fatalf("ADD p1: %v", r.Err)
	}
	res, err := version.NewResult("1.1.0", []byte(r.Stdout))
	if err != nil {
		t.Fatalf("the result does not parse as a 1.1.0 result: %v", err)
	}
	res1, err := types100.NewResultFromResult(res)
	if err != nil {
		t.Fatal(err)
	}
	if len(res1.IPs) != 1 || len(res1.Interfaces) != 1 || res1.Interfaces[0].Name != "eth0" || res1.Interfaces[0].Sandbox != p1.NetnsPath() {
		t.Fatalf("result %+v: want one address on eth0 in %s", res1, p1.NetnsPath())
	}
	ip1 := res1.IPs[0].Address.String()
	if got := podAddr(t, p1); !slices.Equal(got, []string{ip1}) {
		t.Errorf("eth0 in p1 has %v, want %s", got, ip1)
	}
	if res1.Interfaces[0].Mtu != st.MTU || st.MTU == 0 {
		t.Errorf("result MTU %d, router's %d", res1.Interfaces[0].Mtu, st.MTU)
	}
	if out := p1.Run(ctx, "ip", "link", "show", "eth0"); !strings.Contains(out.Stdout, fmt.Sprintf("mtu %d", st.MTU)) {
		t.Errorf("eth0 in p1: %s, want mtu %d", out.Stdout, st.MTU)
	}
	// h1 is exposed: the pod's default route goes via the host.
	gw, _, _ := strings.Cut(exposed, "/")
	if len(res1.Routes) != 1 || res1.Routes[0].Dst.String() != "0.0.0.0/0" || res1.Routes[0].GW.String() != gw {
		t.Errorf("routes %v, want the default via h1's exposed %s", res1.Routes, gw)
	}
	if out := p1.Run(ctx, "ip", "route", "show", "default"); !strings.Contains(out.Stdout, "via "+gw+" dev eth0") {
		t.Errorf("p1 default route: %q, want via %s", out.Stdout, gw)
	}
	if ok, _ := p1.Reaches(gw); !ok {
		t.Errorf("p1 does not reach its gateway %s", gw)
	}
	if ok, addrs := psHas(t, h1, "netns:"+p1.NetnsPath()); !ok || !slices.Equal(addrs, []string{ip1}) {
		t.Errorf("weave ps on h1: attached %v with %v, want %s", ok, addrs, ip1)
	}

	// h2: through libcni with the installed conflist, as a runtime does.
	cninet := libcni.NewCNIConfigWithCacheDir([]string{binDir}, t.TempDir(), h2.CNIExec())
	list, err := libcni.LoadNetworkConf(confDir, "weave")
	if err != nil {
		t.Fatalf("libcni cannot load the conflist of setup-cni: %v", err)
	}
	if _, err := cninet.ValidateNetworkList(ctx, list); err != nil {
		t.Fatalf("libcni's version negotiation with the plugin: %v", err)
	}
	info, err := cninet.GetVersionInfo(ctx, "weave-net")
	if err != nil || !slices.Contains(info.SupportedVersions(), "1.1.0") || !slices.Contains(info.SupportedVersions(), "1.0.0") {
		t.Fatalf("VERSION: %v %v", info, err)
	}
	p2 := l.AddContainer(h2, "p2")
	rt2 := &libcni.RuntimeConf{ContainerID: "pod2", NetNS: p2.NetnsPath(), IfName: "eth0", Args: [][2]string{{"IgnoreUnknown", "1"}, {"K8S_POD_NAME", "web"}}}
	got2, err := cninet.AddNetworkList(ctx, list, rt2)
	if err != nil {
		t.Fatalf("libcni ADD p2: %v", err)
	}
	res2, err := types100.NewResultFromResult(got2)
	if err != nil || len(res2.IPs) != 1 || got2.Version() != "1.0.0" {
		t.Fatalf("libcni ADD p2: result %v (version %s): %v", got2, got2.Version(), err)
	}
	ip2 := res2.IPs[0].Address.String()
	if got := podAddr(t, p2); !slices.Equal(got, []string{ip2}) {
		t.Errorf("eth0 in p2 has %v, want %s", got, ip2)
	}
	if len(res2.Routes) != 0 {
		t.Errorf("h2 is not exposed, yet p2 has routes %v", res2.Routes)
	}

	// Pods reach each other across the hosts, by address and by name.
	a1, _, _ := strings.Cut(ip1, "/")
	a2, _, _ := strings.Cut(ip2, "/")
	for _, c := range []struct {
		from *harness.Container
		to   string
	}{{p1, a2}, {p2, a1}} {
		harness.WaitFor(t, reachTimeout, func() (bool, string) {
			ok, out := c.from.Reaches(c.to)
			return ok, fmt.Sprintf("%s does not reach %s: %s", c.from.CName, c.to, out)
		})
	}
	harness.WaitFor(t, reachTimeout, func() (bool, string) {
		r := h2.WeaveQuiet("dns-lookup", "db")
		return strings.TrimSpace(r.Stdout) == a1, fmt.Sprintf("dns-lookup db on h2: %s", r)
	})
	harness.WaitFor(t, reachTimeout, func() (bool, string) {
		r := h1.WeaveQuiet("dns-lookup", "web")
		return strings.TrimSpace(r.Stdout) == a2, fmt.Sprintf("dns-lookup web on h1: %s", r)
	})

	// CHECK: by hand with the result as prevResult, and through libcni.
	var raw map[string]any
	json.Unmarshal(conf1, &raw)
	var prev map[string]any
	json.Unmarshal([]byte(r.Stdout), &prev)
	raw["prevResult"] = prev
	check1, _ := json.Marshal(raw)
	if r := h1.CNI(ctx, plugin, cniEnv("CHECK", binDir, p1, ""), check1); !r.OK() {
		t.Errorf("CHECK p1: %v", r.Err)
	}
	if err := cninet.CheckNetworkList(ctx, list, rt2); err != nil {
		t.Errorf("libcni CHECK p2: %v", err)
	}
	// STATUS (1.1.0).
	if r := h1.CNI(ctx, plugin, []string{"CNI_COMMAND=STATUS", "CNI_PATH=" + binDir}, conf1); !r.OK() {
		t.Errorf("STATUS: %v", r.Err)
	}

	// Bad configs: the spec's error JSON and a non-zero exit.
	bad := l.AddContainer(h1, "bad")
	for _, b := range []struct {
		conf string
		code uint
	}{
		{`{"cniVersion":"1.0.0","name":"weave","type":"weave-net","ipam":{"subnet":"banana"}}`, types.ErrInvalidNetworkConfig},
		{`{"cniVersion":"1.0.0","type":"weave-net"}`, types.ErrInvalidNetworkConfig},
		{`{"cniVersion":"1.0.0","name":`, types.ErrDecodingFailure},
		{`{"cniVersion":"42.0.0","name":"weave","type":"weave-net"}`, types.ErrIncompatibleCNIVersion},
	} {
		cniError(t, h1.CNI(ctx, plugin, cniEnv("ADD", binDir, bad, ""), []byte(b.conf)), b.code)
	}
	if got := podAddr(t, bad); got != nil {
		t.Errorf("a failed ADD left %v in the pod", got)
	}

	// DEL p1 by hand, twice: eth0, the attachment, the address and the
	// name go.
	before := ipamStatus(t, h1).Allocated
	for i := range 2 {
		if r := h1.CNI(ctx, plugin, cniEnv("DEL", binDir, p1, ""), conf1); !r.OK() || strings.TrimSpace(r.Stdout) != "" {
			t.Fatalf("DEL #%d p1: %v", i+1, r.Err)
		}
	}
	if r := p1.Run(ctx, "ip", "link", "show", "eth0"); r.OK() {
		t.Errorf("eth0 still in p1 after DEL: %s", r.Stdout)
	}
	if ok, _ := psHas(t, h1, "netns:"+p1.NetnsPath()); ok {
		t.Errorf("weave ps still lists p1 after DEL")
	}
	if after := ipamStatus(t, h1).Allocated; after != before-1 {
		t.Errorf("h1 IPAM allocated %d after DEL, %d before: want the address released", after, before)
	}
	harness.WaitFor(t, reachTimeout, func() (bool, string) {
		r := h2.WeaveQuiet("dns-lookup", "db")
		return strings.TrimSpace(r.Stdout) == "", fmt.Sprintf("db still resolves on h2 after DEL: %s", r)
	})

	// DEL p2 through libcni, twice.
	for i := range 2 {
		if err := cninet.DelNetworkList(ctx, list, rt2); err != nil {
			t.Fatalf("libcni DEL #%d p2: %v", i+1, err)
		}
	}
	if ok, _ := psHas(t, h2, "netns:"+p2.NetnsPath()); ok || podAddr(t, p2) != nil {
		t.Errorf("p2 still attached after DEL")
	}
}

// TestCNIRouterDown: with the router stopped, ADD says "try again later"
// (code 11), STATUS "plugin not available" (50), and DEL succeeds (twice),
// removing eth0; the router, started again, frees the address after its
// grace period. A pod whose namespace went before DEL gets its address
// back at once.
func TestCNIRouterDown(t *testing.T) {
	t.Parallel()
	l := harness.New(t)
	h := l.AddHost("h1")
	h.Launch("--ipalloc-grace", "1s")
	binDir, _ := cniSetup(t, h)
	plugin := filepath.Join(binDir, "weave-net")
	ctx := context.Background()
	conf := []byte(`{"cniVersion":"1.1.0","name":"weave","type":"weave-net"}`)

	p := l.AddContainer(h, "p")
	if r := h.CNI(ctx, plugin, cniEnv("ADD", binDir, p, ""), conf); !r.OK() {
		t.Fatalf("ADD: %v", r.Err)
	}
	if n := ipamStatus(t, h).Allocated; n != 1 {
		t.Fatalf("IPAM allocated %d after ADD, want 1", n)
	}

	// The namespace goes before DEL (the router is up): the address comes
	// back at once.
	gone := l.AddContainer(h, "gone")
	if r := h.CNI(ctx, plugin, cniEnv("ADD", binDir, gone, ""), conf); !r.OK() {
		t.Fatalf("ADD: %v", r.Err)
	}
	if out, err := runCmd("ip", "netns", "delete", gone.Name); err != nil {
		t.Fatalf("ip netns delete %s: %v: %s", gone.Name, err, out)
	}
	for i := range 2 {
		if r := h.CNI(ctx, plugin, cniEnv("DEL", binDir, gone, ""), conf); !r.OK() {
			t.Fatalf("DEL #%d of a pod whose namespace is gone: %v", i+1, r.Err)
		}
	}
	if n := ipamStatus(t, h).Allocated; n != 1 {
		t.Errorf("IPAM allocated %d after DEL of the vanished pod, want 1", n)
	}

	h.Stop()
	cniError(t, h.CNI(ctx, plugin, cniEnv("ADD", binDir, l.AddContainer(h, "late"), ""), conf), types.ErrTryAgainLater)
	cniError(t, h.CNI(ctx, plugin, []string{"CNI_COMMAND=STATUS", "CNI_PATH=" + binDir}, conf), types.ErrPluginNotAvailable)
	for i := range 2 {
		if r := h.CNI(ctx, plugin, cniEnv("DEL", binDir, p, ""), conf); !r.OK() {
			t.Fatalf("DEL #%d with the router stopped: %v", i+1, r.Err)
		}
	}
	if r := p.Run(ctx, "ip", "link", "show", "eth0"); r.OK() {
		t.Errorf("eth0 still in the pod after DEL: %s", r.Stdout)
	}

	h.Launch("--ipalloc-grace", "1s")
	harness.WaitFor(t, reachTimeout, func() (bool, string) {
		var st api.IPAM
		if err := h.StatusJSON("ipam", &st); err != nil {
			return false, err.Error()
		}
		// weave ps reconciles the attachments, as the router does
		// periodically.
		h.WeaveQuiet("ps")
		return st.Allocated == 0 && st.Held == 0, fmt.Sprintf("IPAM allocated %d, held %d: want the DELeted pod's address freed", st.Allocated, st.Held)
	})
}

func runCmd(name string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
	return string(out), err
}
