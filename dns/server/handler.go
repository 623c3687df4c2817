package server

import (
	"context"
	"strings"
	"time"

	"github.com/miekg/dns"
)

// serveDNS is the miekg handler for both transports; each query runs on a
// goroutine of its own that the miekg server owns and waits for.
func (s *Server) serveDNS(w dns.ResponseWriter, req *dns.Msg) {
	tcp := w.LocalAddr().Network() == "tcp"
	resp, res := s.respond(s.ctx, req, tcp)
	fit(resp, req, tcp)
	s.stats.byResult[res].Add(1)
	if resp.Truncated && !tcp {
		s.stats.truncated.Add(1)
	}
	if err := w.WriteMsg(resp); err != nil {
		s.log.Debug("dns: write reply", "addr", w.RemoteAddr().String(), "err", err)
	}
}

// respond computes the reply to req, before fitting it to the client's
// buffer. Only forwarding does I/O, bounded by UpstreamTimeout and ended
// early by ctx.
func (s *Server) respond(ctx context.Context, req *dns.Msg, tcp bool) (*dns.Msg, result) {
	if len(req.Question) != 1 {
		return s.reply(req, dns.RcodeFormatError), resRefused
	}
	if req.Opcode != dns.OpcodeQuery {
		return s.reply(req, dns.RcodeNotImplemented), resRefused
	}
	opt := req.IsEdns0()
	if opt != nil && opt.Version() != 0 {
		// RFC 6891 6.1.3: BADVERS, with an OPT of the version we speak.
		return s.reply(req, dns.RcodeBadVers), resRefused
	}
	if marked(opt, s.token) {
		s.stats.loops.Add(1)
		if s.lastLoopLog.due(time.Now(), time.Minute) {
			s.log.Warn("dns: a query we forwarded came back to us: the upstreams forward to this server; refusing it",
				"name", req.Question[0].Name, "upstreams", s.upstreams)
		}
		return s.reply(req, dns.RcodeRefused), resRefused
	}
	q := req.Question[0]
	if q.Qtype == dns.TypeAXFR || q.Qtype == dns.TypeIXFR {
		// The zone is replicated by the routers' gossip, not by
		// transfers, and we do not relay transfers of other zones.
		return s.reply(req, dns.RcodeRefused), resRefused
	}
	name := strings.ToLower(q.Name)
	if dns.IsSubDomain(s.domain, name) {
		return s.local(req, q, name)
	}
	if q.Qtype == dns.TypePTR && q.Qclass == dns.ClassINET {
		if ip, ok := parseReverse(name); ok {
			if names := s.cfg.Names.LookupAddr(ip); len(names) > 0 {
				m := s.reply(req, dns.RcodeSuccess)
				m.Authoritative = true
				hdr := dns.RR_Header{Name: q.Name, Rrtype: dns.TypePTR, Class: dns.ClassINET, Ttl: s.ttl}
				for _, n := range names {
					m.Answer = append(m.Answer, &dns.PTR{Hdr: hdr, Ptr: dns.Fqdn(n)})
				}
				return m, resLocal
			}
		}
	}
	return s.forward(ctx, req, tcp)
}

// local answers a question in the domain from the name table.
func (s *Server) local(req *dns.Msg, q dns.Question, name string) (*dns.Msg, result) {
	if q.Qclass != dns.ClassINET {
		return s.reply(req, dns.RcodeRefused), resRefused
	}
	if q.Qtype == dns.TypeANY {
		// RFC 8482 allows refusing ANY; clients ask A and AAAA anyway.
		return s.reply(req, dns.RcodeNotImplemented), resRefused
	}
	m := s.reply(req, dns.RcodeSuccess)
	m.Authoritative = true
	if name == s.domain && q.Qtype == dns.TypeSOA {
		soa := *s.soa
		soa.Hdr.Name = q.Name
		m.Answer = []dns.RR{&soa}
		return m, resLocal
	}
	addrs := s.cfg.Names.LookupName(name)
	if len(addrs) == 0 && name != s.domain {
		m.Rcode = dns.RcodeNameError
		m.Ns = []dns.RR{s.soa}
		return m, resNXDomain
	}
	hdr := dns.RR_Header{Name: q.Name, Rrtype: q.Qtype, Class: dns.ClassINET, Ttl: s.ttl}
	for _, a := range addrs {
		switch {
		case q.Qtype == dns.TypeA && a.Unmap().Is4():
			m.Answer = append(m.Answer, &dns.A{Hdr: hdr, A: a.Unmap().AsSlice()})
		case q.Qtype == dns.TypeAAAA && a.Is6() && !a.Is4In6():
			m.Answer = append(m.Answer, &dns.AAAA{Hdr: hdr, AAAA: a.WithZone("").AsSlice()})
		}
	}
	if len(m.Answer) == 0 {
		// NODATA: the name exists, without this type. The SOA lets
		// caches keep the negative answer for TTL only (RFC 2308).
		m.Ns = []dns.RR{s.soa}
	}
	return m, resLocal
}

// reply starts a reply to req with rcode, with an OPT when req had one
// (RFC 6891), its DO bit copied (RFC 3225).
func (s *Server) reply(req *dns.Msg, rcode int) *dns.Msg {
	m := new(dns.Msg)
	m.SetReply(req)
	m.Rcode = rcode
	m.RecursionAvailable = true
	if opt := req.IsEdns0(); opt != nil {
		m.SetEdns0(ednsSize, opt.Do())
	}
	return m
}

// fit makes resp fit the client's buffer: over UDP 512 bytes, or the EDNS0
// size the client advertised; over TCP 64 KiB. Records that do not fit are
// dropped and TC is set, so that the client retries over TCP.
func fit(resp, req *dns.Msg, tcp bool) {
	size := dns.MinMsgSize
	switch {
	case tcp:
		size = dns.MaxMsgSize
	case req.IsEdns0() != nil:
		size = max(int(req.IsEdns0().UDPSize()), dns.MinMsgSize)
	}
	resp.Truncate(size)
	resp.Compress = true
}
