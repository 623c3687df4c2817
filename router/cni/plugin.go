package cni

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"slices"
	"time"

	"github.com/containernetworking/cni/pkg/invoke"
	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/types"
	types100 "github.com/containernetworking/cni/pkg/types/100"
	"github.com/containernetworking/cni/pkg/version"

	"github.com/weavelab/weave/router/api"
)

// Router is the part of the router's API the plugin uses; *api.Client is
// the real one. Every call may fail with api.ErrNotRunning (wrapped).
type Router interface {
	Version(ctx context.Context) (api.Version, error)
	Status(ctx context.Context) (api.Status, error)
	AttachRequest(ctx context.Context, req api.AttachRequest) ([]string, error)
	Detach(ctx context.Context, container string, addrs []string) error
	PS(ctx context.Context, containers []string) ([]api.Container, error)
	DNSAdd(ctx context.Context, req api.DNSRequest) ([]api.DNSEntry, error)
}

var _ Router = (*api.Client)(nil)

// Link is a pod's interface as the kernel shows it.
type Link struct {
	MAC    string
	MTU    int
	Up     bool
	Addrs  []netip.Prefix // IPv4
	Routes []Route        // IPv4 routes through the interface
}

// Route is a route of a pod: Gw invalid for a route straight out of the
// interface.
type Route struct {
	Dst netip.Prefix
	Gw  netip.Addr
}

// ErrNoNetns is returned (wrapped) by a Sandbox when the namespace file is
// gone.
var ErrNoNetns = errors.New("no such network namespace")

// Sandbox is the pod's side: its network namespace, named by the path the
// runtime gives (CNI_NETNS). The real one works in the kernel through
// netlink (NewSandbox).
type Sandbox interface {
	// Link returns the interface ifName, or nil if there is none.
	Link(netns, ifName string) (*Link, error)
	// AddRoutes adds (or replaces) routes through ifName.
	AddRoutes(netns, ifName string, routes []Route) error
	// DeleteLink deletes ifName; a missing interface or namespace is not
	// an error.
	DeleteLink(netns, ifName string) error
}

// Delegate runs a delegated IPAM plugin with the same config. The real one
// is the CNI library's invoke package (InvokeDelegate), which finds the
// plugin in CNI_PATH.
type Delegate interface {
	Add(ctx context.Context, typ string, conf []byte) (types.Result, error)
	Check(ctx context.Context, typ string, conf []byte) error
	Del(ctx context.Context, typ string, conf []byte) error
	Status(ctx context.Context, typ string, conf []byte) error
	GC(ctx context.Context, typ string, conf []byte) error
}

// InvokeDelegate is the Delegate of the CNI library.
type InvokeDelegate struct{}

var _ Delegate = InvokeDelegate{}

func (InvokeDelegate) Add(ctx context.Context, typ string, conf []byte) (types.Result, error) {
	return invoke.DelegateAdd(ctx, typ, conf, nil)
}
func (InvokeDelegate) Check(ctx context.Context, typ string, conf []byte) error {
	return invoke.DelegateCheck(ctx, typ, conf, nil)
}
func (InvokeDelegate) Del(ctx context.Context, typ string, conf []byte) error {
	return invoke.DelegateDel(ctx, typ, conf, nil)
}
func (InvokeDelegate) Status(ctx context.Context, typ string, conf []byte) error {
	return invoke.DelegateStatus(ctx, typ, conf, nil)
}
func (InvokeDelegate) GC(ctx context.Context, typ string, conf []byte) error {
	return invoke.DelegateGC(ctx, typ, conf, nil)
}

// Plugin serves the CNI commands. Its fields must be set; it keeps no
// state between calls (each runtime call is a new process).
type Plugin struct {
	Router  Router
	Sandbox Sandbox
	IPAM    Delegate
	Log     *slog.Logger
	// Timeout bounds one command.
	Timeout time.Duration
}

// DefaultTimeout bounds one command; a runtime usually gives a plugin
// minutes, and the router answers in milliseconds unless IPAM waits for
// its peers.
const DefaultTimeout = 60 * time.Second

// Main runs one CNI command as the runtime asked (environment and stdin),
// prints the result or the error JSON to stdout, and returns the exit
// code: 0, or 1 with the error printed. It uses os.Stdin and os.Stdout, as
// the CNI library's dispatcher does.
func (p *Plugin) Main() int {
	stdout := os.Stdout
	print := func(r types.Result, conf []byte) error {
		ver, err := (&version.ConfigDecoder{}).Decode(conf)
		if err != nil {
			return types.NewError(types.ErrDecodingFailure, "decode network config", err.Error())
		}
		out, err := r.GetAsVersion(ver)
		if err != nil {
			return types.NewError(types.ErrIncompatibleCNIVersion, "convert result", err.Error())
		}
		return out.PrintTo(stdout)
	}
	funcs := skel.CNIFuncs{
		Add: func(args *skel.CmdArgs) error {
			r, err := p.Add(args)
			if err != nil {
				return err
			}
			return print(r, args.StdinData)
		},
		Del:    p.Del,
		Check:  p.Check,
		Status: p.Status,
		GC:     p.GC,
	}
	if e := skel.PluginMainFuncsWithError(funcs, SupportedVersions, "CNI plugin weave-net: the weave overlay network"); e != nil {
		// The error JSON as the CNI library writes it (types.Error.Print,
		// which knows only os.Stdout).
		b, _ := json.MarshalIndent(e, "", "    ")
		if _, err := stdout.Write(b); err != nil {
			p.Log.Error("cannot write the error to stdout", "err", err)
		}
		return 1
	}
	return 0
}

func (p *Plugin) context() (context.Context, context.CancelFunc) {
	t := p.Timeout
	if t <= 0 {
		t = DefaultTimeout
	}
	return context.WithTimeout(context.Background(), t)
}

// containerRef is how the router names the pod: its namespace by path.
func containerRef(netns string) string { return "netns:" + netns }

// Add attaches the pod and returns the result (the interface, its
// addresses, routes and DNS) as a 1.x result; Main converts it to the
// config's version.
//
// Routes: those of the config's ipam section or of the delegated IPAM's
// result; with none, a default route via the gateway when there is one.
// The gateway is the delegated IPAM's, or else the host's own address on
// the pod's subnet (`weave expose`), as Weave Net's plugin did: pods then
// reach the host (and what the host forwards: Kubernetes services, the
// internet). Without a gateway pods reach only the overlay.
func (p *Plugin) Add(args *skel.CmdArgs) (types.Result, error) {
	conf, err := ParseConf(args.StdinData)
	if err != nil {
		return nil, err
	}
	pod, err := ParseArgs(args.Args)
	if err != nil {
		return nil, err
	}
	ctx, cancel := p.context()
	defer cancel()
	log := p.Log.With("container", args.ContainerID, "netns", args.Netns, "ifname", args.IfName)

	if link, err := p.Sandbox.Link(args.Netns, args.IfName); errors.Is(err, ErrNoNetns) {
		return nil, types.NewError(types.ErrInvalidNetNS, "invalid CNI_NETNS", err.Error())
	} else if err != nil {
		return nil, types.NewError(types.ErrIOFailure, "read the pod's network namespace", err.Error())
	} else if link != nil {
		return nil, types.NewError(types.ErrInternal, "interface exists", fmt.Sprintf("the pod already has %s (DEL it first)", args.IfName))
	}
	st, err := p.Router.Status(ctx)
	if err != nil {
		return nil, routerError("ask the weave router", err)
	}

	// Addresses: from the delegated IPAM plugin, or the router's.
	var addrs []string
	var ipamRes *types100.Result
	undoIPAM := func() {}
	if conf.Delegated() {
		r, err := p.IPAM.Add(ctx, conf.IPAM.Type, args.StdinData)
		if err != nil {
			return nil, delegateError(conf.IPAM.Type, err)
		}
		undoIPAM = func() {
			if err := p.IPAM.Del(ctx, conf.IPAM.Type, args.StdinData); err != nil {
				log.Warn("cannot release the address of the IPAM plugin", "ipam", conf.IPAM.Type, "err", err)
			}
		}
		if ipamRes, err = types100.NewResultFromResult(r); err != nil {
			undoIPAM()
			return nil, types.NewError(types.ErrDecodingFailure, "decode the IPAM plugin's result", err.Error())
		}
		for _, ip := range ipamRes.IPs {
			pr, ok := prefixOf(ip.Address)
			if !ok || !pr.Addr().Is4() {
				undoIPAM()
				return nil, types.NewError(types.ErrInvalidNetworkConfig, "invalid network config", fmt.Sprintf("the %s plugin gave %s: weave supports IPv4 only", conf.IPAM.Type, ip.Address.String()))
			}
			addrs = append(addrs, pr.String())
		}
		if len(addrs) == 0 {
			undoIPAM()
			return nil, types.NewError(types.ErrInternal, "no address", fmt.Sprintf("the %s plugin gave no address", conf.IPAM.Type))
		}
	} else if conf.IPAM.Subnet != "" {
		addrs = []string{"net:" + conf.IPAM.Subnet}
	}

	container := containerRef(args.Netns)
	got, err := p.Router.AttachRequest(ctx, api.AttachRequest{Container: container, IfName: args.IfName, Addrs: addrs, WithoutDNS: true})
	if err != nil {
		undoIPAM()
		return nil, routerError("attach the pod", err)
	}
	undo := func() {
		if err := p.Router.Detach(ctx, container, nil); err != nil {
			log.Warn("cannot detach the pod after a failed ADD", "err", err)
		}
		undoIPAM()
	}
	res, err := p.finishAdd(ctx, conf, pod, args, st, got, ipamRes)
	if err != nil {
		undo()
		return nil, err
	}
	log.Info("attached", "addrs", got)
	return res, nil
}

// finishAdd sets the routes, registers the name and builds the result for
// an attached pod.
func (p *Plugin) finishAdd(ctx context.Context, conf *NetConf, pod PodArgs, args *skel.CmdArgs, st api.Status, got []string, ipamRes *types100.Result) (*types100.Result, error) {
	link, err := p.Sandbox.Link(args.Netns, args.IfName)
	if err == nil && link == nil {
		err = fmt.Errorf("%s is missing after attach", args.IfName)
	}
	if err != nil {
		return nil, types.NewError(types.ErrIOFailure, "read the pod's interface", err.Error())
	}
	var prefixes []netip.Prefix
	for _, s := range got {
		pr, err := netip.ParsePrefix(s)
		if err != nil {
			return nil, types.NewError(types.ErrDecodingFailure, "decode the router's answer", err.Error())
		}
		prefixes = append(prefixes, pr)
	}

	// The gateway of each address.
	gws := make([]netip.Addr, len(prefixes))
	if ipamRes != nil {
		for i, pr := range prefixes {
			for _, ip := range ipamRes.IPs {
				if a, ok := prefixOf(ip.Address); ok && a == pr && ip.Gateway != nil {
					gws[i], _ = netip.AddrFromSlice(ip.Gateway.To4())
				}
			}
		}
	} else {
		cs, err := p.Router.PS(ctx, nil)
		if err != nil {
			return nil, routerError("list the host's addresses", err)
		}
		var exposed []netip.Prefix
		for _, c := range cs {
			if c.ID == api.ExposeID {
				for _, s := range c.Addrs {
					if e, err := netip.ParsePrefix(s); err == nil {
						exposed = append(exposed, e)
					}
				}
			}
		}
		for i, pr := range prefixes {
			for _, e := range exposed {
				if e.Masked() == pr.Masked() {
					gws[i] = e.Addr()
					break
				}
			}
		}
	}
	gw := netip.Addr{}
	if i := slices.IndexFunc(gws, netip.Addr.IsValid); i >= 0 {
		gw = gws[i]
	}

	// Routes.
	var want []*types.Route
	switch {
	case len(conf.IPAM.Routes) > 0:
		want = conf.IPAM.Routes
	case ipamRes != nil && len(ipamRes.Routes) > 0:
		want = ipamRes.Routes
	case gw.IsValid():
		want = []*types.Route{{Dst: net.IPNet{IP: net.IPv4zero.To4(), Mask: net.CIDRMask(0, 32)}}}
	}
	var routes []Route
	var resRoutes []*types.Route
	for _, r := range want {
		dst, ok := prefixOf(r.Dst)
		if !ok || !dst.Addr().Is4() {
			continue // IPv6 routes of a delegated IPAM: weave has no IPv6
		}
		rt := Route{Dst: dst.Masked(), Gw: gw}
		if r.GW != nil {
			rt.Gw, _ = netip.AddrFromSlice(r.GW.To4())
		}
		routes = append(routes, rt)
		out := &types.Route{Dst: ipNet(rt.Dst)}
		if rt.Gw.IsValid() {
			out.GW = net.IP(rt.Gw.AsSlice())
		}
		resRoutes = append(resRoutes, out)
	}
	if len(routes) > 0 {
		if err := p.Sandbox.AddRoutes(args.Netns, args.IfName, routes); err != nil {
			return nil, types.NewError(types.ErrIOFailure, "set the pod's routes", err.Error())
		}
	}

	// weaveDNS.
	var dnsRes types.DNS
	if st.DNS != nil {
		if conf.RegisterDNS {
			if name := pod.DNSName(st.DNS.Domain); name != "" {
				if _, err := p.Router.DNSAdd(ctx, api.DNSRequest{Container: containerRef(args.Netns), FQDN: name}); err != nil {
					return nil, routerError("register "+name+" in weaveDNS", err)
				}
			}
		}
		if ap, err := netip.ParseAddrPort(st.DNS.Address); err == nil {
			dnsRes = types.DNS{Nameservers: []string{ap.Addr().String()}, Search: []string{stripDot(st.DNS.Domain)}}
		}
	}
	if len(conf.DNS.Nameservers) > 0 {
		dnsRes = conf.DNS
	} else if ipamRes != nil && len(ipamRes.DNS.Nameservers) > 0 {
		dnsRes = ipamRes.DNS
	}

	res := &types100.Result{
		CNIVersion: types100.ImplementedSpecVersion,
		Interfaces: []*types100.Interface{{Name: args.IfName, Mac: link.MAC, Sandbox: args.Netns}},
		Routes:     resRoutes,
		DNS:        dnsRes,
	}
	if ok, _ := version.GreaterThanOrEqualTo(conf.CNIVersion, "1.1.0"); ok {
		res.Interfaces[0].Mtu = link.MTU
	}
	for i, pr := range prefixes {
		ip := &types100.IPConfig{Interface: types100.Int(0), Address: ipNet(pr)}
		if gws[i].IsValid() {
			ip.Gateway = net.IP(gws[i].AsSlice())
		}
		res.IPs = append(res.IPs, ip)
	}
	return res, nil
}

func stripDot(s string) string {
	if len(s) > 1 && s[len(s)-1] == '.' {
		return s[:len(s)-1]
	}
	return s
}

// Del detaches the pod. It is idempotent, and works with the router down:
// it then deletes the pod's interface itself, and the router, when it
// starts, finds the interface (or the namespace) gone and frees the
// addresses after its grace period. A delegated IPAM plugin always gets
// DEL.
func (p *Plugin) Del(args *skel.CmdArgs) error {
	conf, err := ParseConf(args.StdinData)
	if err != nil {
		return err
	}
	ctx, cancel := p.context()
	defer cancel()
	log := p.Log.With("container", args.ContainerID, "netns", args.Netns, "ifname", args.IfName)
	if args.Netns != "" {
		container := containerRef(args.Netns)
		err := p.Router.Detach(ctx, container, nil)
		switch {
		case err == nil:
			log.Info("detached")
		case errors.Is(err, api.ErrNotRunning):
			log.Info("the weave router is not running: deleting the interface; the router frees the addresses when it starts", "err", err)
		default:
			// "not attached" (a second DEL, or ADD failed) is success:
			// check that the router holds nothing for the pod.
			if attached, perr := p.attached(ctx, container); perr != nil || attached != nil {
				return routerError("detach the pod", err)
			}
		}
		if err := p.Sandbox.DeleteLink(args.Netns, args.IfName); err != nil {
			return types.NewError(types.ErrIOFailure, "delete the pod's interface", err.Error())
		}
	}
	if conf.Delegated() {
		if err := p.IPAM.Del(ctx, conf.IPAM.Type, args.StdinData); err != nil {
			return delegateError(conf.IPAM.Type, err)
		}
	}
	return nil
}

// attached returns the router's attachment of container, or nil.
func (p *Plugin) attached(ctx context.Context, container string) (*api.Container, error) {
	cs, err := p.Router.PS(ctx, nil)
	if err != nil {
		return nil, err
	}
	for i := range cs {
		if cs[i].ID == container {
			return &cs[i], nil
		}
	}
	return nil, nil
}

// Check verifies that the pod is as ADD left it (the config's prevResult):
// attached with its addresses, its interface up with the MAC, MTU,
// addresses and routes of the result.
func (p *Plugin) Check(args *skel.CmdArgs) error {
	conf, err := ParseConf(args.StdinData)
	if err != nil {
		return err
	}
	if err := version.ParsePrevResult(&conf.PluginConf); err != nil {
		return types.NewError(types.ErrDecodingFailure, "decode prevResult", err.Error())
	}
	if conf.PrevResult == nil {
		return types.NewError(types.ErrInvalidNetworkConfig, "invalid network config", "CHECK needs a prevResult")
	}
	prev, err := types100.NewResultFromResult(conf.PrevResult)
	if err != nil {
		return types.NewError(types.ErrDecodingFailure, "decode prevResult", err.Error())
	}
	ctx, cancel := p.context()
	defer cancel()
	st, err := p.Router.Status(ctx)
	if err != nil {
		return routerError("ask the weave router", err)
	}
	failed := func(format string, a ...any) error {
		return types.NewError(types.ErrInternal, "CHECK failed", fmt.Sprintf(format, a...))
	}
	container := containerRef(args.Netns)
	att, err := p.attached(ctx, container)
	if err != nil {
		return routerError("list attachments", err)
	}
	if att == nil {
		return failed("the weave router has no attachment of %s", container)
	}
	link, err := p.Sandbox.Link(args.Netns, args.IfName)
	if errors.Is(err, ErrNoNetns) {
		return types.NewError(types.ErrInvalidNetNS, "invalid CNI_NETNS", err.Error())
	}
	if err != nil {
		return types.NewError(types.ErrIOFailure, "read the pod's interface", err.Error())
	}
	if link == nil {
		return failed("the pod has no interface %s", args.IfName)
	}
	if !link.Up {
		return failed("%s is down", args.IfName)
	}
	if st.MTU > 0 && link.MTU != st.MTU {
		return failed("%s has MTU %d, the overlay's is %d", args.IfName, link.MTU, st.MTU)
	}
	for _, i := range prev.Interfaces {
		if i.Sandbox != "" && i.Name == args.IfName && i.Mac != "" && i.Mac != link.MAC {
			return failed("%s has MAC %s, the result said %s", args.IfName, link.MAC, i.Mac)
		}
	}
	for _, ip := range prev.IPs {
		pr, ok := prefixOf(ip.Address)
		if !ok {
			continue
		}
		if !slices.Contains(att.Addrs, pr.String()) {
			return failed("the weave router has %v for the pod, not %s", att.Addrs, pr)
		}
		if !slices.Contains(link.Addrs, pr) {
			return failed("%s has %v, not %s", args.IfName, link.Addrs, pr)
		}
	}
	for _, r := range prev.Routes {
		dst, ok := prefixOf(r.Dst)
		if !ok || !dst.Addr().Is4() {
			continue
		}
		want := Route{Dst: dst.Masked()}
		if r.GW != nil {
			want.Gw, _ = netip.AddrFromSlice(r.GW.To4())
		}
		if !slices.Contains(link.Routes, want) {
			return failed("the pod has no route %s via %v", want.Dst, want.Gw)
		}
	}
	if conf.Delegated() {
		if err := p.IPAM.Check(ctx, conf.IPAM.Type, args.StdinData); err != nil {
			return delegateError(conf.IPAM.Type, err)
		}
	}
	return nil
}

// Status says whether the plugin can ADD: the router must answer (and a
// delegated IPAM plugin be ready).
func (p *Plugin) Status(args *skel.CmdArgs) error {
	conf, err := ParseConf(args.StdinData)
	if err != nil {
		return err
	}
	ctx, cancel := p.context()
	defer cancel()
	if _, err := p.Router.Version(ctx); err != nil {
		return types.NewError(types.ErrPluginNotAvailable, "the weave router is not available", err.Error())
	}
	if conf.Delegated() {
		if err := p.IPAM.Status(ctx, conf.IPAM.Type, args.StdinData); err != nil {
			return delegateError(conf.IPAM.Type, err)
		}
	}
	return nil
}

// GC has nothing of its own to collect (the router frees the addresses of
// namespaces that vanish); it passes GC on to a delegated IPAM plugin.
func (p *Plugin) GC(args *skel.CmdArgs) error {
	conf, err := ParseConf(args.StdinData)
	if err != nil {
		return err
	}
	if !conf.Delegated() {
		return nil
	}
	ctx, cancel := p.context()
	defer cancel()
	if err := p.IPAM.GC(ctx, conf.IPAM.Type, args.StdinData); err != nil {
		return delegateError(conf.IPAM.Type, err)
	}
	return nil
}
