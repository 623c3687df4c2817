package cni

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/containernetworking/cni/pkg/types"
	types040 "github.com/containernetworking/cni/pkg/types/040"
	types100 "github.com/containernetworking/cni/pkg/types/100"
	"github.com/containernetworking/cni/pkg/version"

	"github.com/weavelab/weave/router/api"
)

// fakeRouter is the router's API over an in-memory table; attaching
// creates the interface in its fakeSandbox.
type fakeRouter struct {
	down    bool
	sb      *fakeSandbox
	next    int
	att     map[string]*api.Container
	ifnames map[string]string
	exposed []string
	dns     map[string]string // fqdn -> container
}

type fakeSandbox struct {
	ns map[string]map[string]*Link // netns path -> ifname -> link
}

var (
	_ Router  = (*fakeRouter)(nil)
	_ Sandbox = (*fakeSandbox)(nil)
)

func newFakes() (*fakeRouter, *fakeSandbox) {
	sb := &fakeSandbox{ns: map[string]map[string]*Link{}}
	return &fakeRouter{sb: sb, att: map[string]*api.Container{}, ifnames: map[string]string{}, dns: map[string]string{}}, sb
}

func (r *fakeRouter) err() error { return fmt.Errorf("%w (no socket at /x)", api.ErrNotRunning) }

func (r *fakeRouter) Version(context.Context) (api.Version, error) {
	if r.down {
		return api.Version{}, r.err()
	}
	return api.Version{Version: "test"}, nil
}

func (r *fakeRouter) Status(context.Context) (api.Status, error) {
	if r.down {
		return api.Status{}, r.err()
	}
	return api.Status{MTU: 1376, DNS: &api.DNS{Domain: "weave.local.", Address: "172.31.255.1:53"}}, nil
}

func (r *fakeRouter) AttachRequest(_ context.Context, req api.AttachRequest) ([]string, error) {
	if r.down {
		return nil, r.err()
	}
	path, _ := strings.CutPrefix(req.Container, "netns:")
	links, ok := r.sb.ns[path]
	if !ok {
		return nil, &api.RemoteError{StatusCode: 400, Message: "attach " + req.Container + ": no such network namespace"}
	}
	if _, ok := r.att[req.Container]; ok {
		return nil, &api.RemoteError{StatusCode: 400, Message: "already attached"}
	}
	addrs := req.Addrs
	if len(addrs) == 0 || strings.HasPrefix(addrs[0], "net:") {
		r.next++
		addrs = []string{fmt.Sprintf("10.32.0.%d/12", r.next)}
		if len(req.Addrs) > 0 {
			sub := netip.MustParsePrefix(strings.TrimPrefix(req.Addrs[0], "net:"))
			addrs = []string{netip.PrefixFrom(sub.Addr().Next().Next(), sub.Bits()).String()}
		}
	}
	c := &api.Container{ID: req.Container, MAC: "02:00:00:00:00:01", Addrs: addrs}
	r.att[req.Container] = c
	r.ifnames[req.Container] = req.IfName
	l := &Link{MAC: c.MAC, MTU: 1376, Up: true}
	for _, a := range addrs {
		p := netip.MustParsePrefix(a)
		l.Addrs = append(l.Addrs, p)
		l.Routes = append(l.Routes, Route{Dst: p.Masked()})
	}
	links[req.IfName] = l
	return addrs, nil
}

func (r *fakeRouter) Detach(_ context.Context, container string, _ []string) error {
	if r.down {
		return r.err()
	}
	if _, ok := r.att[container]; !ok {
		return &api.RemoteError{StatusCode: 400, Message: "detach " + container + ": not attached"}
	}
	path, _ := strings.CutPrefix(container, "netns:")
	r.sb.DeleteLink(path, r.ifnames[container])
	delete(r.att, container)
	for name, c := range r.dns {
		if c == container {
			delete(r.dns, name)
		}
	}
	return nil
}

func (r *fakeRouter) PS(context.Context, []string) ([]api.Container, error) {
	if r.down {
		return nil, r.err()
	}
	var out []api.Container
	if len(r.exposed) > 0 {
		out = append(out, api.Container{ID: api.ExposeID, Addrs: r.exposed})
	}
	for _, c := range r.att {
		out = append(out, *c)
	}
	return out, nil
}

func (r *fakeRouter) DNSAdd(_ context.Context, req api.DNSRequest) ([]api.DNSEntry, error) {
	if r.down {
		return nil, r.err()
	}
	r.dns[req.FQDN] = req.Container
	return nil, nil
}

func (s *fakeSandbox) Link(netns, ifName string) (*Link, error) {
	links, ok := s.ns[netns]
	if !ok {
		return nil, fmt.Errorf("%s: %w", netns, ErrNoNetns)
	}
	if l := links[ifName]; l != nil {
		c := *l
		return &c, nil
	}
	return nil, nil
}

func (s *fakeSandbox) AddRoutes(netns, ifName string, routes []Route) error {
	l := s.ns[netns][ifName]
	if l == nil {
		return fmt.Errorf("no %s", ifName)
	}
	for _, r := range routes {
		if !slices.Contains(l.Routes, r) {
			l.Routes = append(l.Routes, r)
		}
	}
	return nil
}

func (s *fakeSandbox) DeleteLink(netns, ifName string) error {
	if links, ok := s.ns[netns]; ok {
		delete(links, ifName)
	}
	return nil
}

// fakeIPAM is a delegated IPAM plugin handing out 10.9.0.N/24 with
// gateway 10.9.0.1.
type fakeIPAM struct {
	next int
	held int
}

func (f *fakeIPAM) Add(context.Context, string, []byte) (types.Result, error) {
	f.next++
	f.held++
	return types100.NewResult([]byte(fmt.Sprintf(`{"cniVersion":"1.0.0","ips":[{"address":"10.9.0.%d/24","gateway":"10.9.0.1"}],"routes":[{"dst":"10.96.0.0/12"}]}`, f.next+1)))
}
func (f *fakeIPAM) Check(context.Context, string, []byte) error { return nil }
func (f *fakeIPAM) Del(context.Context, string, []byte) error {
	if f.held > 0 {
		f.held--
	}
	return nil
}
func (f *fakeIPAM) Status(context.Context, string, []byte) error { return nil }
func (f *fakeIPAM) GC(context.Context, string, []byte) error     { return nil }

// call runs the plugin as a runtime would: CNI_* variables and the
// config on stdin. It returns the exit code and stdout.
func call(t *testing.T, p *Plugin, cmd, netns, cniArgs string, conf []byte) (int, []byte) {
	t.Helper()
	t.Setenv("CNI_COMMAND", cmd)
	t.Setenv("CNI_CONTAINERID", "c0ffee")
	t.Setenv("CNI_NETNS", netns)
	t.Setenv("CNI_IFNAME", "eth0")
	t.Setenv("CNI_PATH", t.TempDir())
	t.Setenv("CNI_ARGS", cniArgs)
	in := filepath.Join(t.TempDir(), "stdin")
	if err := os.WriteFile(in, conf, 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(in)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	outPath := filepath.Join(t.TempDir(), "stdout")
	o, err := os.Create(outPath)
	if err != nil {
		t.Fatal(err)
	}
	defer o.Close()
	savedIn, savedOut := os.Stdin, os.Stdout
	os.Stdin, os.Stdout = f, o
	rc := p.Main()
	os.Stdin, os.Stdout = savedIn, savedOut
	out, err := os.ReadFile(outPath)
	if err != nil {
		t.Fatal(err)
	}
	return rc, out
}

func newPlugin(r Router, sb Sandbox, ipam Delegate) *Plugin {
	return &Plugin{Router: r, Sandbox: sb, IPAM: ipam, Log: slog.New(slog.NewTextHandler(io.Discard, nil))}
}

// wantCNIError checks for exit 1 and the spec's error JSON with code.
func wantCNIError(t *testing.T, rc int, out []byte, code uint) {
	t.Helper()
	var e types.Error
	if err := json.Unmarshal(out, &e); err != nil {
		t.Fatalf("exit %d, stdout %q: not error JSON: %v", rc, out, err)
	}
	if rc != 1 || e.Code != code || e.Msg == "" {
		t.Fatalf("exit %d, error %+v, want exit 1 and code %d", rc, e, code)
	}
}

func TestAddCheckDel(t *testing.T) {
	for _, ver := range []string{"0.4.0", "1.0.0", "1.1.0"} {
		t.Run(ver, func(t *testing.T) {
			r, sb := newFakes()
			r.exposed = []string{"10.32.0.100/12"}
			sb.ns["/run/netns/pod"] = map[string]*Link{}
			p := newPlugin(r, sb, &fakeIPAM{})
			conf := []byte(`{"cniVersion":"` + ver + `","name":"weave","type":"weave-net","registerDNS":true}`)

			rc, out := call(t, p, "ADD", "/run/netns/pod", "IgnoreUnknown=1;K8S_POD_NAME=db", conf)
			if rc != 0 {
				t.Fatalf("ADD: exit %d: %s", rc, out)
			}
			// The result is one of the asked version, valid to the library.
			res, err := version.NewResult(ver, out)
			if err != nil {
				t.Fatalf("result %s does not parse as %s: %v", out, ver, err)
			}
			if res.Version() != ver {
				t.Errorf("result version %s, want %s", res.Version(), ver)
			}
			r100, err := types100.NewResultFromResult(res)
			if err != nil {
				t.Fatal(err)
			}
			if len(r100.Interfaces) != 1 || r100.Interfaces[0].Name != "eth0" || r100.Interfaces[0].Sandbox != "/run/netns/pod" {
				t.Errorf("interfaces %+v", r100.Interfaces)
			}
			if len(r100.IPs) != 1 || r100.IPs[0].Address.String() != "10.32.0.1/12" || r100.IPs[0].Gateway.String() != "10.32.0.100" {
				t.Errorf("ips %v", r100.IPs)
			}
			if len(r100.Routes) != 1 || r100.Routes[0].Dst.String() != "0.0.0.0/0" || r100.Routes[0].GW.String() != "10.32.0.100" {
				t.Errorf("routes %v, want the default via the exposed host address", r100.Routes)
			}
			if !slices.Equal(r100.DNS.Nameservers, []string{"172.31.255.1"}) || !slices.Equal(r100.DNS.Search, []string{"weave.local"}) {
				t.Errorf("dns %+v", r100.DNS)
			}
			if mtu := r100.Interfaces[0].Mtu; (ver == "1.1.0") != (mtu == 1376) {
				t.Errorf("mtu %d in a %s result", mtu, ver)
			}
			if r.dns["db.weave.local."] != "netns:/run/netns/pod" {
				t.Errorf("weaveDNS names %v", r.dns)
			}

			// CHECK with the result as prevResult.
			var raw map[string]any
			json.Unmarshal(conf, &raw)
			var prev map[string]any
			json.Unmarshal(out, &prev)
			raw["prevResult"] = prev
			checkConf, _ := json.Marshal(raw)
			if rc, out := call(t, p, "CHECK", "/run/netns/pod", "", checkConf); rc != 0 {
				t.Fatalf("CHECK: exit %d: %s", rc, out)
			}
			// CHECK notices a lost route.
			sb.ns["/run/netns/pod"]["eth0"].Routes = nil
			if rc, out := call(t, p, "CHECK", "/run/netns/pod", "", checkConf); rc == 0 {
				t.Errorf("CHECK passed with the default route gone: %s", out)
			}

			for i := range 2 {
				if rc, out := call(t, p, "DEL", "/run/netns/pod", "", conf); rc != 0 || len(out) != 0 {
					t.Fatalf("DEL #%d: exit %d: %s", i+1, rc, out)
				}
			}
			if len(r.att) != 0 || len(sb.ns["/run/netns/pod"]) != 0 || len(r.dns) != 0 {
				t.Errorf("after DEL: attachments %v, links %v, names %v", r.att, sb.ns["/run/netns/pod"], r.dns)
			}
		})
	}
}

func TestAddNoGateway(t *testing.T) {
	r, sb := newFakes()
	sb.ns["/run/netns/pod"] = map[string]*Link{}
	p := newPlugin(r, sb, &fakeIPAM{})
	rc, out := call(t, p, "ADD", "/run/netns/pod", "", []byte(`{"cniVersion":"1.0.0","name":"weave","ipam":{"subnet":"10.40.0.0/24"}}`))
	if rc != 0 {
		t.Fatalf("ADD: exit %d: %s", rc, out)
	}
	res, err := types100.NewResult(out)
	if err != nil {
		t.Fatal(err)
	}
	r100 := res.(*types100.Result)
	if len(r100.Routes) != 0 || r100.IPs[0].Gateway != nil || r100.IPs[0].Address.String() != "10.40.0.2/24" {
		t.Errorf("without an exposed host: ips %v routes %v, want 10.40.0.2/24, no gateway, no routes", r100.IPs, r100.Routes)
	}
}

func TestAddDelegatedIPAM(t *testing.T) {
	r, sb := newFakes()
	sb.ns["/run/netns/pod"] = map[string]*Link{}
	ipam := &fakeIPAM{}
	p := newPlugin(r, sb, ipam)
	conf := []byte(`{"cniVersion":"0.4.0","name":"weave","ipam":{"type":"host-local","ranges":[[{"subnet":"10.9.0.0/24"}]]}}`)
	rc, out := call(t, p, "ADD", "/run/netns/pod", "", conf)
	if rc != 0 {
		t.Fatalf("ADD: exit %d: %s", rc, out)
	}
	res, err := types040.NewResult(out)
	if err != nil {
		t.Fatalf("not a 0.4.0 result: %v", err)
	}
	r040 := res.(*types040.Result)
	if len(r040.IPs) != 1 || r040.IPs[0].Address.String() != "10.9.0.2/24" || r040.IPs[0].Gateway.String() != "10.9.0.1" {
		t.Errorf("ips %v", r040.IPs)
	}
	if len(r040.Routes) != 1 || r040.Routes[0].Dst.String() != "10.96.0.0/12" || r040.Routes[0].GW.String() != "10.9.0.1" {
		t.Errorf("routes %v, want the IPAM plugin's via its gateway", r040.Routes)
	}
	if got := r.att["netns:/run/netns/pod"]; got == nil || !slices.Equal(got.Addrs, []string{"10.9.0.2/24"}) {
		t.Errorf("router attached %+v, want the IPAM plugin's address", got)
	}
	if rc, out := call(t, p, "DEL", "/run/netns/pod", "", conf); rc != 0 {
		t.Fatalf("DEL: exit %d: %s", rc, out)
	}
	if ipam.held != 0 {
		t.Errorf("the IPAM plugin still holds %d addresses after DEL", ipam.held)
	}
}

func TestErrors(t *testing.T) {
	good := []byte(`{"cniVersion":"1.0.0","name":"weave","type":"weave-net"}`)
	tests := []struct {
		name  string
		cmd   string
		netns string
		args  string
		conf  []byte
		down  bool
		code  uint
	}{
		{name: "not json", cmd: "ADD", conf: []byte(`{"cniVersion":`), code: types.ErrDecodingFailure},
		{name: "no name", cmd: "ADD", conf: []byte(`{"cniVersion":"1.0.0","type":"weave-net"}`), code: types.ErrInvalidNetworkConfig},
		{name: "bad subnet", cmd: "ADD", conf: []byte(`{"cniVersion":"1.0.0","name":"weave","ipam":{"subnet":"banana"}}`), code: types.ErrInvalidNetworkConfig},
		{name: "unknown version", cmd: "ADD", conf: []byte(`{"cniVersion":"9.9.9","name":"weave"}`), code: types.ErrIncompatibleCNIVersion},
		{name: "old version", cmd: "ADD", conf: []byte(`{"cniVersion":"0.3.1","name":"weave"}`), code: types.ErrIncompatibleCNIVersion},
		{name: "bad CNI_ARGS", cmd: "ADD", args: "K8S_POD_NAME", conf: good, code: types.ErrInvalidEnvironmentVariables},
		{name: "no netns", cmd: "ADD", netns: "/run/netns/none", conf: good, code: types.ErrInvalidNetNS},
		{name: "router down", cmd: "ADD", conf: good, down: true, code: types.ErrTryAgainLater},
		{name: "status router down", cmd: "STATUS", conf: []byte(`{"cniVersion":"1.1.0","name":"weave"}`), down: true, code: types.ErrPluginNotAvailable},
		{name: "check without prevResult", cmd: "CHECK", conf: good, code: types.ErrInvalidNetworkConfig},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, sb := newFakes()
			r.down = tt.down
			sb.ns["/run/netns/pod"] = map[string]*Link{}
			netns := tt.netns
			if netns == "" {
				netns = "/run/netns/pod"
			}
			rc, out := call(t, newPlugin(r, sb, &fakeIPAM{}), tt.cmd, netns, tt.args, tt.conf)
			wantCNIError(t, rc, out, tt.code)
		})
	}
}

func TestStatusAndVersion(t *testing.T) {
	r, sb := newFakes()
	p := newPlugin(r, sb, &fakeIPAM{})
	if rc, out := call(t, p, "STATUS", "", "", []byte(`{"cniVersion":"1.1.0","name":"weave","type":"weave-net"}`)); rc != 0 {
		t.Fatalf("STATUS: exit %d: %s", rc, out)
	}
	rc, out := call(t, p, "VERSION", "", "", []byte(`{"cniVersion":"1.1.0"}`))
	if rc != 0 {
		t.Fatalf("VERSION: exit %d: %s", rc, out)
	}
	info, err := (&version.PluginDecoder{}).Decode(out)
	if err != nil {
		t.Fatalf("VERSION output %s: %v", out, err)
	}
	for _, v := range []string{"0.4.0", "1.0.0", "1.1.0"} {
		if !slices.Contains(info.SupportedVersions(), v) {
			t.Errorf("VERSION says %v, want %s among them", info.SupportedVersions(), v)
		}
	}
}

func TestDelRouterDown(t *testing.T) {
	r, sb := newFakes()
	sb.ns["/run/netns/pod"] = map[string]*Link{}
	p := newPlugin(r, sb, &fakeIPAM{})
	conf := []byte(`{"cniVersion":"1.0.0","name":"weave","type":"weave-net"}`)
	if rc, out := call(t, p, "ADD", "/run/netns/pod", "", conf); rc != 0 {
		t.Fatalf("ADD: exit %d: %s", rc, out)
	}
	r.down = true
	for i := range 2 {
		if rc, out := call(t, p, "DEL", "/run/netns/pod", "", conf); rc != 0 {
			t.Fatalf("DEL #%d with the router down: exit %d: %s", i+1, rc, out)
		}
	}
	if len(sb.ns["/run/netns/pod"]) != 0 {
		t.Errorf("eth0 left in the pod: %v", sb.ns["/run/netns/pod"])
	}
	// Without CNI_NETNS (the runtime lost it) DEL succeeds too.
	if rc, out := call(t, p, "DEL", "", "", conf); rc != 0 {
		t.Fatalf("DEL without CNI_NETNS: exit %d: %s", rc, out)
	}
}
