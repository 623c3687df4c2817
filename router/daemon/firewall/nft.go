package firewall

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// nft keeps our rules at the top of every base chain on the forward hook
// (families ip, ip6 and inet), when iptables is not installed. With no such
// chain nothing filters forwarded traffic and there is nothing to do.
type nft struct {
	r      Runner
	bridge string
}

func (f *nft) String() string { return "nftables" }

// nftChain names a chain.
type nftChain struct {
	Family string `json:"family"`
	Table  string `json:"table"`
	Name   string `json:"name"`
	Hook   string `json:"hook"`
}

func (c nftChain) String() string { return c.Family + " " + c.Table + " " + c.Name }

// nftList is the part of `nft -j list ...` output we read.
type nftList struct {
	Nftables []struct {
		Chain *nftChain `json:"chain"`
		Rule  *struct {
			Handle  int64  `json:"handle"`
			Comment string `json:"comment"`
		} `json:"rule"`
	} `json:"nftables"`
}

func (f *nft) list(ctx context.Context, args ...string) (nftList, error) {
	var l nftList
	out, err := f.r.Run(ctx, "nft", append([]string{"-j", "list"}, args...)...)
	if err != nil {
		return l, fmt.Errorf("nft list %s: %w", strings.Join(args, " "), err)
	}
	if err := json.Unmarshal(out, &l); err != nil {
		return l, fmt.Errorf("nft list %s: %w", strings.Join(args, " "), err)
	}
	return l, nil
}

// forwardChains returns the base chains on the forward hook.
func (f *nft) forwardChains(ctx context.Context) ([]nftChain, error) {
	l, err := f.list(ctx, "chains")
	if err != nil {
		return nil, err
	}
	var cs []nftChain
	for _, e := range l.Nftables {
		if c := e.Chain; c != nil && c.Hook == "forward" && (c.Family == "ip" || c.Family == "ip6" || c.Family == "inet") {
			cs = append(cs, *c)
		}
	}
	return cs, nil
}

// ourRules returns the handles of our rules in c, by comment.
func (f *nft) ourRules(ctx context.Context, c nftChain) (map[string]int64, error) {
	l, err := f.list(ctx, "chain", c.Family, c.Table, c.Name)
	if err != nil {
		return nil, err
	}
	ours := map[string]int64{}
	for _, e := range l.Nftables {
		if r := e.Rule; r != nil && strings.HasPrefix(r.Comment, commentPrefix(f.bridge)) {
			ours[r.Comment] = r.Handle
		}
	}
	return ours, nil
}

// expr renders a rule as nft arguments after the chain.
func (f *nft) expr(ru rule) []string {
	var a []string
	if ru.in != "" {
		a = append(a, "iifname")
		a = append(a, nftIface(ru.in)...)
	}
	if ru.out != "" {
		a = append(a, "oifname")
		a = append(a, nftIface(ru.out)...)
	}
	if ru.related {
		a = append(a, "ct", "state", "related,established")
	}
	return append(a, "counter", "accept", "comment", strconv.Quote(Comment(f.bridge, ru.purpose)))
}

func nftIface(name string) []string {
	if n, ok := strings.CutPrefix(name, "!"); ok {
		return []string{"!=", strconv.Quote(n)}
	}
	return []string{strconv.Quote(name)}
}

// eachForwardChain calls fn with every base chain on the forward hook and
// the handles of our rules in it, joining the errors.
func (f *nft) eachForwardChain(ctx context.Context, fn func(c nftChain, have map[string]int64) []error) error {
	chains, err := f.forwardChains(ctx)
	if err != nil {
		return err
	}
	var errs []error
	for _, c := range chains {
		have, err := f.ourRules(ctx, c)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		errs = append(errs, fn(c, have)...)
	}
	return errors.Join(errs...)
}

// Ensure inserts the missing rules at the top of each forward chain.
func (f *nft) Ensure(ctx context.Context) error {
	return f.eachForwardChain(ctx, func(c nftChain, have map[string]int64) (errs []error) {
		rs := rules(f.bridge)
		for i := len(rs) - 1; i >= 0; i-- {
			if _, ok := have[Comment(f.bridge, rs[i].purpose)]; ok {
				continue
			}
			args := append([]string{"insert", "rule", c.Family, c.Table, c.Name}, f.expr(rs[i])...)
			if _, err := f.r.Run(ctx, "nft", args...); err != nil {
				errs = append(errs, fmt.Errorf("nft insert into %s: %w", c, err))
			}
		}
		return errs
	})
}

// Remove deletes our rules, by handle, from every forward chain.
func (f *nft) Remove(ctx context.Context) error {
	return f.eachForwardChain(ctx, func(c nftChain, have map[string]int64) (errs []error) {
		for comment, h := range have {
			if _, err := f.r.Run(ctx, "nft", "delete", "rule", c.Family, c.Table, c.Name, "handle", strconv.FormatInt(h, 10)); err != nil {
				errs = append(errs, fmt.Errorf("nft delete %s from %s: %w", comment, c, err))
			}
		}
		return errs
	})
}
