package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// The dns scenario's lab: a host namespace h1 with a weave router and a
// client container namespace c1 attached to it, and a namespace "up" for
// the upstream resolver, joined to h1 by a veth LAN of its own. weaveDNS
// and both dnsmasq instances listen on the router's service address on
// h1's bridge (weaveDNS on port 53, dnsmasq on two others), so that the
// client reaches all three over the very same path: its ethwe, the veth,
// the bridge.
const (
	dnsLANSubnet  = "192.168.79" // h1 .1, up .2
	dnsClientAddr = weaveSubnet + ".1/24"
	dnsWarmup     = 500 * time.Millisecond
	dnsmasqPort   = 5353 // --cache-size=0
	dnsmasqPortC  = 5354 // with a cache
)

// dnsLab is the scenario's namespaces, all named wb<pid>-d*.
type dnsLab struct {
	base *lab
	h    *host // weave's host, with the client container
	up   *host // the upstream resolver
}

// dnsServer is one server the load is pointed at.
type dnsServer struct {
	name string         // dnsServerWeave, ...
	addr netip.AddrPort // as the client reaches it
	pid  int            // whose CPU time is measured; 0: none
	proc *proc          // when the bench started it itself, to tell that it died
}

// runDNS measures weaveDNS and dnsmasq serving the same names (see
// dnsResult): for each kind of name and each number of clients, one load
// run against each server in turn. It fills res.DNS.
func runDNS(ctx context.Context, cfg config, log *slog.Logger, tmp, bin string, res *result) error {
	undo := newCleanups(log)
	defer undo.run()
	self, err := selfExecutable()
	if err != nil {
		return err
	}
	d := &dnsResult{
		Names: cfg.dnsNames, Seconds: cfg.duration.Round(time.Second).Seconds(),
		Dnsmasq: dnsmasqVersion(), DnsmasqCacheSize: max(dnsmasqDefaultCache, 2*cfg.dnsNames),
	}
	res.DNS = d
	dl, err := newDNSLab(ctx, log, tmp, undo)
	if err != nil {
		return fmt.Errorf("dns lab: %w", err)
	}
	client := dl.h.container

	upAddr := dl.up.ip + ":53"
	up, err := dl.up.start(self, helperCmd, helperDNSUpstream, "-listen", upAddr)
	if err != nil {
		return err
	}
	undo.push("stop the upstream", func() error { logStopped(log, "upstream", up.stop()); return nil })
	if err := waitListening(ctx, dl.up.netns, up, 53, "upstream"); err != nil {
		return err
	}

	w := &weaveHost{host: dl.h, bin: bin}
	for _, dir := range []*string{&w.runDir, &w.stateDir} {
		if *dir, err = os.MkdirTemp(tmp, "dns-h1-"); err != nil {
			return err
		}
	}
	undo.push("weave reset on "+w.short, w.teardown)
	if _, err := w.weave(ctx, "launch", "--nickname", w.short, "--dns-upstream", upAddr); err != nil {
		return fmt.Errorf("%w\nweave.log: %s", err, w.logTail(5))
	}
	if _, err := w.weave(ctx, "attach", dnsClientAddr, "netns:"+client.name); err != nil {
		return fmt.Errorf("%w\nweave.log: %s", err, w.logTail(5))
	}
	// weave attach points the container's resolver at weaveDNS: that
	// is the address to ask, and dnsmasq's too.
	resolv := filepath.Join("/etc/netns", client.name, "resolv.conf")
	b, err := os.ReadFile(resolv)
	if err != nil {
		return fmt.Errorf("weave attach did not point the container at weaveDNS: %w", err)
	}
	svc, err := parseNameserver(string(b))
	if err != nil {
		return fmt.Errorf("%s: %w", resolv, err)
	}
	routerPID := w.pid()
	if routerPID == 0 {
		return fmt.Errorf("no router PID in %s", w.runDir)
	}

	weaveNames, fwdNames := dnsNames(cfg.dnsNames)
	start := time.Now()
	for _, n := range weaveNames {
		if _, err := w.weave(ctx, "dns-add", n.want.String(), "-h", strings.TrimSuffix(n.name, ".")); err != nil {
			return fmt.Errorf("%w\nweave.log: %s", err, w.logTail(5))
		}
	}
	log.Info("dns: names registered", "names", len(weaveNames), "took", time.Since(start).Round(10*time.Millisecond))
	files := map[string]string{
		"weave.names":     formatNameList(weaveNames),
		"forwarded.names": formatNameList(fwdNames),
		"hosts":           hostsFile(weaveNames),
	}
	for f, content := range files {
		if err := os.WriteFile(filepath.Join(w.runDir, f), []byte(content), 0o644); err != nil {
			return err
		}
	}

	servers := []dnsServer{{name: dnsServerWeave, addr: netip.AddrPortFrom(svc, 53), pid: routerPID}}
	for _, m := range []struct {
		name  string
		port  uint16
		cache int
	}{{dnsServerDnsmasq, dnsmasqPort, 0}, {dnsServerDnsmasqCached, dnsmasqPortC, d.DnsmasqCacheSize}} {
		args := dnsmasqArgs(svc, m.port, filepath.Join(w.runDir, "hosts"), upAddr, m.cache)
		p, err := dl.h.start(args...)
		if err != nil {
			return err
		}
		undo.push("stop "+m.name, func() error { logStopped(log, m.name, p.stop()); return nil })
		if err := waitListening(ctx, dl.h.netns, p, int(m.port), m.name); err != nil {
			return err
		}
		servers = append(servers, dnsServer{name: m.name, addr: netip.AddrPortFrom(svc, m.port), pid: p.cmd.Process.Pid, proc: p})
	}

	var errs []error
	for _, query := range []string{dnsQueryWeave, dnsQueryForwarded} {
		names := filepath.Join(w.runDir, query+".names")
		for _, clients := range cfg.dnsClients {
			for _, s := range servers {
				if s.name == dnsServerDnsmasqCached && query == dnsQueryWeave {
					continue // hosts-file names do not go through the cache
				}
				if ctx.Err() != nil {
					return errors.Join(append(errs, context.Cause(ctx))...)
				}
				row, err := measureDNS(ctx, cfg, client, self, s, query, names, clients)
				if err != nil {
					if s.name == dnsServerWeave {
						err = fmt.Errorf("%w\nweave.log: %s", err, w.logTail(5))
					}
					errs = append(errs, err)
					continue
				}
				log.Info("dns: measured", "row", row.describe())
				d.Rows = append(d.Rows, row)
				if !row.ok() {
					errs = append(errs, fmt.Errorf("%s", row.describe()))
				}
			}
		}
	}
	d.setRatios()
	return errors.Join(errs...)
}

// measureDNS runs the load helper in the client container against s.
func measureDNS(ctx context.Context, cfg config, client netns, self string, s dnsServer, query, names string, clients int) (dnsRow, error) {
	row := dnsRow{Query: query, Server: s.name, loadSummary: loadSummary{Clients: clients}}
	if s.proc != nil {
		select {
		case <-s.proc.done:
			return row, fmt.Errorf("%s exited: %s", s.name, lastLines(s.proc.errb.String(), 5))
		default:
		}
	}
	dur := cfg.duration.Round(time.Second)
	ctx, cancel := context.WithTimeout(ctx, loadReadyTimeout+dnsWarmup+dur+30*time.Second)
	defer cancel()
	out, err := client.run(ctx, nil, self, helperCmd, helperDNSLoad,
		"-server", s.addr.String(), "-names", names, "-clients", strconv.Itoa(clients),
		"-duration", dur.String(), "-warmup", dnsWarmup.String(), "-cpu-pid", strconv.Itoa(s.pid))
	if err != nil {
		return row, fmt.Errorf("%s names, %d clients, %s: %w", query, clients, s.name, err)
	}
	sum, err := parseLoadSummary(out)
	if err != nil {
		return row, fmt.Errorf("%s names, %d clients, %s: %w", query, clients, s.name, err)
	}
	row.loadSummary = sum
	if sum.CPUTicks > 0 {
		row.ServerCPUPct = 100 * float64(sum.CPUTicks) / clockTicks / sum.Seconds
	}
	return row, nil
}

// newDNSLab makes h1 with its container c1, and up, joined by a veth.
func newDNSLab(ctx context.Context, log *slog.Logger, tmp string, undo *cleanups) (*dnsLab, error) {
	dl := &dnsLab{base: &lab{prefix: fmt.Sprintf("wb%d-d", os.Getpid()), tmp: tmp, log: log}}
	dl.h = &host{short: "h1", ip: dnsLANSubnet + ".1"}
	dl.up = &host{short: "up", ip: dnsLANSubnet + ".2"}
	var err error
	if dl.h.netns, err = dl.base.addNetns(ctx, dl.h.short, undo); err != nil {
		return nil, err
	}
	if dl.h.container, err = dl.base.addNetns(ctx, "c1", undo); err != nil {
		return nil, err
	}
	// weave attach writes the container's resolv.conf there; detach
	// removes it, but a run cut short may not get that far.
	etc := filepath.Join("/etc/netns", dl.h.container.name)
	undo.push("remove "+etc, func() error { return os.RemoveAll(etc) })
	if dl.up.netns, err = dl.base.addNetns(ctx, dl.up.short, undo); err != nil {
		return nil, err
	}
	type step struct {
		ns   netns
		args []string
	}
	steps := []step{{dl.h.netns, []string{"ip", "link", "add", lanIf, "mtu", fmt.Sprint(lanMTU), "type", "veth",
		"peer", "name", lanIf, "mtu", fmt.Sprint(lanMTU), "netns", dl.up.name}}}
	for _, h := range []*host{dl.h, dl.up} {
		steps = append(steps,
			step{h.netns, []string{"ip", "addr", "add", h.ip + "/24", "dev", lanIf}},
			step{h.netns, []string{"ip", "link", "set", lanIf, "up"}})
	}
	for _, step := range steps {
		if err := step.ns.must(ctx, step.args...); err != nil {
			return nil, fmt.Errorf("lan: %w", err)
		}
	}
	return dl, nil
}

// dnsNames are the names asked: nK.weave.local (K from 0) with the
// address each is registered with, and nK.ext.test.
func dnsNames(n int) (weave, forwarded []queryName) {
	for i := range n {
		ip, _, _ := strings.Cut(staticAddr(i), "/")
		weave = append(weave, queryName{name: fmt.Sprintf("n%d.weave.local.", i), want: netip.MustParseAddr(ip)})
		forwarded = append(forwarded, queryName{name: fmt.Sprintf("n%d.%s", i, upstreamZone)})
	}
	return weave, forwarded
}

// hostsFile is dnsmasq's --addn-hosts for the weave names.
func hostsFile(names []queryName) string {
	var b strings.Builder
	for _, n := range names {
		fmt.Fprintf(&b, "%s %s\n", n.want, strings.TrimSuffix(n.name, "."))
	}
	return b.String()
}

// dnsmasqArgs runs dnsmasq in the foreground with nothing from the
// machine's configuration: the weave names from hosts, every other name
// forwarded to upstream, names in weave.local never forwarded (NXDOMAIN
// when unknown, as weaveDNS), listening on addr:port only. cacheSize 0
// disables the cache of forwarded answers (hosts-file names are answered
// from the hosts table either way).
func dnsmasqArgs(addr netip.Addr, port uint16, hosts, upstream string, cacheSize int) []string {
	upIP, upPort, _ := strings.Cut(upstream, ":")
	return []string{"dnsmasq", "--no-daemon", "--conf-file=/dev/null", "--pid-file=", "--log-facility=-",
		"--no-resolv", "--no-hosts", "--addn-hosts=" + hosts,
		"--listen-address=" + addr.String(), "--bind-interfaces", "--port=" + strconv.Itoa(int(port)),
		"--local=/weave.local/", "--server=" + upIP + "#" + upPort,
		"--cache-size=" + strconv.Itoa(cacheSize)}
}

// dnsmasqVersion is the version `dnsmasq --version` prints, or "".
func dnsmasqVersion() string {
	out, err := exec.Command("dnsmasq", "--version").Output()
	if err != nil {
		return ""
	}
	return parseDnsmasqVersion(string(out))
}

// waitListening waits until p listens on UDP port in n, failing early if
// it exits.
func waitListening(ctx context.Context, n netns, p *proc, port int, what string) error {
	return poll(ctx, 10*time.Second, 20*time.Millisecond, func() (bool, string) {
		select {
		case <-p.done:
			return false, what + " exited: " + lastLines(p.errb.String(), 5)
		default:
		}
		out, err := n.run(ctx, nil, "ss", "-Hlun", "sport = :"+strconv.Itoa(port))
		return err == nil && strings.TrimSpace(out) != "", what + " not listening yet"
	})
}

// logStopped logs what a stopped helper or server wrote to standard error.
func logStopped(log *slog.Logger, what, stderr string) {
	if s := strings.TrimSpace(stderr); s != "" {
		log.Debug("stopped", "what", what, "stderr", lastLines(s, 10))
	}
}
