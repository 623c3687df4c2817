package mesh

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/weavelab/weave/mesh/identity"
	"github.com/weavelab/weave/mesh/topology"
)

// target is an address the router keeps a connection to: given by Connect,
// or (unless NoDiscovery) learnt from other peers' connection lists.
type target struct {
	addr       string
	discovered bool
	peer       identity.PeerName // who is there, once known (or expected)
	conn       *conn             // the attempt under way, if any
	self       bool              // it reached us: never dialled again
	attempts   int               // consecutive failures
	lastErr    string
	nextTry    time.Time
}

func (t *target) status(r *Router) TargetStatus {
	st := TargetStatus{Addr: t.addr, Discovered: t.discovered, Attempts: t.attempts, LastError: t.lastErr}
	switch {
	case t.self:
		st.State = TargetSelf
	case t.conn != nil && t.conn.registered,
		t.peer != identity.UnknownPeer && r.conns[t.peer] != nil:
		st.State = TargetConnected
	case t.conn != nil:
		st.State = TargetConnecting
	default:
		st.State, st.NextTry = TargetWaiting, t.nextTry
	}
	return st
}

func (r *Router) parsePeers(peers []string) ([]string, error) {
	out := make([]string, 0, len(peers))
	for _, p := range peers {
		a, err := ParsePeerAddr(strings.TrimSpace(p), r.defaultPort())
		if err != nil {
			return nil, err
		}
		out = append(out, a)
	}
	return out, nil
}

func (r *Router) defaultPort() int {
	if r.cfg.Port == 0 {
		return DefaultPort
	}
	return r.cfg.Port
}

// Connect adds peers (host[:port]) to the targets the router keeps
// connections to; with replace, the targets given by earlier Connect calls
// that are not in peers are dropped first. All peers are checked first: on
// a malformed one Connect returns an error wrapping ErrBadPeerAddr and
// changes nothing.
func (r *Router) Connect(peers []string, replace bool) error {
	addrs, err := r.parsePeers(peers)
	if err != nil {
		return err
	}
	ok := r.call(func() {
		if replace {
			for a, t := range r.targets {
				if !t.discovered && !slices.Contains(addrs, a) {
					delete(r.targets, a)
					r.clearFailed(a)
				}
			}
		}
		now := r.clk.Now()
		for _, a := range addrs {
			delete(r.forgotten, a)
			if t := r.targets[a]; t != nil && t.self {
				continue // known to be us
			} else if t != nil {
				t.discovered = false
				t.nextTry = now // the user asked: try again now
				continue
			}
			r.targets[a] = &target{addr: a, nextTry: now}
		}
		r.makerDirty = true
	})
	if !ok {
		return ErrClosed
	}
	return nil
}

// Forget drops peers (host[:port]) from the targets: the router stops
// (re)connecting to them, and discovery does not add them back until a
// later Connect. Existing connections stay; their failed dials leave
// status, and an attempt still under way is not recorded as failed when
// it ends. Malformed input changes nothing.
func (r *Router) Forget(peers []string) error {
	addrs, err := r.parsePeers(peers)
	if err != nil {
		return err
	}
	ok := r.call(func() {
		for _, a := range addrs {
			delete(r.targets, a)
			r.forgotten[a] = struct{}{}
			r.clearFailed(a)
		}
	})
	if !ok {
		return ErrClosed
	}
	return nil
}

// Targets returns the addresses given by Connect (not the discovered
// ones), sorted: what the daemon persists across restarts.
func (r *Router) Targets() []string {
	var out []string
	r.call(func() {
		for a, t := range r.targets {
			if !t.discovered {
				out = append(out, a)
			}
		}
	})
	slices.Sort(out)
	return out
}

// backoff returns the delay before the next try after n consecutive
// failures: BackoffBase·2^(n-1) capped at BackoffMax, then scaled by a
// random factor in [0.5, 1) so that peers that failed together do not
// retry in lockstep.
func (r *Router) backoff(n int) time.Duration {
	d := r.cfg.BackoffBase
	for i := 1; i < n && d < r.cfg.BackoffMax; i++ {
		d *= 2
	}
	d = min(d, r.cfg.BackoffMax)
	return time.Duration(float64(d) * (0.5 + r.rng.Float64()/2))
}

// tryTargets starts attempts for the targets that are due and arms the
// timer for the next one. Actor only.
func (r *Router) tryTargets() {
	now := r.clk.Now()
	var next time.Time
	for _, t := range r.targets {
		if t.self || t.conn != nil || (t.peer != identity.UnknownPeer && r.conns[t.peer] != nil) {
			continue
		}
		if t.nextTry.After(now) {
			if next.IsZero() || t.nextTry.Before(next) {
				next = t.nextTry
			}
			continue
		}
		if r.cfg.ConnLimit > 0 && len(r.attempts) >= r.cfg.ConnLimit {
			t.nextTry = now.Add(r.backoff(1))
			continue
		}
		r.dial(t)
	}
	if !next.IsZero() {
		r.makerTimer.Reset(max(next.Sub(now), time.Millisecond))
	}
}

// dial starts an outbound attempt for t. Actor only.
func (r *Router) dial(t *target) {
	c := r.newConn(true, t.addr, t.addr)
	t.conn = c
	r.attempts[c] = struct{}{}
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		ctx, cancel := context.WithTimeout(c.ctx, r.cfg.HandshakeTimeout)
		nc, err := r.cfg.Transport.Dial(ctx, t.addr)
		cancel()
		if err != nil {
			c.cancel(fmt.Errorf("dial: %w", err))
			if r.ctx.Err() == nil {
				cause := context.Cause(c.ctx)
				r.post(func() { r.connEnded(c, cause) })
			}
			return
		}
		r.post(func() {
			if c.state == StateConnecting {
				c.state, c.since = StateHandshake, r.clk.Now()
			}
		})
		r.runConn(c, nc)
	}()
}

// targetEnded updates the target of an outbound attempt that ended.
func (r *Router) targetEnded(c *conn, cause error, wasEstablished bool) {
	t := r.targets[c.target]
	if t == nil || t.conn != c {
		return // forgotten, or replaced by a newer attempt
	}
	t.conn = nil
	if c.remote().Name != identity.UnknownPeer {
		t.peer = c.remote().Name
	}
	now := r.clk.Now()
	switch {
	case errors.Is(cause, errSelf):
		t.self, t.attempts, t.lastErr = true, 0, ""
		t.peer = r.cfg.Peer.Name
		r.log.Info("target is this router; not dialling it again", "addr", t.addr)
	case wasEstablished:
		t.attempts, t.lastErr = 0, ""
		t.nextTry = now.Add(r.backoff(1))
	case errors.Is(cause, errDuplicate) && r.conns[t.peer] != nil:
		t.attempts, t.lastErr = 0, ""
	default:
		t.attempts++
		if cause != nil {
			t.lastErr = cause.Error()
		}
		t.nextTry = now.Add(r.backoff(t.attempts))
	}
	r.makerDirty = true
}

// discover adds targets for the peers that the changed entries say are
// reachable at some address, and drops discovered targets of removed
// peers. Actor only.
func (r *Router) discover(changed []*topology.Peer, removed []identity.PeerName) {
	for _, name := range removed {
		for a, t := range r.targets {
			if t.discovered && t.peer == name && t.conn == nil {
				delete(r.targets, a)
			}
		}
	}
	if r.cfg.NoDiscovery {
		return
	}
	our := r.cfg.Peer.Name
	now := r.clk.Now()
	for _, p := range changed {
		if p.Name == our {
			continue
		}
		for _, c := range p.Conns {
			if c.Remote == our || c.RemoteAddr == "" || r.conns[c.Remote] != nil {
				continue
			}
			if _, ok := r.targets[c.RemoteAddr]; ok {
				continue
			}
			if _, ok := r.forgotten[c.RemoteAddr]; ok {
				continue
			}
			if _, err := ParsePeerAddr(c.RemoteAddr, DefaultPort); err != nil {
				continue
			}
			r.targets[c.RemoteAddr] = &target{
				addr: c.RemoteAddr, discovered: true, peer: c.Remote,
				nextTry: now.Add(time.Duration(r.rng.Int64N(int64(r.cfg.BackoffBase)))),
			}
			r.makerDirty = true
		}
	}
}
