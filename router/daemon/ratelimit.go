package daemon

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"time"
)

// RateLimit configures RateLimitHandler.
type RateLimit struct {
	// Interval is the window in which Burst records of one kind pass.
	Interval time.Duration
	// Burst is how many records with the same level, message and
	// identifying attributes pass per interval.
	Burst int
	// PerMessage is how many records with the same level and message,
	// whatever their attributes, pass per interval (so that failures from
	// many sources stay bounded too).
	PerMessage int
	// MaxKeys bounds the kinds tracked at once (memory); records of kinds
	// beyond it count against their message's limit only.
	MaxKeys int
	// MinLevel: records below it pass untouched (debug output is asked for).
	MinLevel slog.Level
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// DefaultRateLimit returns the daemon's limits: 5 identical records and 20
// with the same message per 30 s, 1024 kinds tracked.
func DefaultRateLimit() RateLimit {
	return RateLimit{Interval: 30 * time.Second, Burst: 5, PerMessage: 20, MaxKeys: 1024, MinLevel: slog.LevelInfo}
}

// identifyingKeys are the attributes that tell one kind of record from
// another (the standard keys of STYLE.md and a failure's reason); others,
// such as a connection's id or a retry delay, vary between repeats.
var identifyingKeys = map[string]bool{
	"addr": true, "remote": true, "peer": true, "container": true,
	"reason": true, "err": true, "channel": true, "path": true,
}

// maxKeyValue bounds an attribute value in a key.
const maxKeyValue = 200

// RateLimitHandler passes the first few of repeated records and then, once
// per interval, one summary "MESSAGE (N similar messages suppressed)". It
// keeps no goroutine: summaries go out with the next record after their
// interval, or on Flush. Memory is bounded by MaxKeys. Safe for concurrent
// use; handlers made by WithAttrs and WithGroup share the limits.
type RateLimitHandler struct {
	next   slog.Handler
	st     *rateState
	prefix string // bound identifying attributes and groups, for keys
}

type rateState struct {
	cfg       RateLimit
	mu        sync.Mutex
	keys      map[string]*rateEntry // by level, message and attributes
	msgs      map[string]*rateEntry // by level and message
	dropped   int                   // records not tracked at all (both maps full)
	nextSweep time.Time
}

// rateEntry counts one kind of record in its current window.
type rateEntry struct {
	start      time.Time
	count      int
	suppressed int
	// What its summary says, and through which handler (with the
	// attributes bound where the first record was logged).
	h     slog.Handler
	level slog.Level
	msg   string
	attrs []slog.Attr
}

// NewRateLimitHandler wraps next.
func NewRateLimitHandler(next slog.Handler, cfg RateLimit) *RateLimitHandler {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &RateLimitHandler{next: next, st: &rateState{
		cfg: cfg, keys: map[string]*rateEntry{}, msgs: map[string]*rateEntry{},
	}}
}

// Enabled implements slog.Handler.
func (h *RateLimitHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return h.next.Enabled(ctx, l)
}

// WithAttrs implements slog.Handler.
func (h *RateLimitHandler) WithAttrs(as []slog.Attr) slog.Handler {
	var b strings.Builder
	b.WriteString(h.prefix)
	for _, a := range as {
		writeKeyAttr(&b, a)
	}
	return &RateLimitHandler{next: h.next.WithAttrs(as), st: h.st, prefix: b.String()}
}

// WithGroup implements slog.Handler.
func (h *RateLimitHandler) WithGroup(name string) slog.Handler {
	return &RateLimitHandler{next: h.next.WithGroup(name), st: h.st, prefix: h.prefix + name + "."}
}

// Handle implements slog.Handler.
func (h *RateLimitHandler) Handle(ctx context.Context, r slog.Record) error {
	st := h.st
	if r.Level < st.cfg.MinLevel {
		return h.next.Handle(ctx, r)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%d|%s|%s", r.Level, r.Message, h.prefix)
	var attrs []slog.Attr
	r.Attrs(func(a slog.Attr) bool {
		if identifyingKeys[a.Key] {
			writeKeyAttr(&b, a)
			attrs = append(attrs, a)
		}
		return true
	})
	key, msgKey := b.String(), fmt.Sprintf("%d|%s", r.Level, r.Message)

	now := st.cfg.Now()
	st.mu.Lock()
	due := st.sweepLocked(now)
	pass := true
	if e := st.entryLocked(st.keys, key, now, h, r, attrs, &due); e != nil {
		e.count++
		if e.count > st.cfg.Burst {
			e.suppressed++
			pass = false
		}
	}
	if pass {
		if m := st.entryLocked(st.msgs, msgKey, now, h, r, nil, &due); m != nil {
			m.count++
			if m.count > st.cfg.PerMessage {
				m.suppressed++
				pass = false
			}
		} else {
			st.dropped++
			pass = false
		}
	}
	st.mu.Unlock()
	err := emit(ctx, due)
	if pass {
		if herr := h.next.Handle(ctx, r); herr != nil {
			err = herr
		}
	}
	return err
}

// entryLocked returns m[key]'s entry for the current window, starting a
// new one (and queueing the old one's summary on due) when it expired, or
// nil when m is full.
func (st *rateState) entryLocked(m map[string]*rateEntry, key string, now time.Time, h *RateLimitHandler, r slog.Record, attrs []slog.Attr, due *[]summary) *rateEntry {
	e := m[key]
	if e != nil && now.Sub(e.start) < st.cfg.Interval {
		return e
	}
	if e != nil {
		*due = appendSummary(*due, e)
		e.start, e.count, e.suppressed = now, 0, 0
		return e
	}
	if len(m) >= st.cfg.MaxKeys {
		// Full until the next sweep drops the ended windows.
		return nil
	}
	e = &rateEntry{start: now, h: h.next, level: r.Level, msg: r.Message, attrs: attrs}
	m[key] = e
	return e
}

// summary is one line to write about suppressed records.
type summary struct {
	h slog.Handler
	r slog.Record
}

func appendSummary(due []summary, e *rateEntry) []summary {
	if e.suppressed == 0 {
		return due
	}
	r := slog.NewRecord(time.Now(), e.level, fmt.Sprintf("%s (%d similar messages suppressed)", e.msg, e.suppressed), 0)
	r.AddAttrs(e.attrs...)
	return append(due, summary{h: e.h, r: r})
}

// sweepLocked, once per interval, drops the entries whose window has
// ended and returns their summaries.
func (st *rateState) sweepLocked(now time.Time) []summary {
	if now.Before(st.nextSweep) {
		return nil
	}
	st.nextSweep = now.Add(st.cfg.Interval)
	var due []summary
	for _, m := range []map[string]*rateEntry{st.keys, st.msgs} {
		for k, e := range m {
			if now.Sub(e.start) >= st.cfg.Interval {
				due = appendSummary(due, e)
				delete(m, k)
			}
		}
	}
	if st.dropped > 0 {
		r := slog.NewRecord(time.Now(), slog.LevelWarn, fmt.Sprintf("log rate limiter full (%d similar messages suppressed)", st.dropped), 0)
		st.dropped = 0
		var h slog.Handler
		for _, m := range []map[string]*rateEntry{st.msgs, st.keys} {
			for _, e := range m {
				h = e.h
				break
			}
		}
		if h != nil {
			due = append(due, summary{h: h, r: r})
		}
	}
	return due
}

// Flush writes the summaries of every window with suppressed records and
// forgets all counts; the daemon calls it when it stops.
func (h *RateLimitHandler) Flush(ctx context.Context) error {
	st := h.st
	st.mu.Lock()
	var due []summary
	for _, m := range []map[string]*rateEntry{st.keys, st.msgs} {
		for k, e := range m {
			due = appendSummary(due, e)
			delete(m, k)
		}
	}
	if st.dropped > 0 {
		r := slog.NewRecord(time.Now(), slog.LevelWarn, fmt.Sprintf("log rate limiter full (%d similar messages suppressed)", st.dropped), 0)
		due = append(due, summary{h: h.next, r: r})
		st.dropped = 0
	}
	st.mu.Unlock()
	return emit(ctx, due)
}

func emit(ctx context.Context, due []summary) error {
	var err error
	for _, s := range due {
		if e := s.h.Handle(ctx, s.r); e != nil {
			err = e
		}
	}
	return err
}

// writeKeyAttr appends a=v to a key, with an address's port left out
// (each connection from one host comes from a new port) and long values
// cut.
func writeKeyAttr(b *strings.Builder, a slog.Attr) {
	v := a.Value.Resolve().String()
	if a.Key == "remote" || a.Key == "addr" {
		if host, _, err := net.SplitHostPort(v); err == nil {
			v = host
		}
	}
	if len(v) > maxKeyValue {
		v = v[:maxKeyValue]
	}
	fmt.Fprintf(b, ";%s=%s", a.Key, v)
}
