package daemon

import (
	"context"
	"errors"
	"net/netip"
	"slices"
	"time"

	"github.com/weavelab/weave/router"
	"github.com/weavelab/weave/router/docker"
	"github.com/weavelab/weave/router/netdev"
)

// dockerTimeout bounds each Engine call made for an event.
const dockerTimeout = 10 * time.Second

// dockerEvents is the docker.Handler of the daemon: containers that die
// give their addresses a grace period, containers that restart within it
// are attached again with the same addresses, containers that are removed
// release theirs at once.
type dockerEvents struct {
	ctx context.Context
	n   *node
}

var _ docker.Handler = dockerEvents{}

func (e dockerEvents) OnEvent(ev docker.Event) {
	n := e.n
	switch ev.Action {
	case docker.ActionDie:
		// Its namespace is gone (or going: do not wait for the kernel to
		// agree): drop the record and hold its addresses (onGone).
		if err := n.net.Gone(ev.ID); err != nil {
			n.log.Warn("dropping a container that died", "container", ev.ID, "err", err)
		}
	case docker.ActionStart:
		e.restart(ev.ID, false)
	case docker.ActionDestroy:
		n.gone.forget(ev.ID)
		if n.ipam != nil {
			if freed := n.ipam.Release(ev.ID); len(freed) > 0 {
				n.log.Info("container removed; released its addresses", "container", ev.ID, "addrs", freed)
			}
		}
	}
}

// restart attaches a container that started again with the addresses it
// had, if it had any here: it died while we watched (or, with resync, it
// holds addresses but is not attached). A container that weave run or
// the API is attaching right now holds live addresses and is left alone.
func (e dockerEvents) restart(id string, resync bool) {
	n := e.n
	addrs := n.gone.take(id)
	wasGone := len(addrs) > 0
	if n.ipam != nil {
		for _, a := range n.ipam.Lookup(id) {
			wasGone = wasGone || !a.ReleaseAt.IsZero()
			if !slices.Contains(addrs, a.Prefix()) {
				addrs = append(addrs, a.Prefix())
			}
		}
	}
	if len(addrs) == 0 || !wasGone && !resync {
		return // not ours, or being attached now
	}
	ctx, cancel := context.WithTimeout(e.ctx, dockerTimeout)
	defer cancel()
	c, err := n.docker.Inspect(ctx, id)
	if err != nil {
		n.log.Warn("cannot re-attach a restarted container", "container", id, "err", err)
		return
	}
	if !c.Running {
		n.gone.remember(id, addrs)
		return
	}
	ref := netdev.DockerContainer(c.ID, c.PID)
	if as, err := n.net.PSRefs(ctx, ref); err == nil && len(as) > 0 {
		return // attached already (weave run raced us)
	}
	// The same addresses where they are still ours to give (held for
	// the container, or free), else fresh ones from the same subnets.
	var specs []router.AddrSpec
	held := map[netip.Addr]bool{}
	if n.ipam != nil {
		for _, a := range n.ipam.Lookup(id) {
			held[a.Addr] = true
		}
	}
	for _, p := range addrs {
		spec := router.AddrSpec{Static: p}
		if n.ipam != nil && n.ipam.InRange(p.Addr()) && !held[p.Addr()] {
			if err := n.ipam.Claim(ctx, id, p); err != nil {
				n.log.Info("restarted container's old address is taken; allocating another", "container", id, "addr", p, "err", err)
				spec = router.AddrSpec{Subnet: p.Masked()}
			}
		}
		specs = append(specs, spec)
	}
	got, err := n.attach(ctx, ref, id, specs)
	if err != nil {
		n.log.Warn("cannot re-attach a restarted container", "container", id, "err", err)
		n.gone.remember(id, addrs)
		if n.ipam != nil {
			n.ipam.Hold(id)
		}
		return
	}
	n.log.Info("re-attached a restarted container", "container", id, "addrs", got)
	n.dnsAfterAttach(ctx, ref, id, n.noDNS.has(id))
}

// OnResync reconciles with the Engine after (re)connecting: containers
// that died unseen hold their addresses, removed ones release theirs,
// restarted ones are attached again.
func (e dockerEvents) OnResync() {
	n := e.n
	if err := n.net.Reconcile(); err != nil {
		n.log.Warn("reconcile with docker", "err", err)
	}
	if n.ipam == nil {
		return
	}
	seen := map[string]bool{}
	for _, a := range n.ipam.Allocs() {
		if !docker.IsFullID(a.ID) || seen[a.ID] {
			continue
		}
		seen[a.ID] = true
		ctx, cancel := context.WithTimeout(e.ctx, dockerTimeout)
		c, err := n.docker.Inspect(ctx, a.ID)
		cancel()
		switch {
		case errors.Is(err, docker.ErrNotFound):
			n.gone.forget(a.ID)
			n.log.Info("container removed while we were not watching; released its addresses", "container", a.ID, "addrs", n.ipam.Release(a.ID))
		case err != nil:
			n.log.Warn("cannot check container", "container", a.ID, "err", err)
		case !c.Running:
			n.ipam.Hold(a.ID)
		default:
			e.restart(a.ID, true)
		}
	}
}

// reconcileLoop reconciles the container table every interval, so that
// namespaces that vanish (netns and pid containers, which send no events)
// hold their addresses and then release them; it also notes the peers'
// nicknames.
func reconcileLoop(ctx context.Context, n *node, interval time.Duration) {
	n.holdOrphans(ctx)
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if err := n.net.Reconcile(); err != nil && !errors.Is(err, context.Canceled) {
				n.log.Debug("periodic reconcile", "err", err)
			}
			n.knownPeers() // remember nicknames while the peers are there
		}
	}
}

// holdOrphans holds for the grace period the addresses of namespace
// containers (netns:, pid:) that have no attachment: their interface or
// namespace went while the router was not running (a CNI DEL with the
// router down), so no reconcile will see them go. Docker containers are
// OnResync's.
func (n *node) holdOrphans(ctx context.Context) {
	if n.ipam == nil {
		return
	}
	if err := n.net.Reconcile(); err != nil {
		n.log.Debug("reconcile", "err", err)
	}
	as, err := n.net.PSRefs(ctx)
	if err != nil {
		n.log.Warn("cannot list attachments", "err", err)
		return
	}
	attached := map[string]bool{ExposeID: true}
	for _, a := range as {
		attached[a.ID] = true
	}
	seen := map[string]bool{}
	for _, a := range n.ipam.Allocs() {
		if attached[a.ID] || seen[a.ID] {
			continue
		}
		seen[a.ID] = true
		if _, err := netdev.ParseContainer(a.ID); err != nil {
			continue
		}
		if held := n.ipam.Hold(a.ID); held > 0 {
			n.log.Info("container left while the router was not running; holding its addresses for the grace period", "container", a.ID)
		}
	}
}
