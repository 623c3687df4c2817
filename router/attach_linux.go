package router

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/netip"
	"slices"

	"github.com/weavelab/weave/router/netdev"
)

// hostVethPrefix starts the name of every host end of a container's veth.
const hostVethPrefix = "vethwe"

// hostVethName is the host end's name for a container on a bridge: the
// prefix and a short hash, so it fits IFNAMSIZ and differs per bridge.
func hostVethName(bridge, container string) string {
	sum := sha256.Sum256([]byte(bridge + "\x00" + container))
	return hostVethPrefix + hex.EncodeToString(sum[:])[:15-len(hostVethPrefix)]
}

// Attach connects a container to the bridge with static addresses (ADDR
// strings, see ParseAddr) and returns them. A container not yet attached
// gets a veth pair: the host end on the bridge, the container end ethwe with
// the overlay MTU and the addresses; an attached one gets the new addresses
// added. Errors leave the kernel and the table unchanged: an address already
// used by another container or the host, an address the container already
// has, an unknown namespace, a malformed address.
func (r *Router) Attach(ctx context.Context, container string, addrs []string) ([]netip.Prefix, error) {
	prefixes, err := r.attach(ctx, container, addrs)
	if err != nil {
		return nil, fmt.Errorf("attach %s: %w", container, err)
	}
	return prefixes, nil
}

func (r *Router) attach(ctx context.Context, container string, addrs []string) ([]netip.Prefix, error) {
	prefixes, err := ParseAddrs(addrs)
	if err != nil {
		return nil, err
	}
	ref, err := netdev.ParseContainer(container)
	if err != nil {
		return nil, err
	}
	return r.AttachRef(ctx, ref, prefixes)
}

// AttachRef is Attach for a resolved container (any kind, Docker
// included) and parsed addresses. Its errors do not name the container:
// the caller does, in the user's words.
func (r *Router) AttachRef(ctx context.Context, ref netdev.ContainerRef, prefixes []netip.Prefix) ([]netip.Prefix, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if len(prefixes) == 0 {
		return nil, errors.New("no address given")
	}
	c, err := netdev.OpenContainer(ref)
	if err != nil {
		return nil, err
	}
	defer c.Close()

	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return nil, ErrClosed
	}
	// Records of this namespace, or holding one of the addresses, may be
	// stale (their container gone): only those matter here.
	if err := r.reconcileSomeLocked(func(rec *record) bool {
		return rec.NS == c.ID || rec.ID == c.Ref.String() || slices.ContainsFunc(prefixes, func(p netip.Prefix) bool { return rec.has(p.Addr()) })
	}); err != nil {
		return nil, err
	}
	i := r.findLocked(c.ID)
	if i >= 0 {
		if had := r.recs[i].IfName; ref.IfName != "" && ref.IfName != had {
			return nil, fmt.Errorf("already attached with interface %s", (netdev.ContainerRef{IfName: had}).IfaceName())
		}
		c.Ref.IfName = r.recs[i].IfName
	}
	if err := r.checkFreeLocked(prefixes, i); err != nil {
		return nil, err
	}
	log := r.log.With("container", ref.String())
	if i < 0 {
		rec, err := r.createLocked(c, prefixes)
		if err != nil {
			return nil, err
		}
		log = log.With("veth", rec.HostVeth, "mac", rec.MAC)
	} else {
		if err := r.addAddrsLocked(c, i, prefixes); err != nil {
			return nil, err
		}
		log = log.With("as", r.recs[i].ID)
	}
	if err := c.Announce(prefixes); err != nil {
		log.Debug("gratuitous arp failed", "err", err)
	}
	for _, p := range prefixes {
		log.Info("attached", "addr", p)
	}
	return prefixes, nil
}

// findLocked returns the index of the record for namespace id, or -1.
func (r *Router) findLocked(id netdev.NSID) int {
	return slices.IndexFunc(r.recs, func(rec *record) bool { return rec.NS == id })
}

// checkFreeLocked checks that no address is in use: by another container,
// by the host (exposed), or already by the container at index self.
func (r *Router) checkFreeLocked(prefixes []netip.Prefix, self int) error {
	exposed, err := r.exposedLocked()
	if err != nil {
		return err
	}
	for _, p := range prefixes {
		for j, rec := range r.recs {
			if !rec.has(p.Addr()) {
				continue
			}
			if j == self {
				return fmt.Errorf("already attached with %s", p)
			}
			return fmt.Errorf("address %s already used by %s", p, rec.ID)
		}
		if p.Addr() == r.cfg.ServiceAddr {
			return fmt.Errorf("address %s is the router's service address (weaveDNS)", p.Addr())
		}
		if slices.ContainsFunc(exposed, func(e netip.Prefix) bool { return e.Addr() == p.Addr() }) {
			return fmt.Errorf("address %s already used by the host (weave expose)", p)
		}
	}
	return nil
}

// createLocked gives a container its veth pair and addresses and records it.
func (r *Router) createLocked(c *netdev.Container, prefixes []netip.Prefix) (*record, error) {
	existing, err := c.Iface()
	if err != nil {
		return nil, err
	}
	if existing != nil {
		return nil, fmt.Errorf("already has an interface %s that this router did not make", c.Ref.IfaceName())
	}
	host := hostVethName(r.cfg.Bridge, c.Ref.String())
	iface, err := c.CreateIface(host, r.bridge, r.cfg.MTU, r.cfg.HostMTU)
	if err != nil {
		return nil, err
	}
	undo := func(err error) (*record, error) {
		if derr := netdev.DeleteLink(host); derr != nil {
			err = errors.Join(err, derr)
		}
		return nil, err
	}
	// The way to the service address first: a container waiting for an
	// address on ethwe (the proxy's wait-iface) starts the moment it has
	// one, and may ask weaveDNS at once.
	if err := r.addServiceRoutes(c, iface.MAC.String(), prefixes, true); err != nil {
		r.delHostRoutes(prefixes)
		return undo(err)
	}
	if err := c.AddAddrs(prefixes); err != nil {
		r.delHostRoutes(prefixes)
		return undo(err)
	}
	rec := &record{ID: c.Ref.String(), NS: c.ID, IfName: c.Ref.IfName, HostVeth: host, MAC: iface.MAC.String(), Addrs: slices.Clone(prefixes)}
	if c.Ref.Kind == netdev.KindDocker {
		rec.DockerPID = c.Ref.PID
	}
	recs := append(slices.Clone(r.recs), rec)
	if err := saveState(r.cfg.StateDir, r.cfg.Bridge, recs); err != nil {
		r.delHostRoutes(prefixes)
		return undo(err)
	}
	r.recs = recs
	return rec, nil
}

// addAddrsLocked adds addresses to the attached container at index i.
func (r *Router) addAddrsLocked(c *netdev.Container, i int, prefixes []netip.Prefix) error {
	if err := c.AddAddrs(prefixes); err != nil {
		return err
	}
	if err := r.addServiceRoutes(c, r.recs[i].MAC, prefixes, false); err != nil {
		r.delHostRoutes(prefixes)
		c.DelAddrs(prefixes)
		return err
	}
	recs := slices.Clone(r.recs)
	rec := recs[i].clone()
	rec.Addrs = append(rec.Addrs, prefixes...)
	recs[i] = rec
	if err := saveState(r.cfg.StateDir, r.cfg.Bridge, recs); err != nil {
		if derr := c.DelAddrs(prefixes); derr != nil {
			err = errors.Join(err, derr)
		}
		return err
	}
	r.recs = recs
	return nil
}

// Detach removes addresses (ADDR strings) from an attached container; with
// no addresses, or when none would remain, it removes ethwe and its veth.
// Asking for an address the container does not have is an error and
// changes nothing.
func (r *Router) Detach(ctx context.Context, container string, addrs []string) error {
	if err := r.detach(ctx, container, addrs); err != nil {
		return fmt.Errorf("detach %s: %w", container, err)
	}
	return nil
}

func (r *Router) detach(ctx context.Context, container string, addrs []string) error {
	var prefixes []netip.Prefix
	if len(addrs) > 0 {
		var err error
		if prefixes, err = ParseAddrs(addrs); err != nil {
			return err
		}
	}
	ref, err := netdev.ParseContainer(container)
	if err != nil {
		return err
	}
	_, err = r.DetachRef(ctx, ref, func(netip.Prefix) bool { return len(prefixes) == 0 }, prefixes)
	return err
}

// DetachRef removes from a resolved container the addresses that pick
// selects, plus those listed (each of which it must have); when none would
// remain it removes ethwe and its veth. It returns the addresses removed.
// Its errors do not name the container: the caller does.
func (r *Router) DetachRef(ctx context.Context, ref netdev.ContainerRef, pick func(netip.Prefix) bool, listed []netip.Prefix) ([]netip.Prefix, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	c, err := netdev.OpenContainer(ref)
	if err != nil {
		return nil, err
	}
	defer c.Close()

	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return nil, ErrClosed
	}
	if err := r.reconcileSomeLocked(func(rec *record) bool { return rec.NS == c.ID }); err != nil {
		return nil, err
	}
	i := r.findLocked(c.ID)
	if i < 0 {
		return nil, ErrNotAttached
	}
	rec := r.recs[i]
	c.Ref.IfName = rec.IfName
	for _, p := range listed {
		if !slices.Contains(rec.Addrs, p) {
			return nil, fmt.Errorf("not attached with %s", p)
		}
	}
	var prefixes []netip.Prefix
	for _, p := range rec.Addrs {
		if pick(p) || slices.Contains(listed, p) {
			prefixes = append(prefixes, p)
		}
	}
	if len(prefixes) == 0 {
		return nil, errors.New("has no address in that subnet")
	}
	left := slices.DeleteFunc(slices.Clone(rec.Addrs), func(p netip.Prefix) bool { return slices.Contains(prefixes, p) })
	recs := slices.Clone(r.recs)
	log := r.log.With("container", rec.ID)
	if len(left) == 0 {
		if err := c.DeleteIface(); err != nil {
			return nil, err
		}
		if err := netdev.DeleteLink(rec.HostVeth); err != nil {
			return nil, err
		}
		recs = slices.Delete(recs, i, i+1)
		r.delHostRoutes(rec.Addrs)
		log.Info("detached", "addr", rec.Addrs)
	} else {
		if err := c.DelAddrs(prefixes); err != nil {
			return nil, err
		}
		upd := rec.clone()
		upd.Addrs = left
		recs[i] = upd
		r.delHostRoutes(prefixes)
		log.Info("detached", "addr", prefixes)
	}
	// The kernel has changed; a failure to save is reported but the table
	// follows the kernel (the next reconcile would make it so anyway).
	r.recs = recs
	return prefixes, saveState(r.cfg.StateDir, r.cfg.Bridge, recs)
}

// PS lists attached containers (all of them, or the ones named), sorted as
// attached. Naming a container that is not attached is an error.
func (r *Router) PS(ctx context.Context, containers ...string) ([]Attachment, error) {
	var refs []netdev.ContainerRef
	for _, s := range containers {
		ref, err := netdev.ParseContainer(s)
		if err != nil {
			return nil, fmt.Errorf("ps %s: %w", s, err)
		}
		refs = append(refs, ref)
	}
	return r.PSRefs(ctx, refs...)
}

// PSRefs is PS for resolved containers.
func (r *Router) PSRefs(ctx context.Context, refs ...netdev.ContainerRef) ([]Attachment, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	var ids []netdev.NSID
	containers := make([]string, len(refs))
	for i, ref := range refs {
		containers[i] = ref.String()
		id, err := ref.NSID()
		if err != nil {
			return nil, fmt.Errorf("ps %s: %w", ref, err)
		}
		ids = append(ids, id)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return nil, fmt.Errorf("ps: %w", ErrClosed)
	}
	if err := r.reconcileLocked(); err != nil {
		return nil, fmt.Errorf("ps: %w", err)
	}
	var out []Attachment
	show := func(rec *record) {
		out = append(out, Attachment{ID: rec.ID, MAC: rec.MAC, Addrs: slices.Clone(rec.Addrs)})
	}
	if len(containers) == 0 {
		for _, rec := range r.recs {
			show(rec)
		}
		return out, nil
	}
	for k, id := range ids {
		i := r.findLocked(id)
		if i < 0 {
			return nil, fmt.Errorf("ps %s: %w", containers[k], ErrNotAttached)
		}
		show(r.recs[i])
	}
	return out, nil
}
