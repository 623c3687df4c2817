// Package cni is the weave CNI plugin: what the weave binary does when a
// container runtime (kubelet through containerd or CRI-O, Podman, nerdctl)
// runs it as `weave-net` with CNI_COMMAND and a network config on stdin.
//
// The router does the work: ADD asks it to attach the pod's network
// namespace (netns:CNI_NETNS) with the interface named CNI_IFNAME, with an
// address from its IPAM (or the one a delegated IPAM plugin such as
// host-local returned); DEL asks it to detach. The plugin itself only
// reads and sets up the pod's side (routes) and builds the CNI result. It
// also installs itself (Install, behind `weave setup-cni`).
//
// Spec versions 0.4.0, 1.0.0 and 1.1.0 are served; errors carry the spec's
// codes (see errors.go).
package cni

import (
	"encoding/json"
	"fmt"
	"net"
	"net/netip"
	"strings"

	"github.com/containernetworking/cni/pkg/types"
	"github.com/containernetworking/cni/pkg/version"
)

// PluginName is the plugin's type in a network config, and the name the
// weave binary answers to as a CNI plugin.
const PluginName = "weave-net"

// SupportedVersions are the CNI spec versions the plugin speaks.
var SupportedVersions = version.PluginSupports("0.4.0", "1.0.0", "1.1.0")

// IPAM types that mean "the router's own IPAM"; any other type names an
// IPAM plugin that the plugin delegates to (found in CNI_PATH).
var weaveIPAMTypes = []string{"", "weave-ipam", PluginName}

// NetConf is the plugin's network config:
//
//	{
//	  "cniVersion": "1.0.0", "name": "weave", "type": "weave-net",
//	  "registerDNS": true,
//	  "ipam": {"subnet": "10.32.0.0/24", "routes": [{"dst": "0.0.0.0/0"}]}
//	}
//
// With no "ipam", or ipam type "weave-ipam", the router allocates from its
// range (from "subnet" when given, else its default subnet). Any other
// ipam type is a CNI IPAM plugin run on the same config (e.g. host-local);
// the router then attaches the address that plugin returned.
type NetConf struct {
	types.PluginConf
	// IPAM shadows PluginConf.IPAM with the fields the router's IPAM reads.
	IPAM IPAMConf `json:"ipam"`
	// RegisterDNS registers the pod in weaveDNS as K8S_POD_NAME.DOMAIN
	// (from CNI_ARGS) with its addresses, until DEL.
	RegisterDNS bool `json:"registerDNS,omitempty"`
}

// IPAMConf is the "ipam" section. Type and Routes apply to every IPAM;
// Subnet only to the router's.
type IPAMConf struct {
	Type string `json:"type,omitempty"`
	// Subnet to allocate from (a CIDR inside the router's range); empty
	// means the router's default subnet.
	Subnet string `json:"subnet,omitempty"`
	// Routes to set in the pod; a route without "gw" goes via the
	// gateway (the host's address on the pod's subnet, see DESIGN of
	// Plugin.Add) or, without one, straight out of the interface.
	Routes []*types.Route `json:"routes,omitempty"`
}

// Delegated reports whether an IPAM plugin, not the router, allocates.
func (c *NetConf) Delegated() bool {
	for _, t := range weaveIPAMTypes {
		if c.IPAM.Type == t {
			return false
		}
	}
	return true
}

// ParseConf decodes and checks a network config. Its errors are
// *types.Error with code ErrDecodingFailure (not JSON) or
// ErrInvalidNetworkConfig.
func ParseConf(data []byte) (*NetConf, error) {
	var c NetConf
	if err := json.Unmarshal(data, &c); err != nil {
		return nil, types.NewError(types.ErrDecodingFailure, "decode network config", err.Error())
	}
	invalid := func(format string, a ...any) error {
		return types.NewError(types.ErrInvalidNetworkConfig, "invalid network config", fmt.Sprintf(format, a...))
	}
	if c.Name == "" {
		return nil, invalid("no \"name\"")
	}
	if c.Type != "" && c.Type != PluginName {
		return nil, invalid("\"type\" is %q, want %q", c.Type, PluginName)
	}
	if c.IPAM.Subnet != "" {
		if c.Delegated() {
			return nil, invalid("ipam \"subnet\" is for the router's IPAM; the %s plugin reads its own config", c.IPAM.Type)
		}
		p, err := netip.ParsePrefix(c.IPAM.Subnet)
		if err != nil || !p.Addr().Is4() || p.Masked() != p {
			return nil, invalid("ipam \"subnet\" %q is not an IPv4 network in CIDR form (e.g. 10.32.0.0/24)", c.IPAM.Subnet)
		}
	}
	for _, r := range c.IPAM.Routes {
		if r == nil || r.Dst.IP == nil {
			return nil, invalid("ipam route without \"dst\"")
		}
		if r.Dst.IP.To4() == nil {
			return nil, invalid("ipam route %s: only IPv4 is supported", r.Dst.String())
		}
	}
	return &c, nil
}

// PodArgs are the CNI_ARGS the plugin reads; others are ignored (as if
// IgnoreUnknown were always set).
type PodArgs struct {
	PodName      string // K8S_POD_NAME
	PodNamespace string // K8S_POD_NAMESPACE
}

// ParseArgs parses CNI_ARGS ("K=V;K=V"). A pair without "=" is an
// ErrInvalidEnvironmentVariables error.
func ParseArgs(s string) (PodArgs, error) {
	var a PodArgs
	if s == "" {
		return a, nil
	}
	for _, kv := range strings.Split(s, ";") {
		if kv == "" {
			continue
		}
		k, v, ok := strings.Cut(kv, "=")
		if !ok {
			return PodArgs{}, types.NewError(types.ErrInvalidEnvironmentVariables, "invalid CNI_ARGS", fmt.Sprintf("%q is not KEY=VALUE", kv))
		}
		switch k {
		case "K8S_POD_NAME":
			a.PodName = v
		case "K8S_POD_NAMESPACE":
			a.PodNamespace = v
		}
	}
	return a, nil
}

// DNSName is the name a pod is registered under in weaveDNS: its pod name
// in the domain (which ends with a dot). Empty when it has no pod name.
func (a PodArgs) DNSName(domain string) string {
	if a.PodName == "" {
		return ""
	}
	return strings.ToLower(a.PodName) + "." + strings.TrimPrefix(domain, ".")
}

// ipNet turns a prefix into the CNI library's address form.
func ipNet(p netip.Prefix) net.IPNet {
	return net.IPNet{IP: net.IP(p.Addr().AsSlice()), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
}

// prefixOf is the inverse of ipNet.
func prefixOf(n net.IPNet) (netip.Prefix, bool) {
	a, ok := netip.AddrFromSlice(n.IP)
	if !ok {
		return netip.Prefix{}, false
	}
	ones, _ := n.Mask.Size()
	return netip.PrefixFrom(a.Unmap(), ones), true
}
