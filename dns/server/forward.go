package server

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/miekg/dns"
)

// forward relays req to the upstreams (see exchange) and returns their
// reply for the client, or SERVFAIL. Identical questions in flight share
// one exchange (see flightKey).
func (s *Server) forward(ctx context.Context, req *dns.Msg, tcp bool) (*dns.Msg, result) {
	if len(s.upstreams) == 0 {
		return s.reply(req, dns.RcodeServerFailure), resUpstreamFailed
	}
	key := keyOf(req, tcp)
	f, leader := s.flights.join(key)
	if leader {
		var resp *dns.Msg
		select {
		case s.exchanges <- struct{}{}:
			var err error
			resp, err = s.exchange(ctx, req, tcp)
			<-s.exchanges
			if err != nil {
				s.log.Debug("dns: forward failed", "name", req.Question[0].Name, "err", err)
			}
		default:
			s.log.Debug("dns: too many forwards in flight", "name", req.Question[0].Name)
		}
		s.flights.finish(key, f, resp)
	} else {
		select {
		case <-f.done:
		case <-ctx.Done():
			return s.reply(req, dns.RcodeServerFailure), resUpstreamFailed
		}
	}
	if f.resp == nil {
		return s.reply(req, dns.RcodeServerFailure), resUpstreamFailed
	}
	return s.relay(f.resp, req), resForwarded
}

// relay turns an upstream's reply (shared, not modified) into the reply to
// req: the client's ID and question, and EDNS0 as the client spoke it.
func (s *Server) relay(up, req *dns.Msg) *dns.Msg {
	m := up.Copy()
	m.Id = req.Id
	m.Question = req.Question
	opt := m.IsEdns0()
	if req.IsEdns0() == nil {
		// The client spoke no EDNS: no OPT back (RFC 6891 7), and no
		// extended rcode that would need one.
		m.Extra = slicesDeleteOPT(m.Extra)
		if m.Rcode > 0xF {
			m.Rcode = dns.RcodeServerFailure
		}
		return m
	}
	if opt == nil {
		m.SetEdns0(ednsSize, req.IsEdns0().Do())
		return m
	}
	// The buffer size is ours now; the upstream's cookie was for us.
	opt.SetUDPSize(ednsSize)
	opt.Option = withoutHopOptions(opt.Option, s.token)
	return m
}

// exchange sends req to the upstreams in order over the client's
// transport, until one answers. Each gets an equal share of the time left
// of UpstreamTimeout, so a silent first upstream leaves time for the
// others, and one that fails at once (refused port, unreachable) leaves
// its share to them. SERVFAIL and REFUSED move on to the next too, as
// stub resolvers do; when every upstream answers so, the last such reply
// is relayed.
func (s *Server) exchange(ctx context.Context, req *dns.Msg, tcp bool) (*dns.Msg, error) {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.UpstreamTimeout)
	defer cancel()
	deadline, _ := ctx.Deadline()
	q := s.upstreamQuery(req)
	var (
		fallback *dns.Msg
		errs     []error
	)
	for i, up := range s.upstreams {
		left := time.Until(deadline)
		if left <= 0 || ctx.Err() != nil {
			errs = append(errs, fmt.Errorf("%s: not tried: %w", up, context.DeadlineExceeded))
			break
		}
		actx, acancel := context.WithTimeout(ctx, left/time.Duration(len(s.upstreams)-i))
		q.Id = dns.Id()
		r, err := exchangeOne(actx, q, up, tcp)
		acancel()
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", up, err))
			continue
		}
		if r.Rcode == dns.RcodeServerFailure || r.Rcode == dns.RcodeRefused {
			errs = append(errs, fmt.Errorf("%s: %s", up, dns.RcodeToString[r.Rcode]))
			fallback = r
			continue
		}
		return r, nil
	}
	if fallback != nil {
		return fallback, nil
	}
	return nil, errors.Join(errs...)
}

// upstreamQuery is the query sent upstream for req: its question and flags,
// an OPT with the client's options (less hop-by-hop ones) plus our loop
// marker, and a buffer size of at least ednsSize.
func (s *Server) upstreamQuery(req *dns.Msg) *dns.Msg {
	q := new(dns.Msg)
	q.Opcode = dns.OpcodeQuery
	q.RecursionDesired = req.RecursionDesired
	q.CheckingDisabled = req.CheckingDisabled
	q.AuthenticatedData = req.AuthenticatedData
	q.Question = req.Question
	opt := &dns.OPT{Hdr: dns.RR_Header{Name: ".", Rrtype: dns.TypeOPT}}
	size := ednsSize
	if c := req.IsEdns0(); c != nil {
		size = max(size, int(c.UDPSize()))
		if c.Do() {
			opt.SetDo()
		}
		opt.Option = withoutHopOptions(c.Option, s.token)
	}
	opt.SetUDPSize(uint16(min(size, readSize)))
	opt.Option = append(opt.Option, &dns.EDNS0_LOCAL{Code: loopOption, Data: s.token})
	q.Extra = []dns.RR{opt}
	return q
}

// withoutHopOptions copies opts without those meant for one hop only:
// cookies (RFC 7873: per client and server), and our own marker.
func withoutHopOptions(opts []dns.EDNS0, token []byte) []dns.EDNS0 {
	out := make([]dns.EDNS0, 0, len(opts))
	for _, o := range opts {
		if o.Option() == dns.EDNS0COOKIE {
			continue
		}
		if l, ok := o.(*dns.EDNS0_LOCAL); ok && l.Code == loopOption && string(l.Data) == string(token) {
			continue
		}
		out = append(out, o)
	}
	return out
}

func slicesDeleteOPT(rrs []dns.RR) []dns.RR {
	out := rrs[:0]
	for _, rr := range rrs {
		if rr.Header().Rrtype != dns.TypeOPT {
			out = append(out, rr)
		}
	}
	return out
}

// aLongTimeAgo unblocks reads and writes at once.
var aLongTimeAgo = time.Unix(1, 0)

// exchangeOne sends q to up and reads its reply until ctx's deadline, or
// until ctx ends (Close). Over UDP, datagrams that are not a reply to q
// (wrong ID or question: late replies, spoofing) are skipped.
func exchangeOne(ctx context.Context, q *dns.Msg, up netip.AddrPort, tcp bool) (*dns.Msg, error) {
	network := "udp"
	if tcp {
		network = "tcp"
	}
	var d net.Dialer
	nc, err := d.DialContext(ctx, network, up.String())
	if err != nil {
		return nil, err
	}
	defer nc.Close()
	if dl, ok := ctx.Deadline(); ok {
		nc.SetDeadline(dl)
	}
	stop := context.AfterFunc(ctx, func() { nc.SetDeadline(aLongTimeAgo) })
	defer stop()
	co := &dns.Conn{Conn: nc, UDPSize: readSize}
	if err := co.WriteMsg(q); err != nil {
		return nil, err
	}
	for {
		r, err := co.ReadMsg()
		if err != nil {
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			return nil, err
		}
		if r.Id == q.Id && r.Response && sameQuestion(r, q) {
			return r, nil
		}
		if tcp {
			return nil, errors.New("reply does not match the query")
		}
	}
}

func sameQuestion(r, q *dns.Msg) bool {
	return len(r.Question) == 1 && r.Question[0].Qtype == q.Question[0].Qtype &&
		r.Question[0].Qclass == q.Question[0].Qclass &&
		strings.EqualFold(r.Question[0].Name, q.Question[0].Name)
}

// flightKey identifies the queries that may share one upstream exchange:
// same question (names compared case-insensitively, each client gets its
// own case back), transport (a UDP reply may be truncated), the flags that
// change the answer, and the client's EDNS options (e.g. client subnet).
type flightKey struct {
	name          string
	qtype, qclass uint16
	tcp           bool
	rd, cd, do    bool
	opts          string
}

func keyOf(req *dns.Msg, tcp bool) flightKey {
	q := req.Question[0]
	k := flightKey{
		name: strings.ToLower(q.Name), qtype: q.Qtype, qclass: q.Qclass, tcp: tcp,
		rd: req.RecursionDesired, cd: req.CheckingDisabled,
	}
	if opt := req.IsEdns0(); opt != nil {
		k.do = opt.Do()
		var b strings.Builder
		for _, o := range opt.Option {
			if o.Option() == dns.EDNS0COOKIE || o.Option() == dns.EDNS0PADDING {
				continue
			}
			fmt.Fprintf(&b, "%d:%s;", o.Option(), o.String())
		}
		k.opts = b.String()
	}
	return k
}

// flight is one upstream exchange that several clients wait for.
type flight struct {
	done chan struct{}
	resp *dns.Msg // nil on failure; read-only once done is closed
}

// flights holds the exchanges in flight.
type flights struct {
	mu sync.Mutex
	m  map[flightKey]*flight
}

// join returns the flight for k, and whether the caller is its leader and
// must run the exchange and call finish.
func (fs *flights) join(k flightKey) (*flight, bool) {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	if f, ok := fs.m[k]; ok {
		return f, false
	}
	f := &flight{done: make(chan struct{})}
	fs.m[k] = f
	return f, true
}

// finish publishes the leader's result to the waiters.
func (fs *flights) finish(k flightKey, f *flight, resp *dns.Msg) {
	fs.mu.Lock()
	delete(fs.m, k)
	fs.mu.Unlock()
	f.resp = resp
	close(f.done)
}
