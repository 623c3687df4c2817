package replicate

import (
	"bytes"
	"fmt"
	"net/netip"

	"github.com/hashicorp/memberlist"

	"github.com/weavelab/weave/mesh/identity"
)

// The Replicator's memberlist delegates, as named views of it.
type (
	delegate   Replicator // memberlist.Delegate: user data
	events     Replicator // memberlist.EventDelegate: joins and leaves
	aliveCheck Replicator // memberlist.AliveDelegate: name/address check
)

var (
	_ memberlist.Delegate      = (*delegate)(nil)
	_ memberlist.EventDelegate = (*events)(nil)
	_ memberlist.AliveDelegate = (*aliveCheck)(nil)
)

// NodeMeta returns no metadata: peers need nothing but their names.
func (d *delegate) NodeMeta(int) []byte { return nil }

// NotifyMsg merges a broadcast delta new to us and passes it on.
func (d *delegate) NotifyMsg(b []byte) {
	r := (*Replicator)(d)
	e, err := decodeEnvelope(b)
	if err == nil && e.kind != envDelta {
		err = fmt.Errorf("%w: kind 0x%02x in a broadcast", errBadEnvelope, e.kind)
	}
	if err != nil {
		r.log.Debug("replication broadcast dropped", "err", err)
		return
	}
	if e.origin == r.self || !r.seen.add(msgID{e.origin, e.id}) {
		return
	}
	if err := r.state.Merge(e.origin, e.data); err != nil {
		r.log.Debug("replication delta rejected", "peer", e.origin.String(), "err", err)
		return
	}
	r.enqueue(bytes.Clone(b))
}

// GetBroadcasts hands memberlist the queued deltas that fit.
func (d *delegate) GetBroadcasts(overhead, limit int) [][]byte {
	return d.queue.GetBroadcasts(overhead, limit)
}

// LocalState returns our full state, tagged with our name.
func (d *delegate) LocalState(bool) []byte {
	return encodeState(d.self, d.state.FullState())
}

// MergeRemoteState merges a peer's full state from a push/pull.
func (d *delegate) MergeRemoteState(buf []byte, _ bool) {
	r := (*Replicator)(d)
	e, err := decodeEnvelope(buf)
	if err == nil && e.kind != envState {
		err = fmt.Errorf("%w: kind 0x%02x in a push/pull", errBadEnvelope, e.kind)
	}
	if err != nil {
		r.log.Debug("replication state dropped", "err", err)
		return
	}
	if err := r.state.Merge(e.origin, e.data); err != nil {
		r.log.Debug("replication state rejected", "peer", e.origin.String(), "err", err)
	}
}

// NotifyJoin queues OnJoin for a peer memberlist now counts alive.
func (ev *events) NotifyJoin(n *memberlist.Node) {
	ev.log.Debug("replication peer joined", "peer", n.Name)
	if p, err := identity.ParsePeerName(n.Name); err == nil && p != ev.self {
		(*Replicator)(ev).queueEvent(p, true)
	}
}

// NotifyUpdate logs a peer's changed metadata (we set none).
func (ev *events) NotifyUpdate(n *memberlist.Node) {
	ev.log.Debug("replication peer updated", "peer", n.Name)
}

// NotifyLeave queues OnLeave for a dead or departed peer.
func (ev *events) NotifyLeave(n *memberlist.Node) {
	p, err := identity.ParsePeerName(n.Name)
	if err != nil || p == ev.self {
		return
	}
	ev.log.Debug("replication peer left", "peer", n.Name, "state", n.State)
	(*Replicator)(ev).queueEvent(p, false)
}

// NotifyAlive admits only nodes named by a peer name and living at that
// name's synthetic address, so no node can claim another's address.
func (a *aliveCheck) NotifyAlive(n *memberlist.Node) error {
	p, err := identity.ParsePeerName(n.Name)
	if err != nil {
		return fmt.Errorf("node name: %w", err)
	}
	ip, ok := netip.AddrFromSlice(n.Addr)
	if !ok || ip.Unmap() != PeerIP(p) || n.Port != AddrPort {
		return fmt.Errorf("node %s claims address %s, want %s", n.Name, n.Address(), PeerAddr(p))
	}
	return nil
}
