// Package plugintest fakes the router's parts that the Docker plugin
// server uses: an allocator over one range (IPAM), a table of veth pairs
// (Links) and the Engine's record of its networks (Engine), all in memory
// and safe for concurrent use.
package plugintest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"sync"

	"github.com/weavelab/weave/router/plugin"
)

var (
	_ plugin.IPAM   = (*IPAM)(nil)
	_ plugin.Links  = (*Links)(nil)
	_ plugin.Engine = (*Engine)(nil)
)

// IPAM allocates the lowest free host address of a subnet of Range; like
// the real one, an id holds at most one address per subnet.
type IPAM struct {
	Range         netip.Prefix
	DefaultSubnet netip.Prefix // zero: Range

	mu    sync.Mutex
	owner map[netip.Addr]string
}

// NewIPAM returns an IPAM over rng.
func NewIPAM(rng netip.Prefix) *IPAM {
	return &IPAM{Range: rng, owner: map[netip.Addr]string{}}
}

func (f *IPAM) CheckSubnet(p netip.Prefix) (netip.Prefix, error) {
	if !p.IsValid() {
		if f.DefaultSubnet.IsValid() {
			return f.DefaultSubnet, nil
		}
		return f.Range, nil
	}
	p = p.Masked()
	if p.Bits() < f.Range.Bits() || !f.Range.Contains(p.Addr()) {
		return netip.Prefix{}, fmt.Errorf("subnet %s is not inside the range %s", p, f.Range)
	}
	return p, nil
}

func (f *IPAM) Allocate(ctx context.Context, id string, subnet netip.Prefix) (netip.Prefix, error) {
	sub, err := f.CheckSubnet(subnet)
	if err != nil {
		return netip.Prefix{}, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	for a, o := range f.owner {
		if o == id && sub.Contains(a) {
			return netip.PrefixFrom(a, sub.Bits()), nil
		}
	}
	for a := sub.Addr().Next(); sub.Contains(a.Next()); a = a.Next() {
		if _, used := f.owner[a]; !used {
			f.owner[a] = id
			return netip.PrefixFrom(a, sub.Bits()), nil
		}
	}
	return netip.Prefix{}, fmt.Errorf("subnet %s is full", sub)
}

func (f *IPAM) Claim(ctx context.Context, id string, p netip.Prefix) error {
	if !f.Range.Contains(p.Addr()) {
		return fmt.Errorf("%s is outside the range %s", p.Addr(), f.Range)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if o, used := f.owner[p.Addr()]; used && o != id {
		return fmt.Errorf("address %s is already owned by %s", p.Addr(), o)
	}
	f.owner[p.Addr()] = id
	return nil
}

func (f *IPAM) Release(id string, ips ...netip.Addr) []netip.Addr {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []netip.Addr
	for _, ip := range ips {
		if f.owner[ip] == id {
			delete(f.owner, ip)
			out = append(out, ip)
		}
	}
	return out
}

func (f *IPAM) Owner(ip netip.Addr) string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.owner[ip]
}

// Allocated returns the allocated addresses, sorted.
func (f *IPAM) Allocated() []netip.Addr {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make([]netip.Addr, 0, len(f.owner))
	for a := range f.owner {
		out = append(out, a)
	}
	slices.SortFunc(out, func(a, b netip.Addr) int { return a.Compare(b) })
	return out
}

// Links is a table of veth pairs by endpoint ID.
type Links struct {
	// Fail, if set, is returned by CreateLink.
	Fail error
	// Deleted, if set, runs at the end of DeleteLink, outside the fake's
	// lock: a test makes the calls there that race with what follows.
	Deleted func(id string)

	mu    sync.Mutex
	links map[string]netip.Prefix
	n     int
}

// NewLinks returns an empty table.
func NewLinks() *Links { return &Links{links: map[string]netip.Prefix{}} }

func (l *Links) CreateLink(id string, addr netip.Prefix, mac net.HardwareAddr) (plugin.Link, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.Fail != nil {
		return plugin.Link{}, l.Fail
	}
	if _, ok := l.links[id]; ok {
		return plugin.Link{}, fmt.Errorf("interface for %s already exists", id)
	}
	l.n++
	if mac == nil {
		mac = net.HardwareAddr{0x02, 0, 0, 0, 0, byte(l.n)}
	}
	l.links[id] = addr
	return plugin.Link{Host: fmt.Sprintf("vwp%d", l.n), Peer: fmt.Sprintf("vwq%d", l.n), MAC: mac}, nil
}

func (l *Links) DeleteLink(id string, addr netip.Prefix) error {
	l.mu.Lock()
	delete(l.links, id)
	hook := l.Deleted
	l.mu.Unlock()
	if hook != nil {
		hook(id)
	}
	return nil
}

// Count returns how many pairs exist.
func (l *Links) Count() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.links)
}

// Has says whether endpoint id has a veth pair.
func (l *Links) Has(id string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	_, ok := l.links[id]
	return ok
}

// ErrUnavailable is what Engine answers while it is made to fail.
var ErrUnavailable = errors.New("cannot connect to the Docker daemon (fake)")

// Engine is the Engine's record of its networks: each network's endpoint
// IDs.
type Engine struct {
	// Answered, if set, runs in NetworkEndpoints after the answer is made
	// and before it is returned, outside the fake's lock: a test makes
	// the plugin calls there that race with the answer.
	Answered func(networkID string)

	mu    sync.Mutex
	nets  map[string][]string
	fails int // NetworkEndpoints calls still to fail
	calls int
}

// NewEngine returns an Engine with no networks.
func NewEngine() *Engine { return &Engine{nets: map[string][]string{}} }

// SetNetwork records network id with endpoints.
func (e *Engine) SetNetwork(id string, endpoints ...string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.nets[id] = slices.Clone(endpoints)
}

// Fail makes the next n calls fail with ErrUnavailable (n < 0: all).
func (e *Engine) Fail(n int) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.fails = n
}

// Calls returns how many NetworkEndpoints calls there were.
func (e *Engine) Calls() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.calls
}

func (e *Engine) NetworkEndpoints(ctx context.Context, networkID string) (map[string]bool, error) {
	e.mu.Lock()
	e.calls++
	var out map[string]bool
	var err error
	eps, ok := e.nets[networkID]
	switch {
	case e.fails != 0:
		e.fails--
		err = fmt.Errorf("inspect network %s: %w", networkID, ErrUnavailable)
	case !ok:
		err = fmt.Errorf("inspect network %s: %w", networkID, plugin.ErrNoNetwork)
	default:
		out = map[string]bool{}
		for _, id := range eps {
			out[id] = true
		}
	}
	hook := e.Answered
	e.mu.Unlock()
	if hook != nil {
		hook(networkID)
	}
	return out, err
}
