// Package router composes the host side of the overlay for the daemon: the
// `weave` bridge and the router's TAP port on it (for the data plane), and
// the containers attached to the bridge (weave attach, detach, ps) and the
// host's own addresses on it (weave expose, hide). Attachments are recorded
// in the state directory so that ps survives a daemon restart.
package router

import (
	"errors"
	"log/slog"
	"net/netip"
)

// Defaults, as in Weave Net.
const (
	DefaultBridge = "weave"
	DefaultMTU    = 1376
	// MaxHostMTU is the most a TAP takes (65535 less its Ethernet header).
	MaxHostMTU = 65521
)

// ErrClosed is returned by a Router after Close or Reset.
var ErrClosed = errors.New("router closed")

// ErrNotAttached is wrapped by the errors of PS and Detach for a container
// that weave has not attached.
var ErrNotAttached = errors.New("not attached")

// Config configures a Router. Zero fields take the DefaultConfig values.
type Config struct {
	// Bridge is the Linux bridge's name.
	Bridge string
	// TAPName is the router's TAP port on the bridge; default Bridge+"-tap".
	TAPName string
	// MTU of the containers' interfaces (the overlay MTU, which leaves room
	// for encapsulation on the underlay).
	MTU int
	// HostMTU of the host side: the bridge, the TAP and the host ends of
	// the veths; default MTU. Set it higher (up to MaxHostMTU) so that a frame
	// from a container that raised its MTU reaches the data plane, which
	// can answer with ICMP "fragmentation needed", instead of being dropped
	// silently by the veth.
	HostMTU int
	// StateDir holds the attachment table; empty keeps it in memory only.
	StateDir string
	// Logger for attach/detach events; nil discards.
	Logger *slog.Logger
	// ServiceAddr, if valid, is the link-local address on the bridge where
	// containers reach this host's router (weaveDNS): every attached
	// container gets a route and a permanent neighbour entry for it, and
	// the host a route back to each container address (see
	// netdev.Bridge.AddHostRoute).
	ServiceAddr netip.Addr
	// OnGone, if set, is told of each attached container found gone (its
	// namespace or ethwe vanished) with the addresses it had, so that they
	// can be released. It is called with the Router's lock held: it must
	// not call the Router.
	OnGone func(id string, addrs []netip.Prefix)
}

// DefaultConfig returns the configuration Weave Net users expect.
func DefaultConfig() Config {
	return Config{Bridge: DefaultBridge, TAPName: tapName(DefaultBridge), MTU: DefaultMTU}
}

func (c Config) withDefaults() Config {
	d := DefaultConfig()
	if c.Bridge == "" {
		c.Bridge = d.Bridge
	}
	if c.TAPName == "" {
		c.TAPName = tapName(c.Bridge)
	}
	if c.MTU == 0 {
		c.MTU = d.MTU
	}
	if c.HostMTU == 0 {
		c.HostMTU = c.MTU
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c
}

// VXLANName derives the kernel fast path's VXLAN device name from the
// bridge's, within IFNAMSIZ ("weave-vxlan").
func VXLANName(bridge string) string {
	const suffix = "-vxlan"
	if len(bridge) > 15-len(suffix) {
		bridge = bridge[:15-len(suffix)]
	}
	return bridge + suffix
}

// tapName derives the TAP's name from the bridge's, within IFNAMSIZ.
func tapName(bridge string) string {
	const suffix = "-tap"
	if len(bridge) > 15-len(suffix) {
		bridge = bridge[:15-len(suffix)]
	}
	return bridge + suffix
}

// Attachment is one attached container as ps shows it.
type Attachment struct {
	// ID is the container reference it was attached by (netns:NAME,
	// netns:/PATH or pid:N, or a Docker container's full ID).
	ID string `json:"id"`
	// MAC is ethwe's Ethernet address, e.g. "0a:58:0a:02:01:04".
	MAC string `json:"mac"`
	// Addrs are ethwe's addresses, in the order they were attached.
	Addrs []netip.Prefix `json:"addrs"`
}
