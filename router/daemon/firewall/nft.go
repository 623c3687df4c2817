package firewall

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// nft keeps our rules in every base chain on the forward hook (families
// ip, ip6 and inet), when iptables is not installed: right below a rule
// that jumps to a chain DOCKER-USER, else at the top. With no such chain
// nothing filters forwarded traffic and there is nothing to do.
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
			Expr    []struct {
				Jump *struct {
					Target string `json:"target"`
				} `json:"jump"`
				Goto *struct {
					Target string `json:"target"`
				} `json:"goto"`
			} `json:"expr"`
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

// nftRules is what Ensure and Remove need to know of a chain's rules.
type nftRules struct {
	// ours are our rules' comments and handles, in chain order.
	ours []nftRule
	// dockerUser is the handle of the first rule that jumps to (or goes
	// to) DOCKER-USER, 0 when none does; dockerUserAt is its index among
	// all rules.
	dockerUser   int64
	dockerUserAt int
	// oursAt are the indexes of our rules among all rules.
	oursAt []int
}

type nftRule struct {
	comment string
	handle  int64
}

// ourRules reads c's rules: ours (by comment) and Docker's jump.
func (f *nft) ourRules(ctx context.Context, c nftChain) (nftRules, error) {
	var rs nftRules
	l, err := f.list(ctx, "chain", c.Family, c.Table, c.Name)
	if err != nil {
		return rs, err
	}
	n := 0
	for _, e := range l.Nftables {
		r := e.Rule
		if r == nil {
			continue
		}
		if strings.HasPrefix(r.Comment, commentPrefix(f.bridge)) {
			rs.ours = append(rs.ours, nftRule{comment: r.Comment, handle: r.Handle})
			rs.oursAt = append(rs.oursAt, n)
		}
		for _, x := range r.Expr {
			if rs.dockerUser == 0 && ((x.Jump != nil && x.Jump.Target == dockerUserChain) || (x.Goto != nil && x.Goto.Target == dockerUserChain)) {
				rs.dockerUser, rs.dockerUserAt = r.Handle, n
			}
		}
		n++
	}
	return rs, nil
}

// inPlace reports whether our rules are exactly want, in order, each
// below Docker's jump.
func (rs nftRules) inPlace(f *nft, want []rule) bool {
	if len(rs.ours) != len(want) {
		return false
	}
	for i, r := range rs.ours {
		if r.comment != Comment(f.bridge, want[i].purpose) || (rs.dockerUser != 0 && rs.oursAt[i] < rs.dockerUserAt) {
			return false
		}
	}
	return true
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
// its rules, joining the errors.
func (f *nft) eachForwardChain(ctx context.Context, fn func(c nftChain, have nftRules) []error) error {
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

// Ensure, in each forward chain where our rules are not in place, deletes
// them and adds them again right below Docker's jump (at the top when
// there is none).
func (f *nft) Ensure(ctx context.Context) error {
	return f.eachForwardChain(ctx, func(c nftChain, have nftRules) (errs []error) {
		rs := rules(f.bridge)
		if have.inPlace(f, rs) {
			return nil
		}
		if errs = f.delete(ctx, c, have.ours); len(errs) > 0 {
			return errs
		}
		// Each goes right after the jump (or first), so add them last
		// to first.
		for i := len(rs) - 1; i >= 0; i-- {
			args := []string{"insert", "rule", c.Family, c.Table, c.Name}
			if have.dockerUser != 0 {
				args = []string{"add", "rule", c.Family, c.Table, c.Name, "position", strconv.FormatInt(have.dockerUser, 10)}
			}
			if _, err := f.r.Run(ctx, "nft", append(args, f.expr(rs[i])...)...); err != nil {
				return append(errs, fmt.Errorf("nft add to %s: %w", c, err))
			}
		}
		return nil
	})
}

// Remove deletes our rules, by handle, from every forward chain.
func (f *nft) Remove(ctx context.Context) error {
	return f.eachForwardChain(ctx, func(c nftChain, have nftRules) []error {
		return f.delete(ctx, c, have.ours)
	})
}

func (f *nft) delete(ctx context.Context, c nftChain, rs []nftRule) (errs []error) {
	for _, r := range rs {
		if _, err := f.r.Run(ctx, "nft", "delete", "rule", c.Family, c.Table, c.Name, "handle", strconv.FormatInt(r.handle, 10)); err != nil {
			errs = append(errs, fmt.Errorf("nft delete %s from %s: %w", r.comment, c, err))
		}
	}
	return errs
}
