package router

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
)

// Expose gives the host addresses on the network by putting them on the
// bridge, and returns them. An address already exposed is kept (expose is
// idempotent); one used by a container, or exposed with another prefix
// length, is an error and nothing changes.
func (r *Router) Expose(addrs []string) ([]netip.Prefix, error) {
	prefixes, err := r.expose(addrs)
	if err != nil {
		return nil, fmt.Errorf("expose: %w", err)
	}
	return prefixes, nil
}

func (r *Router) expose(addrs []string) ([]netip.Prefix, error) {
	prefixes, err := ParseAddrs(addrs)
	if err != nil {
		return nil, err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return nil, ErrClosed
	}
	if err := r.reconcileLocked(); err != nil {
		return nil, err
	}
	exposed, err := r.exposedLocked()
	if err != nil {
		return nil, err
	}
	var todo []netip.Prefix
	for _, p := range prefixes {
		for _, rec := range r.recs {
			if rec.has(p.Addr()) {
				return nil, fmt.Errorf("address %s already used by %s", p, rec.ID)
			}
		}
		if p.Addr() == r.cfg.ServiceAddr {
			return nil, fmt.Errorf("address %s is the router's service address (weaveDNS)", p.Addr())
		}
		if slices.Contains(exposed, p) {
			continue
		}
		if k := slices.IndexFunc(exposed, func(e netip.Prefix) bool { return e.Addr() == p.Addr() }); k >= 0 {
			return nil, fmt.Errorf("address %s already exposed as %s", p, exposed[k])
		}
		todo = append(todo, p)
	}
	for i, p := range todo {
		if err := r.bridge.AddAddr(p); err != nil {
			for _, done := range todo[:i] {
				if derr := r.bridge.DelAddr(done); derr != nil {
					err = errors.Join(err, derr)
				}
			}
			return nil, err
		}
		r.log.Info("exposed", "addr", p, "bridge", r.cfg.Bridge)
	}
	return prefixes, nil
}

// Hide removes the host's addresses from the bridge: the given ones (each
// must be exposed, or nothing changes), or with none all of them.
func (r *Router) Hide(addrs []string) error {
	if err := r.hide(addrs); err != nil {
		return fmt.Errorf("hide: %w", err)
	}
	return nil
}

func (r *Router) hide(addrs []string) error {
	var prefixes []netip.Prefix
	if len(addrs) > 0 {
		var err error
		if prefixes, err = ParseAddrs(addrs); err != nil {
			return err
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return ErrClosed
	}
	exposed, err := r.exposedLocked()
	if err != nil {
		return err
	}
	if len(prefixes) == 0 {
		prefixes = exposed
	}
	for _, p := range prefixes {
		if !slices.Contains(exposed, p) {
			return fmt.Errorf("address %s is not exposed", p)
		}
	}
	var errs []error
	for _, p := range prefixes {
		if err := r.bridge.DelAddr(p); err != nil {
			errs = append(errs, err)
			continue
		}
		r.log.Info("hidden", "addr", p, "bridge", r.cfg.Bridge)
	}
	return errors.Join(errs...)
}

// Exposed lists the host's addresses on the bridge.
func (r *Router) Exposed() ([]netip.Prefix, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return nil, ErrClosed
	}
	return r.exposedLocked()
}

// exposedLocked lists the bridge's addresses but the service address.
func (r *Router) exposedLocked() ([]netip.Prefix, error) {
	addrs, err := r.bridge.Addrs()
	if err != nil {
		return nil, err
	}
	return slices.DeleteFunc(addrs, func(p netip.Prefix) bool {
		return r.cfg.ServiceAddr.IsValid() && p == netip.PrefixFrom(r.cfg.ServiceAddr, 32)
	}), nil
}
