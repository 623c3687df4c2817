package main

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/miekg/dns"
)

// The dns scenario's load generator (helper role dns-load): N clients,
// each with a UDP socket of its own, send A queries in a closed loop (the
// next as soon as the reply is in) for a fixed time, cycling through a
// list of names, and it prints a loadSummary as JSON. Before measuring it
// checks that the server answers every name (with the expected address
// when the list gives one), then runs a warm-up that is not counted.

// loadSummary is what one load run measured.
type loadSummary struct {
	Clients int     `json:"clients"`
	Seconds float64 `json:"seconds"` // the measured window
	// Answered counts queries sent within the window that got NOERROR
	// with at least one answer record; the latencies are theirs.
	Answered int `json:"answered"`
	// Failed counts replies with another rcode or no answer, and send or
	// receive errors; Lost, queries without a reply within the timeout.
	Failed int     `json:"failed"`
	Lost   int     `json:"lost"`
	QPS    float64 `json:"qps"` // Answered per second of the window
	P50Ms  float64 `json:"p50_ms"`
	P99Ms  float64 `json:"p99_ms"`
	MaxMs  float64 `json:"max_ms"`
	// CPUTicks is the CPU time (user+system, clock ticks) the process
	// given with -cpu-pid used during the window; 0 when none was given
	// or it could not be read.
	CPUTicks uint64 `json:"cpu_ticks,omitempty"`
	// FirstError describes the first failed query, if any.
	FirstError string `json:"first_error,omitempty"`
}

// queryName is one name of the list, with the address expected in its
// answer (invalid: any address will do).
type queryName struct {
	name string // fully qualified, with the final dot
	want netip.Addr
}

// loadConfig is what the dns-load flags ask for.
type loadConfig struct {
	server   string // IP:port
	names    []queryName
	clients  int
	duration time.Duration
	warmup   time.Duration
	timeout  time.Duration // for one query
	cpuPID   int
}

// Bounds of the load helper.
const (
	maxLoadClients = 256
	// loadReadyTimeout bounds the check before the load: the server may
	// still be starting when the first name is asked.
	loadReadyTimeout = 10 * time.Second
)

func runDNSLoad(args []string, stdout, stderr io.Writer) int {
	cfg, err := parseLoadFlags(args, stderr)
	if err != nil {
		return 2
	}
	if err := checkNames(cfg.server, cfg.names, loadReadyTimeout); err != nil {
		fmt.Fprintf(stderr, "dns-load: %s: check before the load: %v\n", cfg.server, err)
		return 1
	}
	sum, err := generateLoad(cfg)
	if err != nil {
		fmt.Fprintf(stderr, "dns-load: %s: %v\n", cfg.server, err)
		return 1
	}
	b, err := json.Marshal(sum)
	if err != nil {
		fmt.Fprintf(stderr, "dns-load: %v\n", err)
		return 1
	}
	fmt.Fprintln(stdout, string(b))
	return 0
}

func parseLoadFlags(args []string, stderr io.Writer) (loadConfig, error) {
	fs := flag.NewFlagSet(helperDNSLoad, flag.ContinueOnError)
	fs.SetOutput(stderr)
	var cfg loadConfig
	var namesFile string
	fs.StringVar(&cfg.server, "server", "", "DNS server, IP:port")
	fs.StringVar(&namesFile, "names", "", "file of names to query, one a line, each optionally followed by the expected IPv4 address")
	fs.IntVar(&cfg.clients, "clients", 1, "concurrent clients, each with one query outstanding")
	fs.DurationVar(&cfg.duration, "duration", 5*time.Second, "measured time")
	fs.DurationVar(&cfg.warmup, "warmup", 500*time.Millisecond, "load before the measured time, not counted")
	fs.DurationVar(&cfg.timeout, "timeout", time.Second, "wait for one reply")
	fs.IntVar(&cfg.cpuPID, "cpu-pid", 0, "process whose CPU time to report (0: none)")
	if err := fs.Parse(args); err != nil {
		return cfg, err
	}
	fail := func(format string, a ...any) (loadConfig, error) {
		err := fmt.Errorf(format, a...)
		fmt.Fprintf(stderr, "dns-load: %v\n", err)
		return cfg, err
	}
	if fs.NArg() > 0 {
		return fail("unexpected arguments %q", fs.Args())
	}
	if _, err := netip.ParseAddrPort(cfg.server); err != nil {
		return fail("-server %q: want IP:port", cfg.server)
	}
	if cfg.clients < 1 || cfg.clients > maxLoadClients {
		return fail("-clients %d: want 1 to %d", cfg.clients, maxLoadClients)
	}
	if cfg.duration <= 0 || cfg.warmup < 0 || cfg.timeout <= 0 {
		return fail("-duration, -warmup and -timeout must be positive")
	}
	b, err := os.ReadFile(namesFile)
	if err != nil {
		return fail("-names: %w", err)
	}
	if cfg.names, err = parseNameList(string(b)); err != nil {
		return fail("-names %s: %w", namesFile, err)
	}
	return cfg, nil
}

// parseNameList reads lines "NAME [IPv4]"; blank lines and lines starting
// with '#' are skipped. Names are made fully qualified.
func parseNameList(s string) ([]queryName, error) {
	var names []queryName
	for i, line := range strings.Split(s, "\n") {
		f := strings.Fields(line)
		if len(f) == 0 || strings.HasPrefix(f[0], "#") {
			continue
		}
		if len(f) > 2 {
			return nil, fmt.Errorf("line %d: %q: want NAME [IPv4]", i+1, line)
		}
		if _, ok := dns.IsDomainName(f[0]); !ok {
			return nil, fmt.Errorf("line %d: %q is not a domain name", i+1, f[0])
		}
		n := queryName{name: dns.Fqdn(f[0])}
		if len(f) == 2 {
			ip, err := netip.ParseAddr(f[1])
			if err != nil || !ip.Is4() {
				return nil, fmt.Errorf("line %d: %q is not an IPv4 address", i+1, f[1])
			}
			n.want = ip
		}
		names = append(names, n)
	}
	if len(names) == 0 {
		return nil, errors.New("no names")
	}
	return names, nil
}

// formatNameList is the inverse of parseNameList.
func formatNameList(names []queryName) string {
	var b strings.Builder
	for _, n := range names {
		b.WriteString(n.name)
		if n.want.IsValid() {
			b.WriteString(" " + n.want.String())
		}
		b.WriteByte('\n')
	}
	return b.String()
}

// checkNames asks server for every name once, in turn, and fails at the
// first wrong answer. Exchanges that get no reply are retried until
// timeout has passed since the start (the server may still be starting).
func checkNames(server string, names []queryName, timeout time.Duration) error {
	c := &dns.Client{Net: "udp", Timeout: 500 * time.Millisecond}
	deadline := time.Now().Add(timeout)
	for _, n := range names {
		for {
			q := new(dns.Msg)
			q.SetQuestion(n.name, dns.TypeA)
			r, _, err := c.Exchange(q, server)
			if err == nil {
				if err := checkAnswer(r, n); err != nil {
					return err
				}
				break
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("%s: no answer after %v: %w", n.name, timeout, err)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	return nil
}

// checkAnswer fails unless r is NOERROR with an A record (n.want when
// that is set).
func checkAnswer(r *dns.Msg, n queryName) error {
	if r.Rcode != dns.RcodeSuccess {
		return fmt.Errorf("%s: %s", n.name, dns.RcodeToString[r.Rcode])
	}
	var got []string
	for _, rr := range r.Answer {
		if a, ok := rr.(*dns.A); ok {
			ip, _ := netip.AddrFromSlice(a.A.To4())
			if !n.want.IsValid() || ip == n.want {
				return nil
			}
			got = append(got, ip.String())
		}
	}
	if len(got) == 0 {
		return fmt.Errorf("%s: no A record in the answer", n.name)
	}
	return fmt.Errorf("%s: answer %v, want %s", n.name, got, n.want)
}

// replyKind classifies a datagram received in reply to a query.
type replyKind int

const (
	replyAnswer    replyKind = iota // NOERROR with at least one answer record
	replyStale                      // another ID: the late reply to an earlier query
	replyEmpty                      // NOERROR without an answer
	replyRcode                      // another rcode
	replyMalformed                  // too short, or not a response
)

// classifyReply looks at the header of b, a reply to the query with ID
// id, and returns its kind and rcode. It does not parse the rest: the
// check before the load has looked at whole answers.
func classifyReply(b []byte, id uint16) (replyKind, int) {
	if len(b) < 12 {
		return replyMalformed, 0
	}
	if binary.BigEndian.Uint16(b[0:2]) != id {
		return replyStale, 0
	}
	if b[2]&0x80 == 0 { // QR
		return replyMalformed, 0
	}
	rcode := int(b[3] & 0x0f)
	switch {
	case rcode != dns.RcodeSuccess:
		return replyRcode, rcode
	case binary.BigEndian.Uint16(b[6:8]) == 0: // ANCOUNT
		return replyEmpty, rcode
	}
	return replyAnswer, rcode
}

// loadClient is one client of the load: a connected UDP socket and what
// it measured. Only its own goroutine touches it until generateLoad has
// waited for that goroutine.
type loadClient struct {
	conn     *net.UDPConn
	samples  []time.Duration
	answered int
	failed   int
	lost     int
	firstErr string
}

// generateLoad runs cfg.clients clients for cfg.warmup and then
// cfg.duration, and summarizes the queries sent after the warm-up.
func generateLoad(cfg loadConfig) (loadSummary, error) {
	server := net.UDPAddrFromAddrPort(netip.MustParseAddrPort(cfg.server))
	queries := make([][]byte, len(cfg.names))
	for i, n := range cfg.names {
		q := new(dns.Msg)
		q.SetQuestion(n.name, dns.TypeA)
		b, err := q.Pack()
		if err != nil {
			return loadSummary{}, fmt.Errorf("pack query for %s: %w", n.name, err)
		}
		queries[i] = b
	}
	clients := make([]*loadClient, cfg.clients)
	for i := range clients {
		conn, err := net.DialUDP("udp", nil, server)
		if err != nil {
			for _, c := range clients[:i] {
				c.conn.Close()
			}
			return loadSummary{}, fmt.Errorf("client socket: %w", err)
		}
		clients[i] = &loadClient{conn: conn}
	}
	// The clients take names in turn from one counter, so that queries in
	// flight at the same moment are for different names: neither server
	// can then share one upstream exchange among them.
	var next atomic.Uint64
	from := time.Now().Add(cfg.warmup)
	end := from.Add(cfg.duration)
	var wg sync.WaitGroup
	for _, c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer c.conn.Close()
			c.run(queries, &next, from, end, cfg.timeout)
		}()
	}
	var cpu0, cpu1 uint64
	var cpuErr error
	if cfg.cpuPID > 0 {
		time.Sleep(time.Until(from))
		cpu0, cpuErr = procCPUTicks(cfg.cpuPID)
		time.Sleep(time.Until(end))
		if cpuErr == nil {
			cpu1, cpuErr = procCPUTicks(cfg.cpuPID)
		}
	}
	wg.Wait()
	sum := summarizeLoad(clients, cfg.duration)
	if cfg.cpuPID > 0 && cpuErr == nil && cpu1 >= cpu0 {
		sum.CPUTicks = cpu1 - cpu0
	}
	return sum, nil
}

// run sends queries until end, one at a time, recording those sent from
// from on.
func (c *loadClient) run(queries [][]byte, next *atomic.Uint64, from, end time.Time, timeout time.Duration) {
	sbuf := make([]byte, 512)
	rbuf := make([]byte, 65535)
	id := uint16(rand.N(1 << 16))
	for {
		sent := time.Now()
		if !sent.Before(end) {
			return
		}
		k := next.Add(1) - 1
		n := copy(sbuf, queries[k%uint64(len(queries))])
		id++
		binary.BigEndian.PutUint16(sbuf, id)
		kind, rcode, err := c.exchange(sbuf[:n], rbuf, id, sent.Add(timeout))
		d := time.Since(sent)
		if sent.Before(from) {
			continue
		}
		var name string
		if c.firstErr == "" && kind != replyAnswer {
			var q dns.Msg
			if q.Unpack(sbuf[:n]) == nil && len(q.Question) == 1 {
				name = q.Question[0].Name
			}
		}
		switch {
		case err != nil && errors.Is(err, os.ErrDeadlineExceeded):
			c.lost++
			c.noteErr(fmt.Sprintf("%s: no reply within %v", name, timeout))
		case err != nil:
			c.failed++
			c.noteErr(fmt.Sprintf("%s: %v", name, err))
		case kind == replyAnswer:
			c.answered++
			c.samples = append(c.samples, d)
		case kind == replyRcode:
			c.failed++
			c.noteErr(fmt.Sprintf("%s: %s", name, dns.RcodeToString[rcode]))
		case kind == replyEmpty:
			c.failed++
			c.noteErr(fmt.Sprintf("%s: NOERROR without an answer", name))
		default:
			c.failed++
			c.noteErr(fmt.Sprintf("%s: malformed reply", name))
		}
	}
}

// exchange sends query (whose ID is id) and waits until deadline for its
// reply, skipping late replies to earlier queries.
func (c *loadClient) exchange(query, rbuf []byte, id uint16, deadline time.Time) (replyKind, int, error) {
	if _, err := c.conn.Write(query); err != nil {
		return replyMalformed, 0, fmt.Errorf("send: %w", err)
	}
	if err := c.conn.SetReadDeadline(deadline); err != nil {
		return replyMalformed, 0, err
	}
	for {
		n, err := c.conn.Read(rbuf)
		if err != nil {
			return replyMalformed, 0, err
		}
		if kind, rcode := classifyReply(rbuf[:n], id); kind != replyStale {
			return kind, rcode, nil
		}
	}
}

func (c *loadClient) noteErr(s string) {
	if c.firstErr == "" {
		c.firstErr = s
	}
}

// summarizeLoad merges what the clients measured over a window of the
// given length.
func summarizeLoad(clients []*loadClient, window time.Duration) loadSummary {
	sum := loadSummary{Clients: len(clients), Seconds: window.Seconds()}
	var all []time.Duration
	for _, c := range clients {
		sum.Answered += c.answered
		sum.Failed += c.failed
		sum.Lost += c.lost
		all = append(all, c.samples...)
		if sum.FirstError == "" {
			sum.FirstError = c.firstErr
		}
	}
	if sum.Seconds > 0 {
		sum.QPS = float64(sum.Answered) / sum.Seconds
	}
	if len(all) > 0 {
		slices.Sort(all)
		sum.P50Ms = ms(percentile(all, 0.5))
		sum.P99Ms = ms(percentile(all, 0.99))
		sum.MaxMs = ms(all[len(all)-1])
	}
	return sum
}

// parseLoadSummary reads the load helper's output: one JSON object, on
// the last non-empty line.
func parseLoadSummary(out string) (loadSummary, error) {
	var sum loadSummary
	line := lastLines(out, 1)
	if line == "" {
		return sum, errors.New("dns-load printed nothing")
	}
	if err := json.Unmarshal([]byte(line), &sum); err != nil {
		return sum, fmt.Errorf("dns-load output %q: %w", line, err)
	}
	if sum.Clients < 1 || sum.Seconds <= 0 {
		return sum, fmt.Errorf("dns-load output %q: no clients or no window", line)
	}
	return sum, nil
}

// procCPUTicks is the CPU time (user+system, clock ticks) of process pid.
func procCPUTicks(pid int) (uint64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, fmt.Errorf("cpu time of %d: %w", pid, err)
	}
	return parseProcStatCPU(string(b))
}
