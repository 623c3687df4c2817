package main

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
)

// Bounds of the dns scenario's flags.
const (
	maxDNSNames   = 1000
	maxDNSClients = 64
)

// Kinds of name the dns scenario asks for.
const (
	dnsQueryWeave     = "weave"     // nK.weave.local: weave's name table, dnsmasq's hosts file
	dnsQueryForwarded = "forwarded" // nK.ext.test: relayed to the upstream by both
)

// Servers the dns scenario measures.
const (
	dnsServerWeave         = "weavedns"
	dnsServerDnsmasq       = "dnsmasq"       // --cache-size=0: forwards every query, as weaveDNS does
	dnsServerDnsmasqCached = "dnsmasq-cache" // a cache that holds every forwarded name
	dnsmasqDefaultCache    = 150             // dnsmasq's default --cache-size
)

// dnsResult is what the dns scenario measured: weaveDNS and dnsmasq serving
// the same names on the same host namespace, queried from a container
// namespace over the same path.
type dnsResult struct {
	Names   int     `json:"names"`   // weave names registered, and forwarded names asked, each
	Seconds float64 `json:"seconds"` // measured time of each row
	Dnsmasq string  `json:"dnsmasq_version,omitempty"`
	// DnsmasqCacheSize is the cache of the dnsmasq-cache rows.
	DnsmasqCacheSize int      `json:"dnsmasq_cache_size,omitempty"`
	Rows             []dnsRow `json:"rows"`
}

// dnsRow is one load run: one server, one kind of name, one number of
// clients.
type dnsRow struct {
	Query       string `json:"query"`  // dnsQueryWeave or dnsQueryForwarded
	Server      string `json:"server"` // dnsServerWeave, ...
	loadSummary        // and the number of clients in it
	// ServerCPUPct is the server process's CPU time during the window,
	// in percent of one core.
	ServerCPUPct float64 `json:"server_cpu_percent,omitempty"`
	// WeaveVs compares the weaveDNS row of the same query and clients
	// with this one (weave/this); only on the other servers' rows.
	WeaveVs *dnsRatios `json:"weave_vs_this,omitempty"`
}

// dnsRatios are weave/this: for q/s higher is better for weave, for
// latency lower is. Zero: not known.
type dnsRatios struct {
	QPS float64 `json:"qps"`
	P50 float64 `json:"p50"`
	P99 float64 `json:"p99"`
}

// setRatios fills WeaveVs of every row that is not weaveDNS's.
func (d *dnsResult) setRatios() {
	for i := range d.Rows {
		r := &d.Rows[i]
		if r.Server == dnsServerWeave {
			continue
		}
		r.WeaveVs = nil
		for _, w := range d.Rows {
			if w.Server == dnsServerWeave && w.Query == r.Query && w.Clients == r.Clients {
				r.WeaveVs = &dnsRatios{QPS: ratio(w.QPS, r.QPS), P50: ratio(w.P50Ms, r.P50Ms), P99: ratio(w.P99Ms, r.P99Ms)}
			}
		}
	}
}

// serverLabel names a server in the table.
func (d *dnsResult) serverLabel(s string) string {
	switch s {
	case dnsServerWeave:
		return "weaveDNS"
	case dnsServerDnsmasq:
		return "dnsmasq --cache-size=0"
	case dnsServerDnsmasqCached:
		return fmt.Sprintf("dnsmasq --cache-size=%d", d.DnsmasqCacheSize)
	}
	return s
}

// printDNS writes the dns scenario's table.
func printDNS(w io.Writer, res result) {
	d := res.DNS
	if d == nil {
		d = &dnsResult{}
	}
	version := "dnsmasq"
	if d.Dnsmasq != "" {
		version += " " + d.Dnsmasq
	}
	fmt.Fprintf(w, "\nweaveDNS and %s on one host namespace, asked from a container namespace over the same path:\n"+
		"UDP A queries, closed loop, %g s per row, %d names of each kind in turn\n\n", version, d.Seconds, d.Names)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "name\tclients\tserver\tq/s\tp50 ms\tp99 ms\tmax ms\tfailed\tlost\tserver CPU\t"+
		"q/s weave/this\tp50 weave/this\tp99 weave/this\tstatus\t")
	num := func(v float64, prec int) string {
		if v == 0 {
			return "-"
		}
		return fmt.Sprintf("%.*f", prec, v)
	}
	x := func(v float64) string {
		if v == 0 {
			return "-"
		}
		return fmt.Sprintf("%.2fx", v)
	}
	for _, r := range d.Rows {
		rt := dnsRatios{}
		if r.WeaveVs != nil {
			rt = *r.WeaveVs
		}
		cpu := "-"
		if r.ServerCPUPct > 0 {
			cpu = fmt.Sprintf("%.0f%%", r.ServerCPUPct)
		}
		status := "ok"
		if !r.ok() {
			status = "FAILED"
		}
		fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\t%s\t%s\t%d\t%d\t%s\t%s\t%s\t%s\t%s\t\n",
			r.Query, r.Clients, d.serverLabel(r.Server), num(r.QPS, 0),
			num(r.P50Ms, 3), num(r.P99Ms, 3), num(r.MaxMs, 3), r.Failed, r.Lost, cpu,
			x(rt.QPS), x(rt.P50), x(rt.P99), status)
	}
	if len(d.Rows) == 0 {
		status := "ok"
		if res.Error != "" {
			status = "FAILED"
		}
		fmt.Fprintf(tw, "-\t-\t-\t-\t-\t-\t-\t-\t-\t-\t-\t-\t-\t%s\t\n", status)
	}
	tw.Flush()
	for _, line := range []string{
		"weave: nK.weave.local, registered with `weave dns-add` and listed in dnsmasq's --addn-hosts file;",
		"forwarded: nK.ext.test, relayed by both to an authoritative miekg/dns server in a namespace on the LAN (TTL " + fmt.Sprint(upstreamTTL) + " s).",
		"weaveDNS keeps no cache of forwarded answers (identical questions in flight share one upstream exchange; the",
		"clients ask different names, so they rarely do), and dnsmasq --cache-size=0 forwards every query too: compare those.",
		fmt.Sprintf("dnsmasq --cache-size=%d answers forwarded names from its cache after the first query of each, as dnsmasq does", d.DnsmasqCacheSize),
		fmt.Sprintf("by default (its default cache, %d entries, is raised to hold every name): no upstream round trip, so its ratio", dnsmasqDefaultCache),
		"is not like for like.",
		"ratios weave/this: q/s (above 1: weave is faster), latency (below 1: weave is faster); server CPU: the server",
		"process during the row, % of one core (the load generator and the upstream share the same cores)",
	} {
		fmt.Fprintln(w, line)
	}
}

// ok reports whether the row's figures can be trusted: answers came and
// at most 1% of the queries failed or went unanswered.
func (r dnsRow) ok() bool {
	total := r.Answered + r.Failed + r.Lost
	return r.Answered > 0 && 100*(r.Failed+r.Lost) <= total
}

// describe is a one-line account of a row for logs and errors.
func (r dnsRow) describe() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s names, %d clients, %s: %.0f q/s, p50 %.3f ms, p99 %.3f ms, %d failed, %d lost",
		r.Query, r.Clients, r.Server, r.QPS, r.P50Ms, r.P99Ms, r.Failed, r.Lost)
	if r.FirstError != "" {
		fmt.Fprintf(&b, " (first: %s)", r.FirstError)
	}
	return b.String()
}
