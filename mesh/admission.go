package mesh

// Admission of inbound connections, before their handshake.
//
// Anyone who can reach port 6783 can open connections, send garbage or guess
// the password. The accept loop therefore asks the admission gate about each
// connection before it spends anything on it: a connection over the cap of
// pending (not yet handshaken) connections, globally or from its source
// address, or from a source that failed too many handshakes lately, is closed
// (reset) at once, before any goroutine or per-connection state; it costs an
// entry in the bounded table of sources at most. When the global cap is
// full, a connection from a source holding fewer pending slots than the
// source holding the most takes the oldest slot of that source (which is
// closed), so that an attacker spreading idle connections over many
// addresses cannot keep a peer out. An admitted connection
// costs about 2.5 KiB (a goroutine blocked in Read in its initial 2 KiB
// stack) until the remote's first byte arrives; only then does the router
// build the conn and run the handshake (about 11 KiB while it runs, mostly
// the stack of the handshake), and only after the handshake does it
// allocate the send queue (conn.handshaken; 24 KiB with the default
// SendQueue). HandshakeTimeout, counted from the accept, bounds the whole
// wait. Before this gate, each accepted connection cost about 38 KiB at
// once, without a cap.
//
// Failures are logged once per source, then counted and summarised every
// FailureLogInterval, so that a flood does not flood the log.

import (
	"container/list"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/weavelab/weave/mesh/handshake"
)

// Reasons for refusing an inbound connection before its handshake.
var (
	errPendingLimit   = errors.New("too many pending handshakes")
	errSourcePending  = errors.New("too many pending handshakes from this address")
	errSourceFailures = errors.New("too many failed handshakes from this address")
	// errEvicted closes a pending connection to make room for one from a
	// source that holds fewer (see admit).
	errEvicted          = errors.New("pending handshake evicted for a source holding fewer")
	errHandshakeTimeout = errors.New("handshake not completed in time")
)

// logLinesPerInterval bounds the full log lines (one per source) and the
// summary lines the gate writes per FailureLogInterval; sources beyond it
// are summarised together in one line.
const logLinesPerInterval = 20

// longAgo is a deadline in the past, set to unblock a pending Read.
var longAgo = time.Unix(1, 0)

// admission is the gate in front of the handshake: the pending caps, and
// per source address a failure budget (a token bucket of
// FailedHandshakeBurst tokens refilled at one per FailedHandshakeInterval)
// and the state that rate-limits its log lines.
//
// It is safe for concurrent use (the accept loop admits, connection
// goroutines release and charge); one mutex guards all of it, and nothing
// blocks or logs while holding it.
type admission struct {
	maxPending, maxPerSource int
	burst                    int
	interval                 time.Duration // failure budget refill
	maxSources               int
	logInterval              time.Duration
	now                      func() time.Time
	log                      *slog.Logger

	mu        sync.Mutex
	pending   int                // admitted, not yet handshaken or failed
	perSource map[netip.Addr]int // pending by source; no zero entries
	// slots holds each source's pending slots, oldest first (as many as
	// perSource counts), for eviction.
	slots map[netip.Addr][]*pendingSlot
	seq   uint64 // admissions so far
	// sources holds the sources with a failure debt or unlogged events,
	// most recently seen first; at most maxSources, the least recently
	// seen is forgotten.
	sources map[netip.Addr]*list.Element // of *source
	lru     list.List
	lines   int // full log lines written in this log interval
	// Events of forgotten sources, for the next summary.
	lostSources, lostFailed, lostRefused int
}

// source is what the gate remembers about one remote address.
type source struct {
	addr netip.Addr
	// debtUntil is when the failure budget is full again: each failure
	// pushes it one interval further (from now if it has passed), and the
	// source is refused while it lies more than burst-1 intervals ahead.
	// So a fresh source may fail burst times in a row, then once per
	// interval (a GCRA token bucket, exact with an injected clock).
	debtUntil time.Time
	// noisy: an event was logged in full since the source was last quiet
	// for a whole log interval; later events are counted for the summary.
	// seen: an event came in this log interval.
	noisy, seen     bool
	failed, refused int
	lastReason      string // of the last counted event
}

// newAdmission returns the gate configured by cfg (checked), reading time
// from now and logging to log.
func newAdmission(cfg Config, now func() time.Time, log *slog.Logger) *admission {
	return &admission{
		maxPending:   cfg.MaxPendingHandshakes,
		maxPerSource: cfg.MaxPendingPerSource,
		burst:        cfg.FailedHandshakeBurst,
		interval:     cfg.FailedHandshakeInterval,
		maxSources:   cfg.MaxTrackedSources,
		logInterval:  cfg.FailureLogInterval,
		now:          now,
		log:          log,
		perSource:    make(map[netip.Addr]int),
		slots:        make(map[netip.Addr][]*pendingSlot),
		sources:      make(map[netip.Addr]*list.Element),
	}
}

// pendingSlot is an admitted connection's place under the pending caps.
type pendingSlot struct {
	a    *admission
	ip   netip.Addr
	done atomic.Bool
	// closeConn closes the connection when the gate evicts the slot (set
	// by onEvict); evicted says it did.
	closeConn atomic.Pointer[func()]
	evicted   atomic.Bool
	seq       uint64 // admission order: lower is older
}

// release gives the place back; idempotent, safe for concurrent use.
func (s *pendingSlot) release() {
	if !s.done.CompareAndSwap(false, true) {
		return
	}
	a := s.a
	a.mu.Lock()
	defer a.mu.Unlock()
	a.releaseLocked(s)
}

// releaseLocked removes s (done already) from the counts. a.mu must be held.
func (a *admission) releaseLocked(s *pendingSlot) {
	a.pending--
	if n := a.perSource[s.ip] - 1; n > 0 {
		a.perSource[s.ip] = n
	} else {
		delete(a.perSource, s.ip)
	}
	if rest := slices.DeleteFunc(a.slots[s.ip], func(o *pendingSlot) bool { return o == s }); len(rest) > 0 {
		a.slots[s.ip] = rest
	} else {
		delete(a.slots, s.ip)
	}
}

// onEvict sets what closes the slot's connection if the gate evicts it; if
// it has been evicted already, close runs now.
func (s *pendingSlot) onEvict(close func()) {
	s.closeConn.Store(&close)
	if s.evicted.Load() {
		if f := s.closeConn.Swap(nil); f != nil {
			(*f)()
		}
	}
}

// evict closes the slot's connection (now, or as soon as onEvict says
// how); the gate has released the slot already.
func (s *pendingSlot) evict() {
	s.evicted.Store(true)
	if f := s.closeConn.Swap(nil); f != nil {
		(*f)()
	}
}

// victimLocked returns the oldest pending slot of the source that holds
// the most (the oldest such slot among sources tied), when that source
// holds more than ip does; else nil. a.mu must be held.
func (a *admission) victimLocked(ip netip.Addr) *pendingSlot {
	var victim *pendingSlot
	most := 0
	for _, ss := range a.slots {
		if len(ss) > most || len(ss) == most && victim != nil && ss[0].seq < victim.seq {
			most, victim = len(ss), ss[0]
		}
	}
	if victim == nil || most <= a.perSource[ip] {
		return nil
	}
	return victim
}

// held reports whether release has not been called yet.
func (s *pendingSlot) held() bool { return !s.done.Load() }

// admit decides whether a connection from ip may start a handshake. If so
// it takes a pending slot, which the caller must release (and tell how to
// close the connection: onEvict); if not it returns why (and logs it,
// rate-limited), and the caller closes the connection. remote is only for
// the log.
//
// When all pending slots are taken, a connection from a source that holds
// fewer of them than the source holding the most evicts that source's
// oldest: many addresses each holding a few idle connections cannot keep
// a peer that holds none out (it would only have to wait for them to time
// out, over and over).
func (a *admission) admit(ip netip.Addr, remote net.Addr) (*pendingSlot, error) {
	a.mu.Lock()
	var err error
	var victim *pendingSlot
	if e := a.sources[ip]; e != nil && a.overBudgetLocked(e.Value.(*source)) {
		err = errSourceFailures
	} else if a.perSource[ip] >= a.maxPerSource {
		err = errSourcePending
	} else if a.pending >= a.maxPending {
		if victim = a.victimLocked(ip); victim != nil && victim.done.CompareAndSwap(false, true) {
			a.releaseLocked(victim)
		} else {
			victim, err = nil, errPendingLimit
		}
	}
	if err == nil {
		a.pending++
		a.perSource[ip]++
		a.seq++
		slot := &pendingSlot{a: a, ip: ip, seq: a.seq}
		a.slots[ip] = append(a.slots[ip], slot)
		var full bool
		if victim != nil {
			full = a.noteLocked(a.touchLocked(victim.ip), errEvicted, false)
		}
		a.mu.Unlock()
		if victim != nil {
			victim.evict()
			if full {
				a.log.Warn("inbound connection closed", "addr", victim.ip.String(), "reason", errEvicted.Error())
			}
		}
		return slot, nil
	}
	full := a.noteLocked(a.touchLocked(ip), err, false)
	a.mu.Unlock()
	if full {
		a.log.Warn("inbound connection refused", "addr", remote.String(), "reason", err.Error())
	}
	return nil, err
}

// failed charges ip for a failed inbound handshake and logs it,
// rate-limited. remote is only for the log.
func (a *admission) failed(ip netip.Addr, remote net.Addr, cause error) {
	a.mu.Lock()
	s := a.touchLocked(ip)
	now := a.now()
	if s.debtUntil.Before(now) {
		s.debtUntil = now
	}
	s.debtUntil = s.debtUntil.Add(a.interval)
	full := a.noteLocked(s, cause, true)
	a.mu.Unlock()
	if full {
		level := slog.LevelInfo
		if errors.Is(cause, handshake.ErrWrongPassword) || errors.Is(cause, handshake.ErrPasswordMismatch) ||
			errors.Is(cause, handshake.ErrCipher) || errors.Is(cause, handshake.ErrIdentity) {
			level = slog.LevelError
		}
		a.log.Log(context.Background(), level, "inbound handshake failed", "addr", remote.String(), "reason", cause.Error())
	}
}

// overBudgetLocked reports whether s has used up its failure budget.
func (a *admission) overBudgetLocked(s *source) bool {
	return s.debtUntil.Sub(a.now()) > time.Duration(a.burst-1)*a.interval
}

// touchLocked returns the record of ip, creating it, and marks it the most
// recently seen. When the table is full the least recently seen source is
// forgotten: its debt is lost and its unlogged events go to the next
// summary's count of other sources.
func (a *admission) touchLocked(ip netip.Addr) *source {
	if e := a.sources[ip]; e != nil {
		a.lru.MoveToFront(e)
		return e.Value.(*source)
	}
	if a.lru.Len() >= a.maxSources {
		a.forgetLocked(a.lru.Back())
	}
	s := &source{addr: ip}
	a.sources[ip] = a.lru.PushFront(s)
	return s
}

func (a *admission) forgetLocked(e *list.Element) {
	s := a.lru.Remove(e).(*source)
	delete(a.sources, s.addr)
	if s.failed+s.refused > 0 {
		a.lostSources++
		a.lostFailed += s.failed
		a.lostRefused += s.refused
	}
}

// noteLocked records an event (a failure, or a refusal) of s for the log.
// It reports whether to log it in full: the first event of a quiet source
// is, while this interval's budget of lines lasts; the others are counted
// for the next summary.
func (a *admission) noteLocked(s *source, reason error, failed bool) bool {
	s.seen = true
	if !s.noisy && a.lines < logLinesPerInterval {
		s.noisy = true
		a.lines++
		return true
	}
	s.noisy = true
	if failed {
		s.failed++
	} else {
		s.refused++
	}
	s.lastReason = reason.Error()
	return false
}

// sourceSummary is one summary line: the events of one source (or of all
// the sources not listed) since the last summary.
type sourceSummary struct {
	addr            netip.Addr // zero for other sources
	sources         int        // for other sources
	failed, refused int
	lastReason      string
}

// summarise ends a log interval: it logs the events counted since the last
// one, per source for the first few sources and in one line for the rest,
// and forgets the sources that have nothing left to remember (full budget,
// nothing to report).
func (a *admission) summarise() {
	for _, s := range a.takeSummaries() {
		if !s.addr.IsValid() {
			a.log.Warn("more failed handshakes from other addresses", "sources", s.sources, "failed", s.failed, "refused", s.refused, "period", a.logInterval)
			continue
		}
		a.log.Warn("more failed handshakes", "addr", s.addr.String(), "failed", s.failed, "refused", s.refused, "period", a.logInterval, "last_reason", s.lastReason)
	}
}

// takeSummaries is summarise without the logging; at most
// logLinesPerInterval+1 entries.
func (a *admission) takeSummaries() []sourceSummary {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.lines = 0
	now := a.now()
	var out []sourceSummary
	others := sourceSummary{sources: a.lostSources, failed: a.lostFailed, refused: a.lostRefused}
	a.lostSources, a.lostFailed, a.lostRefused = 0, 0, 0
	for e := a.lru.Front(); e != nil; {
		next := e.Next()
		s := e.Value.(*source)
		if s.failed+s.refused > 0 {
			if len(out) < logLinesPerInterval {
				out = append(out, sourceSummary{addr: s.addr, failed: s.failed, refused: s.refused, lastReason: s.lastReason})
			} else {
				others.sources++
				others.failed += s.failed
				others.refused += s.refused
			}
			s.failed, s.refused, s.lastReason = 0, 0, ""
		}
		if !s.seen {
			s.noisy = false
			if !s.debtUntil.After(now) {
				// Quiet for a whole interval, budget full: as if never seen.
				a.forgetLocked(e)
			}
		}
		s.seen = false
		e = next
	}
	if others.sources > 0 {
		out = append(out, others)
	}
	return out
}

// run writes the summaries every log interval until ctx ends, then once
// more.
func (a *admission) run(ctx context.Context) {
	t := time.NewTicker(a.logInterval)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			a.summarise()
		case <-ctx.Done():
			a.summarise()
			return
		}
	}
}

// sourceAddr returns the IP address a connection comes from (without a
// zone, IPv4-mapped addresses as IPv4), or the zero Addr if the transport's
// address does not parse.
func sourceAddr(a net.Addr) netip.Addr {
	if ta, ok := a.(*net.TCPAddr); ok {
		return ta.AddrPort().Addr().Unmap().WithZone("")
	}
	ap, err := netip.ParseAddrPort(a.String())
	if err != nil {
		return netip.Addr{}
	}
	return ap.Addr().Unmap().WithZone("")
}

// refuse closes a connection the gate did not admit. On TCP it resets it,
// which leaves no TIME_WAIT socket behind on our side.
func refuse(nc net.Conn) {
	if l, ok := nc.(interface{ SetLinger(int) error }); ok {
		l.SetLinger(0)
	}
	nc.Close()
}

// serveInbound runs one admitted inbound connection: it waits for the
// remote's first byte (a legitimate peer sends its hello at once), then
// builds the conn and runs it (handshakeInbound). The pending slot is
// released when the handshake succeeds (conn.handshaken) or the attempt
// ends. HandshakeTimeout from now bounds the wait and the handshake.
//
// Until the first byte, the goroutine must fit in its initial 2 KiB stack:
// this function and firstByte stay small, and the rest of the work, with
// its deeper calls, is in handshakeInbound.
func (r *Router) serveInbound(a *admission, slot *pendingSlot, nc net.Conn) {
	defer slot.release()
	deadline := time.Now().Add(r.cfg.HandshakeTimeout)
	first, err := firstByte(r.ctx, nc, deadline)
	if err != nil {
		nc.Close()
		if r.ctx.Err() == nil {
			a.failed(slot.ip, nc.RemoteAddr(), err)
		}
		return
	}
	r.handshakeInbound(a, slot, &prefixConn{Conn: nc, first: first}, deadline)
}

// handshakeInbound builds the conn of an inbound connection whose first
// byte arrived and runs it (runConn), closing it if its handshake is not
// done by deadline; it charges the source if the handshake failed.
func (r *Router) handshakeInbound(a *admission, slot *pendingSlot, nc net.Conn, deadline time.Time) {
	c := r.newConn(false, nc.RemoteAddr().String(), "")
	c.slot = slot
	if !r.post(func() { r.attempts[c] = struct{}{} }) {
		nc.Close()
		return
	}
	expire := time.AfterFunc(time.Until(deadline), func() {
		if slot.held() {
			c.close(fmt.Errorf("%w within %s", errHandshakeTimeout, r.cfg.HandshakeTimeout))
		}
	})
	r.runConn(c, nc)
	expire.Stop()
	if c.sess == nil && r.ctx.Err() == nil && !errors.Is(context.Cause(c.ctx), errSelf) {
		a.failed(slot.ip, nc.RemoteAddr(), context.Cause(c.ctx))
	}
}

// firstByte waits until nc has sent a byte, until deadline, or until ctx
// ends, and returns that byte.
func firstByte(ctx context.Context, nc net.Conn, deadline time.Time) ([]byte, error) {
	if err := nc.SetReadDeadline(deadline); err != nil {
		return nil, err
	}
	stop := context.AfterFunc(ctx, func() { nc.SetReadDeadline(longAgo) })
	b := make([]byte, 1)
	n, err := nc.Read(b)
	stop()
	if n == 1 {
		return b, nc.SetReadDeadline(time.Time{})
	}
	if err == nil {
		err = io.ErrNoProgress
	}
	return nil, errNoHello{err}
}

// errNoHello: a connection ended or timed out before sending a byte.
type errNoHello struct{ err error }

func (e errNoHello) Error() string {
	if errors.Is(e.err, io.EOF) {
		return "handshake: connection closed before the hello"
	}
	return "handshake: waiting for the hello: " + e.err.Error()
}

func (e errNoHello) Unwrap() error { return e.err }

// prefixConn is a net.Conn whose first bytes were already read: Read
// returns them before reading on.
type prefixConn struct {
	net.Conn
	first []byte
}

func (p *prefixConn) Read(b []byte) (int, error) {
	if len(p.first) > 0 {
		n := copy(b, p.first)
		p.first = p.first[n:]
		return n, nil
	}
	return p.Conn.Read(b)
}

// handshaken runs in the connection goroutine once the handshake has
// succeeded, before the writer starts and before the actor can see the
// connection: it allocates what only a handshaken connection needs (the
// send queue, SendQueue slots) and gives back an inbound connection's
// pending slot.
func (c *conn) handshaken() {
	c.out = make(chan []byte, c.r.cfg.SendQueue)
	if c.slot != nil {
		c.slot.release()
	}
}
