package main

import (
	"context"
	"fmt"
)

// The kernel VXLAN baseline: in each host a VXLAN device to the other host,
// a bridge, and a veth to the container, the way weave joins a container
// to its bridge, so that only the encapsulation differs.
const (
	vxlanID     = "42"
	vxlanPort   = "4789"
	vxlanDev    = "vx42"
	vxlanBridge = "vxbr"
	vxlanVeth   = "vxh"   // host end of the container's veth
	vxlanCtrIf  = "ethvx" // container end
	vxlanSubnet = "10.41.0"
)

// setupVXLAN joins the two containers through kernel VXLAN, with the
// container links (veth and bridge ports) at mtu. Each step pushes its
// undo to undo.
func setupVXLAN(ctx context.Context, l *lab, mtu int, undo *cleanups) (*endpoints, error) {
	for i, h := range l.hosts {
		other := l.hosts[1-i]
		// Deleting the host end of the veth deletes the container end.
		for _, dev := range []string{vxlanVeth, vxlanBridge, vxlanDev} {
			undo.push(fmt.Sprintf("delete %s in %s", dev, h.name), func() error {
				ctx, cancel := context.WithTimeout(context.Background(), cmdTimeout)
				defer cancel()
				if _, err := h.run(ctx, nil, "ip", "link", "show", dev); err != nil {
					return nil // never made, or gone with its peer
				}
				return h.must(ctx, "ip", "link", "del", dev)
			})
		}
		mtuArg := fmt.Sprint(mtu)
		steps := []struct {
			ns   netns
			args []string
		}{
			{h.netns, []string{"ip", "link", "add", vxlanDev, "type", "vxlan", "id", vxlanID,
				"local", h.ip, "remote", other.ip, "dstport", vxlanPort, "dev", lanIf}},
			{h.netns, []string{"ip", "link", "add", vxlanBridge, "type", "bridge"}},
			{h.netns, []string{"ip", "link", "set", vxlanDev, "mtu", mtuArg, "master", vxlanBridge, "up"}},
			{h.netns, []string{"ip", "link", "add", vxlanVeth, "mtu", mtuArg, "type", "veth",
				"peer", "name", vxlanCtrIf, "mtu", mtuArg, "netns", h.container.name}},
			{h.netns, []string{"ip", "link", "set", vxlanVeth, "master", vxlanBridge, "up"}},
			{h.netns, []string{"ip", "link", "set", vxlanBridge, "up"}},
			{h.container, []string{"ip", "addr", "add", fmt.Sprintf("%s.%d/24", vxlanSubnet, i+1), "dev", vxlanCtrIf}},
			{h.container, []string{"ip", "link", "set", vxlanCtrIf, "up"}},
		}
		for _, s := range steps {
			if err := s.ns.must(ctx, s.args...); err != nil {
				return nil, fmt.Errorf("vxlan: %w", err)
			}
		}
	}
	mtu, err := linkMTU(ctx, l.hosts[0].container, vxlanCtrIf)
	if err != nil {
		return nil, fmt.Errorf("vxlan: %w", err)
	}
	return &endpoints{dst: vxlanSubnet + ".2", mtu: mtu}, nil
}
