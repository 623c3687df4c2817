package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"
)

// The ipam scenario's own LAN: three hosts on a bridge, apart from the
// data-path lab (which is a point-to-point pair).
const (
	ipamLANSubnet = "192.168.78" // host i has ipamLANSubnet.i/24
	ipamHosts     = 3
	ipamBridge    = "br0"
)

// allocRange is weave's default --ipalloc-range, which the scenario uses;
// static addresses are taken from 10.2.0.0/16, outside it, so that their
// attaches do not involve the allocator at all.
var allocRange = netip.MustParsePrefix("10.32.0.0/12")

func staticAddr(i int) string { return fmt.Sprintf("10.2.%d.%d/16", i/250, i%250+1) }

// ipamLab is the scenario's hosts: namespaces on a bridge in a LAN
// namespace, all named wb<pid>-i*.
type ipamLab struct {
	base  *lab // for addNetns, the temporary directory and the logger
	hosts []*host
}

// runIPAM measures `weave attach` latency: cfg.attaches static-address and
// cfg.attaches allocated attaches in turn (alternating) on one router, then
// cfg.attaches allocated attaches started at once over three routers that
// have not seeded their ring yet. Each measurement has routers and state
// of its own. It fills res.Attach with what it measured.
func runIPAM(ctx context.Context, cfg config, log *slog.Logger, tmp, bin string, res *result) error {
	undo := newCleanups(log)
	defer undo.run()
	il, err := newIPAMLab(ctx, log, tmp, undo)
	if err != nil {
		return fmt.Errorf("ipam lab: %w", err)
	}
	a := &attachResult{Attaches: cfg.attaches}
	res.Attach = a
	if err := il.measureOneHost(ctx, cfg.attaches, bin, a); err != nil {
		return fmt.Errorf("one host: %w", err)
	}
	a.setRatios()
	log.Info("ipam: one host measured", "static_median_ms", a.Static.MedianMs, "ipam_median_ms", a.IPAM.MedianMs)
	if err := il.measureThreeHosts(ctx, cfg.attaches, bin, a); err != nil {
		return fmt.Errorf("three hosts: %w", err)
	}
	log.Info("ipam: three hosts measured", "median_ms", a.Concurrent.MedianMs, "all_done_ms", a.Concurrent.MaxMs)
	return nil
}

// newIPAMLab makes the LAN namespace with its bridge and the host
// namespaces with a veth to it.
func newIPAMLab(ctx context.Context, log *slog.Logger, tmp string, undo *cleanups) (*ipamLab, error) {
	il := &ipamLab{base: &lab{prefix: fmt.Sprintf("wb%d-i", os.Getpid()), tmp: tmp, log: log}}
	lan, err := il.base.addNetns(ctx, "lan", undo)
	if err != nil {
		return nil, err
	}
	for _, args := range [][]string{
		{"ip", "link", "add", ipamBridge, "type", "bridge"},
		{"ip", "link", "set", ipamBridge, "up"},
	} {
		if err := lan.must(ctx, args...); err != nil {
			return nil, err
		}
	}
	for i := range ipamHosts {
		short := fmt.Sprintf("h%d", i+1)
		h := &host{short: short, ip: fmt.Sprintf("%s.%d", ipamLANSubnet, i+1)}
		if h.netns, err = il.base.addNetns(ctx, short, undo); err != nil {
			return nil, err
		}
		port := "v-" + short
		for _, step := range []struct {
			ns   netns
			args []string
		}{
			{lan, []string{"ip", "link", "add", port, "mtu", fmt.Sprint(lanMTU), "type", "veth", "peer", "name", lanIf, "mtu", fmt.Sprint(lanMTU), "netns", h.name}},
			{lan, []string{"ip", "link", "set", port, "master", ipamBridge, "up"}},
			{h.netns, []string{"ip", "addr", "add", h.ip + "/24", "dev", lanIf}},
			{h.netns, []string{"ip", "link", "set", lanIf, "up"}},
		} {
			if err := step.ns.must(ctx, step.args...); err != nil {
				return nil, err
			}
		}
		il.hosts = append(il.hosts, h)
	}
	return il, nil
}

// containers makes one namespace per name (a single `ip -batch`, which
// is much faster than one ip per namespace) and pushes their removal.
func (il *ipamLab) containers(ctx context.Context, kind string, n int, undo *cleanups) ([]string, error) {
	names := make([]string, n)
	var add, del strings.Builder
	for i := range names {
		names[i] = fmt.Sprintf("%sc%s%d", il.base.prefix, kind, i)
		fmt.Fprintf(&add, "netns add %s\n", names[i])
		fmt.Fprintf(&del, "netns del %s\n", names[i])
	}
	undo.push(fmt.Sprintf("delete %d container namespaces", n), func() error {
		cmd := exec.Command("ip", "-force", "-batch", "-")
		cmd.Stdin = strings.NewReader(del.String())
		out, err := cmd.CombinedOutput()
		for _, name := range names { // resolv.conf dirs weave attach made
			os.RemoveAll(filepath.Join("/etc/netns", name))
		}
		if err != nil {
			return fmt.Errorf("ip -batch netns del: %w: %s", err, lastLines(string(out), 3))
		}
		return nil
	})
	cmd := exec.CommandContext(ctx, "ip", "-batch", "-")
	cmd.Stdin = strings.NewReader(add.String())
	if out, err := cmd.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("ip -batch netns add: %w: %s", err, lastLines(string(out), 3))
	}
	return names, nil
}

// routers makes a weaveHost with fresh run and state directories on each
// of the first n hosts and pushes their teardown. Call it before making
// containers: the teardown then runs after their namespaces are gone,
// whose veths the kernel removes faster than reset does one by one.
func (il *ipamLab) routers(n int, bin, phase string, undo *cleanups) ([]*weaveHost, error) {
	var ws []*weaveHost
	for _, h := range il.hosts[:n] {
		w := &weaveHost{host: h, bin: bin}
		for _, d := range []*string{&w.runDir, &w.stateDir} {
			dir, err := os.MkdirTemp(il.base.tmp, fmt.Sprintf("ipam-%s-%s-", phase, h.short))
			if err != nil {
				return nil, err
			}
			*d = dir
		}
		undo.push("weave reset on "+h.short, w.teardown)
		ws = append(ws, w)
	}
	return ws, nil
}

// timedAttach runs `weave attach ARGS...` against w's router and returns
// its wall time and the addresses it printed. The CLI runs in our own
// namespace: it only talks to the router's Unix socket (a path in the
// run dir), and `ip netns exec` would add its own setup (a mount
// namespace, a remount of /sys) to every figure.
func (w *weaveHost) timedAttach(ctx context.Context, args ...string) (time.Duration, []string, error) {
	cmd := exec.CommandContext(ctx, w.bin, append([]string{"attach"}, args...)...)
	cmd.Env = append(os.Environ(), w.env()...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	start := time.Now()
	err := cmd.Run()
	d := time.Since(start)
	if err != nil {
		return d, nil, fmt.Errorf("%s: weave attach %s: %w: %s", w.short, strings.Join(args, " "), err, strings.TrimSpace(errb.String()))
	}
	return d, strings.Fields(out.String()), nil
}

// allocated checks that an attach without ADDR printed one address of the
// allocation range that no other container got.
func allocated(got []string, seen map[netip.Addr]bool) error {
	if len(got) != 1 {
		return fmt.Errorf("attach printed %q, want one address", got)
	}
	ip, err := netip.ParseAddr(got[0])
	if err != nil || !allocRange.Contains(ip) {
		return fmt.Errorf("attach printed %q, want an address in %s", got[0], allocRange)
	}
	if seen[ip] {
		return fmt.Errorf("%s handed out twice", ip)
	}
	seen[ip] = true
	return nil
}

// measureOneHost: one router launched alone; n static and n allocated
// attaches alternate (which goes first alternates too), so that both see
// the same growing number of attached containers and the same noise.
func (il *ipamLab) measureOneHost(ctx context.Context, n int, bin string, a *attachResult) error {
	undo := newCleanups(il.base.log)
	defer undo.run()
	ws, err := il.routers(1, bin, "1", undo)
	if err != nil {
		return err
	}
	w := ws[0]
	if _, err := w.weave(ctx, "launch", "--nickname", w.short); err != nil {
		return fmt.Errorf("%w\nweave.log: %s", err, w.logTail(5))
	}
	static, err := il.containers(ctx, "s", n, undo)
	if err != nil {
		return err
	}
	alloc, err := il.containers(ctx, "a", n, undo)
	if err != nil {
		return err
	}
	seen := map[netip.Addr]bool{}
	var st, al []time.Duration
	attachStatic := func(i int) error {
		d, got, err := w.timedAttach(ctx, staticAddr(i), "netns:"+static[i])
		if err != nil {
			return err
		}
		if want, _, _ := strings.Cut(staticAddr(i), "/"); len(got) != 1 || got[0] != want {
			return fmt.Errorf("attach %s printed %q", staticAddr(i), got)
		}
		st = append(st, d)
		return nil
	}
	attachAlloc := func(i int) error {
		d, got, err := w.timedAttach(ctx, "netns:"+alloc[i])
		if err != nil {
			return err
		}
		if err := allocated(got, seen); err != nil {
			return err
		}
		al = append(al, d)
		return nil
	}
	for i := range n {
		first, second := attachStatic, attachAlloc
		if i%2 == 1 {
			first, second = attachAlloc, attachStatic
		}
		err := first(i)
		if err == nil {
			err = second(i)
		}
		if err != nil {
			return fmt.Errorf("%w\nweave.log: %s", err, w.logTail(5))
		}
	}
	a.Static, a.IPAM = summarize(st), summarize(al)
	return nil
}

// measureThreeHosts: three routers (h2 and h3 given h1 at launch, as
// usual), fully connected, no address allocated yet; n attaches without
// ADDR start at once, spread over the three. Each one's latency runs from
// the common start until its CLI exited: with n processes contending for
// the CPUs, the time a CLI waits to be started at all is part of what
// "n at once" costs (measured from its own fork instead, it would be left
// out).
func (il *ipamLab) measureThreeHosts(ctx context.Context, n int, bin string, a *attachResult) error {
	undo := newCleanups(il.base.log)
	defer undo.run()
	ws, err := il.routers(ipamHosts, bin, "3", undo)
	if err != nil {
		return err
	}
	for i, w := range ws {
		args := []string{"launch", "--nickname", w.short}
		if i > 0 {
			args = append(args, ws[0].ip)
		}
		if _, err := w.weave(ctx, args...); err != nil {
			return fmt.Errorf("%w\nweave.log: %s", err, w.logTail(5))
		}
	}
	for _, w := range ws {
		if err := waitEstablishedN(ctx, w, len(ws)-1); err != nil {
			return err
		}
	}
	names, err := il.containers(ctx, "x", n, undo)
	if err != nil {
		return err
	}
	done := make([]time.Duration, n)
	outs := make([][]string, n)
	errs := make([]error, n)
	start := make(chan struct{})
	var t0 time.Time
	var wg sync.WaitGroup
	for i, name := range names {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			_, outs[i], errs[i] = ws[i%len(ws)].timedAttach(ctx, "netns:"+name)
			done[i] = time.Since(t0)
		}()
	}
	t0 = time.Now()
	close(start)
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		var tails []string
		for _, w := range ws {
			tails = append(tails, w.short+" weave.log: "+w.logTail(5))
		}
		return fmt.Errorf("%w\n%s", err, strings.Join(tails, "\n"))
	}
	seen := map[netip.Addr]bool{}
	for i := range outs {
		if err := allocated(outs[i], seen); err != nil {
			return fmt.Errorf("%s: %w", names[i], err)
		}
	}
	a.Concurrent = summarize(done)
	a.Concurrent.FirstMs = 0 // they all started together: none is first
	return nil
}
