// Package firewalltest has a fake firewall.Runner that emulates the parts
// of iptables and nft that package firewall uses, on in-memory rule lists,
// so that its tests check behaviour (rules present once, foreign rules
// untouched) rather than command lines.
package firewalltest

import (
	"context"
	"encoding/json"
	"fmt"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/weavelab/weave/router/daemon/firewall"
)

// Fake is an emulated host firewall. Safe for concurrent use.
type Fake struct {
	mu sync.Mutex
	// Installed tools ("iptables", "ip6tables", "nft").
	installed map[string]bool
	// ipt holds each iptables tool's FORWARD rules as their argument
	// strings (what follows "-A FORWARD " in -S output).
	ipt map[string][]string
	// chains are the nftables chains.
	chains     []*Chain
	nextHandle int64
	// noTable lists iptables tools whose filter table is missing.
	noTable map[string]bool
	// Calls records every command run, one string each.
	Calls []string
}

// Chain is an nftables chain of the fake.
type Chain struct {
	Family, Table, Name, Hook string
	Rules                     []Rule
}

// Rule is an nftables rule of the fake.
type Rule struct {
	Handle  int64
	Text    string // the expression arguments joined by spaces
	Comment string
}

var _ firewall.Runner = (*Fake)(nil)

// New returns a fake with the given tools installed and empty chains.
func New(tools ...string) *Fake {
	f := &Fake{installed: map[string]bool{}, ipt: map[string][]string{}, nextHandle: 1, noTable: map[string]bool{}}
	for _, t := range tools {
		f.installed[t] = true
	}
	return f
}

// AddIPTablesRule appends a rule (arguments after "-A FORWARD") to tool's
// FORWARD chain, as another program would.
func (f *Fake) AddIPTablesRule(tool, spec string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.ipt[tool] = append(f.ipt[tool], spec)
}

// RemoveTable makes tool fail as iptables does (exit 3) when the kernel
// has no filter table for it.
func (f *Fake) RemoveTable(tool string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.noTable[tool] = true
}

// IPTablesRules returns tool's FORWARD rules in order.
func (f *Fake) IPTablesRules(tool string) []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.ipt[tool])
}

// AddChain adds an nftables chain (hook "" for a regular chain).
func (f *Fake) AddChain(family, table, name, hook string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.chains = append(f.chains, &Chain{Family: family, Table: table, Name: name, Hook: hook})
}

// AddNftRule appends a rule with a comment to a chain, as another program
// would.
func (f *Fake) AddNftRule(family, table, name, text, comment string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if c := f.chainLocked(family, table, name); c != nil {
		c.Rules = append(c.Rules, Rule{Handle: f.nextHandle, Text: text, Comment: comment})
		f.nextHandle++
	}
}

// NftRules returns the comments of a chain's rules in order.
func (f *Fake) NftRules(family, table, name string) []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	if c := f.chainLocked(family, table, name); c != nil {
		for _, r := range c.Rules {
			out = append(out, r.Comment)
		}
	}
	return out
}

// chainLocked finds a chain; f.mu must be held.
func (f *Fake) chainLocked(family, table, name string) *Chain {
	for _, c := range f.chains {
		if c.Family == family && c.Table == table && c.Name == name {
			return c
		}
	}
	return nil
}

// LookPath implements firewall.Runner.
func (f *Fake) LookPath(file string) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.installed[file] {
		return "/usr/sbin/" + file, nil
	}
	return "", exec.ErrNotFound
}

// Run implements firewall.Runner.
func (f *Fake) Run(ctx context.Context, name string, args ...string) ([]byte, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.Calls = append(f.Calls, name+" "+strings.Join(args, " "))
	if !f.installed[name] {
		return nil, exec.ErrNotFound
	}
	if name == "nft" {
		return f.nftLocked(args)
	}
	return f.iptablesLocked(name, args)
}

func fail(code int, format string, args ...any) ([]byte, error) {
	msg := fmt.Sprintf(format, args...)
	return []byte(msg), &firewall.ExitError{Code: code, Output: msg}
}

func (f *Fake) iptablesLocked(tool string, args []string) ([]byte, error) {
	if len(args) > 0 && args[0] == "-w" {
		args = args[1:]
	}
	if len(args) < 2 || args[1] != "FORWARD" {
		return fail(2, "fake %s: unsupported %q", tool, args)
	}
	if f.noTable[tool] {
		return fail(3, "%s: table 'filter' does not exist", tool)
	}
	rules := f.ipt[tool]
	switch args[0] {
	case "-S":
		var b strings.Builder
		b.WriteString("-P FORWARD DROP\n")
		for _, r := range rules {
			// Quote comments as iptables does.
			fs := strings.Fields(r)
			for i := 1; i < len(fs); i++ {
				if fs[i-1] == "--comment" {
					fs[i] = strconv.Quote(fs[i])
				}
			}
			fmt.Fprintf(&b, "-A FORWARD %s\n", strings.Join(fs, " "))
		}
		return []byte(b.String()), nil
	case "-C", "-D":
		spec := strings.Join(args[2:], " ")
		i := slices.Index(rules, spec)
		if i < 0 {
			return fail(1, "iptables: Bad rule (does a matching rule exist in that chain?).")
		}
		if args[0] == "-D" {
			f.ipt[tool] = slices.Delete(rules, i, i+1)
		}
		return nil, nil
	case "-I":
		if len(args) < 4 {
			return fail(2, "fake %s: -I needs a position and a rule", tool)
		}
		pos, err := strconv.Atoi(args[2])
		if err != nil || pos < 1 || pos > len(rules)+1 {
			return fail(1, "iptables: Index of insertion too big.")
		}
		f.ipt[tool] = slices.Insert(rules, pos-1, strings.Join(args[3:], " "))
		return nil, nil
	}
	return fail(2, "fake %s: unsupported %q", tool, args)
}

func (f *Fake) nftLocked(args []string) ([]byte, error) {
	switch {
	case len(args) == 3 && args[0] == "-j" && args[1] == "list" && args[2] == "chains":
		var items []any
		for _, c := range f.chains {
			m := map[string]any{"family": c.Family, "table": c.Table, "name": c.Name}
			if c.Hook != "" {
				m["hook"], m["type"], m["policy"] = c.Hook, "filter", "drop"
			}
			items = append(items, map[string]any{"chain": m})
		}
		return json.Marshal(map[string]any{"nftables": items})
	case len(args) == 6 && args[0] == "-j" && args[1] == "list" && args[2] == "chain":
		c := f.chainLocked(args[3], args[4], args[5])
		if c == nil {
			return fail(1, "Error: No such file or directory")
		}
		items := []any{map[string]any{"chain": map[string]any{"family": c.Family, "table": c.Table, "name": c.Name}}}
		for _, r := range c.Rules {
			m := map[string]any{"family": c.Family, "table": c.Table, "chain": c.Name, "handle": r.Handle}
			if r.Comment != "" {
				m["comment"] = r.Comment
			}
			// Only jumps are rendered as expressions, which is all
			// package firewall reads.
			if fs := strings.Fields(r.Text); len(fs) >= 2 && (fs[len(fs)-2] == "jump" || fs[len(fs)-2] == "goto") {
				m["expr"] = []any{map[string]any{fs[len(fs)-2]: map[string]any{"target": fs[len(fs)-1]}}}
			}
			items = append(items, map[string]any{"rule": m})
		}
		return json.Marshal(map[string]any{"nftables": items})
	case len(args) > 4 && (args[0] == "insert" || args[0] == "add") && args[1] == "rule":
		c := f.chainLocked(args[2], args[3], args[4])
		if c == nil {
			return fail(1, "Error: No such file or directory")
		}
		expr := args[5:]
		// insert: at the top; add: at the end; with "position H", right
		// before (insert) or after (add) the rule with handle H.
		at := 0
		if args[0] == "add" {
			at = len(c.Rules)
		}
		if len(expr) >= 2 && expr[0] == "position" {
			h, err := strconv.ParseInt(expr[1], 10, 64)
			i := slices.IndexFunc(c.Rules, func(r Rule) bool { return r.Handle == h })
			if err != nil || i < 0 {
				return fail(1, "Error: Could not process rule: No such file or directory")
			}
			at = i
			if args[0] == "add" {
				at = i + 1
			}
			expr = expr[2:]
		}
		r := Rule{Handle: f.nextHandle, Text: strings.Join(expr, " ")}
		if i := slices.Index(expr, "comment"); i >= 0 && i+1 < len(expr) {
			cm, err := strconv.Unquote(expr[i+1])
			if err != nil {
				return fail(1, "Error: syntax error, comment %s", expr[i+1])
			}
			r.Comment = cm
		}
		f.nextHandle++
		c.Rules = slices.Insert(c.Rules, at, r)
		return nil, nil
	case len(args) == 7 && args[0] == "delete" && args[1] == "rule" && args[5] == "handle":
		c := f.chainLocked(args[2], args[3], args[4])
		h, err := strconv.ParseInt(args[6], 10, 64)
		if c == nil || err != nil {
			return fail(1, "Error: No such file or directory")
		}
		i := slices.IndexFunc(c.Rules, func(r Rule) bool { return r.Handle == h })
		if i < 0 {
			return fail(1, "Error: Could not process rule: No such file or directory")
		}
		c.Rules = slices.Delete(c.Rules, i, i+1)
		return nil, nil
	}
	return fail(1, "fake nft: unsupported %q", args)
}
