package server

import (
	"sync/atomic"
	"time"
)

// Stats counts queries by how they were answered. Every query answered is
// in exactly one of Local, NXDomain, Forwarded, UpstreamFailed and Refused;
// Truncated and Loops count again some of those.
type Stats struct {
	// Local: answered from the name table (A, AAAA, PTR, SOA, or NODATA
	// for a known name).
	Local uint64
	// NXDomain: names in the domain that the table does not hold.
	NXDomain uint64
	// Forwarded: an upstream's reply relayed, whatever its rcode.
	Forwarded uint64
	// UpstreamFailed: SERVFAIL because no upstream answered within
	// UpstreamTimeout (or there is none, or too many exchanges were in
	// flight).
	UpstreamFailed uint64
	// Refused: zone transfers, ANY and other classes in the domain, EDNS
	// versions other than 0, and our own forwarded queries coming back.
	Refused uint64
	// Truncated: UDP answers sent with TC set, so that the client
	// retries over TCP.
	Truncated uint64
	// Loops: our own forwarded queries that came back to us (also in
	// Refused). Non-zero means the upstreams lead back here: fix them.
	Loops uint64
}

// result is how one query was answered.
type result int

const (
	resLocal result = iota
	resNXDomain
	resForwarded
	resUpstreamFailed
	resRefused
)

type counters struct {
	byResult  [resRefused + 1]atomic.Uint64
	truncated atomic.Uint64
	loops     atomic.Uint64
}

// Stats returns a snapshot of the counters since New.
func (s *Server) Stats() Stats {
	c := &s.stats
	return Stats{
		Local:          c.byResult[resLocal].Load(),
		NXDomain:       c.byResult[resNXDomain].Load(),
		Forwarded:      c.byResult[resForwarded].Load(),
		UpstreamFailed: c.byResult[resUpstreamFailed].Load(),
		Refused:        c.byResult[resRefused].Load(),
		Truncated:      c.truncated.Load(),
		Loops:          c.loops.Load(),
	}
}

// lastLog rate-limits a log line that a misconfiguration would otherwise
// repeat on every query.
type lastLog struct{ at atomic.Int64 }

// due reports whether at least every has passed since it last returned
// true.
func (l *lastLog) due(now time.Time, every time.Duration) bool {
	last := l.at.Load()
	if last != 0 && now.UnixNano()-last < int64(every) {
		return false
	}
	return l.at.CompareAndSwap(last, now.UnixNano())
}
