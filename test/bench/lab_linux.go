package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// Addresses of the lab. Every namespace is the program's own, so these
// cannot collide with the machine's networks or another run's.
const (
	lanSubnet = "192.168.77" // host i has lanSubnet.i/24 on lanIf
	lanIf     = "eth0"       // each host's port on the LAN
	lanMTU    = 1500
)

// host is one simulated machine: a namespace on the LAN and one container
// namespace that the scenarios join to the other host's container.
type host struct {
	netns
	short     string // h1, h2
	ip        string // address on the LAN
	container netns
}

// lab is two hosts joined by a veth pair (a point-to-point LAN). The
// scenarios add their links inside these namespaces and remove them again.
type lab struct {
	prefix string // of every namespace name: wb<pid>-
	tmp    string // temporary directory for binaries and weave's dirs
	hosts  [2]*host
	log    *slog.Logger
}

// newLab makes the namespaces and the LAN; every step pushes its undo to
// undo, which the caller runs whatever happens.
func newLab(ctx context.Context, log *slog.Logger, undo *cleanups) (*lab, error) {
	l := &lab{prefix: fmt.Sprintf("wb%d-", os.Getpid()), log: log}
	tmp, err := os.MkdirTemp("", l.prefix)
	if err != nil {
		return nil, fmt.Errorf("temporary directory: %w", err)
	}
	l.tmp = tmp
	undo.push("remove "+tmp, func() error { return os.RemoveAll(tmp) })

	for i := range l.hosts {
		short := fmt.Sprintf("h%d", i+1)
		h := &host{short: short, ip: fmt.Sprintf("%s.%d", lanSubnet, i+1)}
		var err error
		if h.netns, err = l.addNetns(ctx, short, undo); err != nil {
			return nil, err
		}
		if h.container, err = l.addNetns(ctx, fmt.Sprintf("c%d", i+1), undo); err != nil {
			return nil, err
		}
		l.hosts[i] = h
	}
	h1, h2 := l.hosts[0], l.hosts[1]
	// Both ends are created from inside h1 (the peer straight into h2):
	// nothing ever appears in the machine's own namespace.
	if err := h1.must(ctx, "ip", "link", "add", lanIf, "mtu", fmt.Sprint(lanMTU), "type", "veth",
		"peer", "name", lanIf, "mtu", fmt.Sprint(lanMTU), "netns", h2.name); err != nil {
		return nil, fmt.Errorf("lan: %w", err)
	}
	for _, h := range l.hosts {
		for _, args := range [][]string{
			{"ip", "addr", "add", h.ip + "/24", "dev", lanIf},
			{"ip", "link", "set", lanIf, "up"},
		} {
			if err := h.must(ctx, args...); err != nil {
				return nil, fmt.Errorf("lan: %w", err)
			}
		}
	}
	return l, nil
}

// addNetns makes namespace prefix+short with lo up.
func (l *lab) addNetns(ctx context.Context, short string, undo *cleanups) (netns, error) {
	n := netns{name: l.prefix + short, log: l.log}
	l.log.Debug("add netns", "netns", n.name)
	if out, err := exec.CommandContext(ctx, "ip", "netns", "add", n.name).CombinedOutput(); err != nil {
		return n, fmt.Errorf("ip netns add %s: %w: %s", n.name, err, strings.TrimSpace(string(out)))
	}
	undo.push("delete netns "+n.name, func() error {
		n.killAll()
		os.RemoveAll(filepath.Join("/etc/netns", n.name)) // resolv.conf weave attach made
		out, err := exec.Command("ip", "netns", "del", n.name).CombinedOutput()
		if err != nil {
			return fmt.Errorf("ip netns del %s: %w: %s", n.name, err, strings.TrimSpace(string(out)))
		}
		return nil
	})
	return n, n.must(ctx, "ip", "link", "set", "lo", "up")
}

// linkMTU returns the MTU of link dev in namespace n.
func linkMTU(ctx context.Context, n netns, dev string) (int, error) {
	out, err := n.run(ctx, nil, "cat", "/sys/class/net/"+dev+"/mtu")
	if err != nil {
		return 0, err
	}
	var mtu int
	if _, err := fmt.Sscan(out, &mtu); err != nil {
		return 0, fmt.Errorf("in %s: mtu of %s: %q: %w", n.name, dev, out, err)
	}
	return mtu, nil
}

// poll calls cond every interval until it returns true, ctx ends or
// timeout passes; then it returns the last reason cond gave.
func poll(parent context.Context, timeout, interval time.Duration, cond func() (bool, string)) error {
	ctx, cancel := context.WithTimeout(parent, timeout)
	defer cancel()
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		ok, why := cond()
		if ok {
			return nil
		}
		select {
		case <-ctx.Done():
			if parent.Err() != nil {
				return fmt.Errorf("%w (while waiting: %s)", context.Cause(parent), why)
			}
			return fmt.Errorf("after %v: %s", timeout, why)
		case <-t.C:
		}
	}
}
