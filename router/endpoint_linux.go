package router

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"time"

	"github.com/weavelab/weave/router/netdev"
)

// Endpoints are the interfaces of containers whose runtime moves the
// container end itself (the Docker network plugin): the router makes a veth
// pair in its own namespace, puts the host end on the bridge and hands the
// peer's name to the runtime. They are not in the attachment table: the
// runtime owns them and tells the plugin when they go. Their names derive
// from the runtime's endpoint ID, so that a restarted router finds them.

// Endpoint is the veth pair of one runtime endpoint.
type Endpoint struct {
	Host string           // host end, on the bridge
	Peer string           // container end, until the runtime renames it
	MAC  net.HardwareAddr // the container end's
}

// endpointNames derives the veth names of endpoint id, within IFNAMSIZ.
func endpointNames(bridge, id string) (host, peer string) {
	sum := sha256.Sum256([]byte(bridge + "\x00endpoint\x00" + id))
	h := hex.EncodeToString(sum[:])[:12]
	return "vwp" + h, "vwq" + h
}

// CreateEndpoint makes endpoint id's veth pair (the container end with
// the overlay MTU and mac, random when nil) and the host's way back to
// addr from the service address. Errors leave nothing behind.
func (r *Router) CreateEndpoint(id string, addr netip.Prefix, mac net.HardwareAddr) (Endpoint, error) {
	host, peer := endpointNames(r.cfg.Bridge, id)
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return Endpoint{}, ErrClosed
	}
	got, err := netdev.CreateVeth(host, peer, r.bridge, r.cfg.MTU, r.cfg.HostMTU, mac)
	if err != nil {
		return Endpoint{}, err
	}
	if svc := r.cfg.ServiceAddr; svc.IsValid() && addr.Addr().Is4() {
		if err := r.bridge.AddHostRoute(addr.Addr(), got, svc); err != nil {
			return Endpoint{}, errors.Join(err, netdev.DeleteLink(host))
		}
	}
	r.log.Info("endpoint created", "endpoint", id, "veth", host, "addr", addr, "mac", got.String())
	return Endpoint{Host: host, Peer: peer, MAC: got}, nil
}

// DeleteEndpoint removes endpoint id's veth pair (wherever its container
// end is now) and the host's route back to addr. Missing parts are fine.
func (r *Router) DeleteEndpoint(id string, addr netip.Prefix) error {
	host, peer := endpointNames(r.cfg.Bridge, id)
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return ErrClosed
	}
	if addr.IsValid() {
		r.delHostRoutes([]netip.Prefix{addr})
	}
	// The host end is gone with the container's namespace; an endpoint
	// that never joined still has its peer here.
	err := errors.Join(netdev.DeleteLink(host), netdev.DeleteLink(peer))
	if err != nil {
		return fmt.Errorf("endpoint %s: %w", id, err)
	}
	r.log.Info("endpoint deleted", "endpoint", id, "veth", host, "addr", addr)
	return nil
}

// EndpointJoined gives the container end of an endpoint, now in the
// namespace at sandbox, the way to the service address (weaveDNS) without
// ARP, as attach does for ethwe. It waits up to wait for the runtime to
// move the interface there.
func (r *Router) EndpointJoined(sandbox string, mac net.HardwareAddr, wait time.Duration) error {
	svc := r.cfg.ServiceAddr
	if !svc.IsValid() {
		return nil
	}
	brMAC, err := r.bridge.MAC()
	if err != nil {
		return err
	}
	return netdev.AddServiceRouteByMAC(sandbox, mac, svc, brMAC, wait)
}

// ServiceAddr is the service address containers reach weaveDNS at (zero
// when there is none).
func (r *Router) ServiceAddr() netip.Addr { return r.cfg.ServiceAddr }
