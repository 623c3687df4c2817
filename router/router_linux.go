package router

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/weavelab/weave/router/netdev"
)

// Router owns the bridge, the TAP, and the table of attached containers.
// Its methods are safe for concurrent use: a mutex serialises the control
// operations, which are rare and quick.
//
// It works on the network namespace of the calling thread, which must be the
// one New ran in: in the daemon all threads share one, but a test that moves
// its own thread must call from that thread (netdevtest.EnterIsolatedHost).
type Router struct {
	cfg    Config
	log    *slog.Logger
	bridge *netdev.Bridge

	mu     sync.Mutex
	tap    netdev.Device // nil once closed
	recs   []*record     // guarded by mu; the attachment table
	closed bool
}

// New ensures the bridge (creating or adopting it), opens the TAP on it, and
// loads the attachment table from cfg.StateDir, dropping containers whose
// namespace or ethwe has gone since.
func New(cfg Config) (*Router, error) {
	cfg = cfg.withDefaults()
	if cfg.MTU < 576 || cfg.MTU > 65535 {
		return nil, fmt.Errorf("router: mtu %d out of range 576..65535", cfg.MTU)
	}
	if cfg.HostMTU < cfg.MTU || cfg.HostMTU > MaxHostMTU {
		return nil, fmt.Errorf("router: host mtu %d out of range %d..%d", cfg.HostMTU, cfg.MTU, MaxHostMTU)
	}
	recs, err := loadState(cfg.StateDir)
	if err != nil {
		return nil, fmt.Errorf("router: %w", err)
	}
	br, err := netdev.EnsureBridge(cfg.Bridge, cfg.HostMTU)
	if err != nil {
		return nil, fmt.Errorf("router: %w", err)
	}
	tap, err := netdev.OpenTAP(cfg.TAPName, cfg.Bridge, cfg.HostMTU)
	if err != nil {
		return nil, fmt.Errorf("router: %w", err)
	}
	if cfg.ServiceAddr.IsValid() {
		if err := br.EnsureServiceAddr(cfg.ServiceAddr); err != nil {
			tap.Close()
			return nil, fmt.Errorf("router: %w", err)
		}
	}
	r := &Router{cfg: cfg, log: cfg.Logger, bridge: br, tap: tap, recs: recs}
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := r.reconcileLocked(); err != nil {
		tap.Close()
		return nil, fmt.Errorf("router: %w", err)
	}
	r.refreshServiceRoutesLocked()
	r.log.Info("bridge ready", "bridge", cfg.Bridge, "tap", cfg.TAPName, "mtu", cfg.MTU, "host_mtu", cfg.HostMTU, "attachments", len(r.recs))
	return r, nil
}

// TAP is the router's port on the bridge, for the data plane. It stays valid
// until Close or Reset, which close it.
func (r *Router) TAP() netdev.Device {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.tap
}

// Bridge is the bridge's name.
func (r *Router) Bridge() string { return r.cfg.Bridge }

// MTU is the overlay MTU the router gives containers.
func (r *Router) MTU() int { return r.cfg.MTU }

// Close closes the TAP and leaves the bridge and the containers' interfaces
// in place, so that a restarted router adopts them. Idempotent.
func (r *Router) Close() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.closeLocked()
}

func (r *Router) closeLocked() error {
	r.closed = true
	if r.tap == nil {
		return nil
	}
	err := r.tap.Close()
	r.tap = nil
	return err
}

// Reset removes everything the router made: the containers' interfaces,
// the TAP, the bridge, and the attachment table. The Router is closed after.
func (r *Router) Reset() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	errs := []error{r.closeLocked()}
	for _, rec := range r.recs {
		errs = append(errs, netdev.DeleteLink(rec.HostVeth))
	}
	r.recs = nil
	errs = append(errs,
		netdev.DeleteLink(r.cfg.TAPName), // only if left persistent by someone
		netdev.DeleteLink(VXLANName(r.cfg.Bridge)),
		netdev.RemoveBridge(r.cfg.Bridge),
		removeState(r.cfg.StateDir))
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("reset: %w", err)
	}
	r.log.Info("reset", "bridge", r.cfg.Bridge)
	return nil
}

// RecordedIDs returns the container refs of the attachments in the table
// as recorded, whether or not the containers still exist (weave reset
// removes what weave wrote for them).
func (r *Router) RecordedIDs() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	ids := make([]string, 0, len(r.recs))
	for _, rec := range r.recs {
		ids = append(ids, rec.ID)
	}
	return ids
}

// ResetHost removes what a router with cfg made, without a running Router
// (weave reset after weave stop): the containers' interfaces it recorded and
// any veth on the bridge, the TAP if it lingers, the bridge, and the table.
// Missing parts are not errors.
func ResetHost(cfg Config) error {
	cfg = cfg.withDefaults()
	recs, err := loadState(cfg.StateDir)
	errs := []error{err}
	for _, rec := range recs {
		errs = append(errs, netdev.DeleteLink(rec.HostVeth))
	}
	errs = append(errs,
		netdev.DeleteLink(cfg.TAPName),
		netdev.DeleteLink(VXLANName(cfg.Bridge)),
		netdev.RemoveBridge(cfg.Bridge),
		removeState(cfg.StateDir))
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("reset: %w", err)
	}
	return nil
}

// reconcileLocked brings the table in line with the kernel: a record whose
// namespace has vanished (or is now another one) or whose ethwe is gone is
// dropped; MAC and addresses are refreshed from ethwe. It saves the table
// if anything changed.
func (r *Router) reconcileLocked() error {
	return r.reconcileSomeLocked(func(*record) bool { return true })
}

// reconcileSomeLocked is reconcileLocked for the records which selects:
// attach and detach look only at the records that could conflict, so that
// their cost does not grow with the number of attached containers (the
// daemon reconciles everything periodically).
func (r *Router) reconcileSomeLocked(which func(*record) bool) error {
	changed := false
	var gone []*record
	kept := r.recs[:0:0]
	for _, rec := range r.recs {
		if !which(rec) {
			kept = append(kept, rec)
			continue
		}
		keep, upd := r.checkRecord(rec)
		if !keep {
			changed = true
			gone = append(gone, rec)
			continue
		}
		if upd != nil {
			rec, changed = upd, true
		}
		kept = append(kept, rec)
	}
	r.recs = kept
	for _, rec := range gone {
		r.delHostRoutes(rec.Addrs)
		if r.cfg.OnGone != nil {
			r.cfg.OnGone(rec.ID, slices.Clone(rec.Addrs))
		}
	}
	if !changed {
		return nil
	}
	return saveState(r.cfg.StateDir, r.cfg.Bridge, r.recs)
}

// Reconcile drops the records of containers whose namespace or ethwe has
// gone (calling Config.OnGone for each), as every operation does first.
func (r *Router) Reconcile() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return ErrClosed
	}
	return r.reconcileLocked()
}

// A process-based container reference that names no namespace is checked
// goneRechecks more times, goneRecheckDelay apart, before it counts as gone.
const (
	goneRechecks     = 3
	goneRecheckDelay = 10 * time.Millisecond
)

// checkRecord reports whether rec still describes a live attachment and,
// if the kernel differs from it, an updated copy.
func (r *Router) checkRecord(rec *record) (keep bool, updated *record) {
	log := r.log.With("container", rec.ID)
	ref, err := rec.ref()
	if err != nil {
		log.Warn("dropping unparsable attachment record", "err", err)
		return false, nil
	}
	c, err := netdev.OpenContainer(ref)
	for i := 0; i < goneRechecks && errors.Is(err, netdev.ErrNoNamespace) && ref.PID != 0; i++ {
		// /proc/PID/ns/net is missing for a moment while the process
		// execs from a thread other than its main one (the kernel's
		// de_thread): a Go entrypoint such as the proxy's wait-iface
		// does that. Look again before deleting a live container's
		// interface.
		time.Sleep(goneRecheckDelay)
		c, err = netdev.OpenContainer(ref)
	}
	if errors.Is(err, netdev.ErrNoNamespace) {
		log.Info("container gone, dropping its attachment")
		netdev.DeleteLink(rec.HostVeth) // normally gone with the namespace
		return false, nil
	}
	if err != nil {
		log.Warn("cannot check attached container, keeping its record", "err", err)
		return true, nil
	}
	defer c.Close()
	if c.ID != rec.NS {
		log.Info("container's namespace replaced, dropping its attachment")
		netdev.DeleteLink(rec.HostVeth)
		return false, nil
	}
	iface, err := c.Iface()
	if err != nil {
		log.Warn("cannot read container interface, keeping its record", "err", err)
		return true, nil
	}
	if iface == nil {
		log.Info("container interface gone, dropping its attachment")
		netdev.DeleteLink(rec.HostVeth)
		return false, nil
	}
	// Keep the attached order; drop addresses removed behind our back and
	// append ones added behind our back.
	addrs := slices.DeleteFunc(slices.Clone(rec.Addrs), func(p netip.Prefix) bool { return !slices.Contains(iface.Addrs, p) })
	for _, p := range iface.Addrs {
		if !slices.Contains(addrs, p) {
			addrs = append(addrs, p)
		}
	}
	mac := iface.MAC.String()
	if mac == rec.MAC && slices.Equal(addrs, rec.Addrs) {
		return true, nil
	}
	upd := rec.clone()
	upd.MAC, upd.Addrs = mac, addrs
	return true, upd
}

// addServiceRoutes gives a container the way to the service address and
// the host the way back to its addresses.
func (r *Router) addServiceRoutes(c *netdev.Container, mac string, prefixes []netip.Prefix, fresh bool) error {
	svc := r.cfg.ServiceAddr
	if !svc.IsValid() {
		return nil
	}
	if fresh {
		brMAC, err := r.bridge.MAC()
		if err != nil {
			return err
		}
		if err := c.AddServiceRoute(svc, brMAC); err != nil {
			return err
		}
	}
	hw, err := net.ParseMAC(mac)
	if err != nil {
		return err
	}
	for _, p := range prefixes {
		if !p.Addr().Is4() {
			continue
		}
		if err := r.bridge.AddHostRoute(p.Addr(), hw, svc); err != nil {
			return err
		}
	}
	return nil
}

// delHostRoutes removes the host's routes back to container addresses.
func (r *Router) delHostRoutes(prefixes []netip.Prefix) {
	if !r.cfg.ServiceAddr.IsValid() {
		return
	}
	for _, p := range prefixes {
		if err := r.bridge.DelHostRoute(p.Addr()); err != nil {
			r.log.Debug("remove host route", "addr", p, "err", err)
		}
	}
}

// refreshServiceRoutesLocked re-asserts every attached container's way to
// the service address and the host's way back (a restarted router, or a
// bridge whose MAC changed under an older version). Failures are logged.
func (r *Router) refreshServiceRoutesLocked() {
	if !r.cfg.ServiceAddr.IsValid() {
		return
	}
	for _, rec := range r.recs {
		ref, err := rec.ref()
		if err != nil {
			continue
		}
		c, err := netdev.OpenContainer(ref)
		if err != nil {
			continue
		}
		if err := r.addServiceRoutes(c, rec.MAC, rec.Addrs, true); err != nil {
			r.log.Warn("cannot refresh a container's route to the service address", "container", rec.ID, "err", err)
		}
		c.Close()
	}
}

// Gone drops the records of container id (a Docker container that died:
// its namespace is gone or going), as reconcile would once the kernel
// agrees, calling Config.OnGone. It is not an error if there are none.
func (r *Router) Gone(id string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return ErrClosed
	}
	var gone []*record
	kept := r.recs[:0:0]
	for _, rec := range r.recs {
		if rec.ID == id {
			gone = append(gone, rec)
			continue
		}
		kept = append(kept, rec)
	}
	if len(gone) == 0 {
		return nil
	}
	r.recs = kept
	for _, rec := range gone {
		netdev.DeleteLink(rec.HostVeth) // normally gone with the namespace
		r.delHostRoutes(rec.Addrs)
		r.log.Info("container died, dropping its attachment", "container", rec.ID)
		if r.cfg.OnGone != nil {
			r.cfg.OnGone(rec.ID, slices.Clone(rec.Addrs))
		}
	}
	return saveState(r.cfg.StateDir, r.cfg.Bridge, r.recs)
}
