package firewall

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// iptables keeps our rules in the filter table's FORWARD chain of each of
// iptables and ip6tables (when installed).
type iptables struct {
	r      Runner
	bridge string
	tools  []string // "iptables", then "ip6tables" if installed
}

func (f *iptables) String() string { return strings.Join(f.tools, "+") }

// spec renders a rule as iptables arguments after the chain name.
func (f *iptables) spec(ru rule) []string {
	var a []string
	if ru.in != "" {
		a = append(a, ifaceArgs("-i", ru.in)...)
	}
	if ru.out != "" {
		a = append(a, ifaceArgs("-o", ru.out)...)
	}
	if ru.related {
		a = append(a, "-m", "conntrack", "--ctstate", "RELATED,ESTABLISHED")
	}
	return append(a, "-m", "comment", "--comment", Comment(f.bridge, ru.purpose), "-j", "ACCEPT")
}

func ifaceArgs(flag, name string) []string {
	if n, ok := strings.CutPrefix(name, "!"); ok {
		return []string{"!", flag, n}
	}
	return []string{flag, name}
}

// Ensure lists FORWARD and, unless our rules are there already, exactly
// once each, in order and below Docker's jump to DOCKER-USER, deletes every
// rule of ours and inserts them again right below that jump (at the top
// when there is none; Docker, when it starts later, puts its jump above
// them).
func (f *iptables) Ensure(ctx context.Context) error {
	var errs []error
	for _, tool := range f.tools {
		if err := f.ensure(ctx, tool); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func (f *iptables) ensure(ctx context.Context, tool string) error {
	fw, err := f.list(ctx, tool)
	if err != nil {
		return err
	}
	want := rules(f.bridge)
	if fw.inPlace(f, want) {
		return nil
	}
	var errs []error
	for _, r := range fw.rules {
		if r.ours {
			if _, err := f.r.Run(ctx, tool, append([]string{"-w", "-D", "FORWARD"}, r.args...)...); err != nil {
				errs = append(errs, fmt.Errorf("%s: delete %q: %w", tool, strings.Join(r.args, " "), err))
			}
		}
	}
	if len(errs) > 0 {
		return errors.Join(errs...)
	}
	if fw, err = f.list(ctx, tool); err != nil {
		return err
	}
	pos := fw.dockerUser + 1 // rule numbers count from 1; 0 when there is no jump
	for i, ru := range want {
		args := append([]string{"-w", "-I", "FORWARD", strconv.Itoa(pos + i)}, f.spec(ru)...)
		if _, err := f.r.Run(ctx, tool, args...); err != nil {
			return fmt.Errorf("%s: insert rule %s: %w", tool, Comment(f.bridge, ru.purpose), err)
		}
	}
	return nil
}

// forwardChain is FORWARD as `iptables -S FORWARD` shows it.
type forwardChain struct {
	rules []iptRule
	// dockerUser is the number (from 1) of the rule that jumps to
	// DOCKER-USER, 0 when there is none.
	dockerUser int
}

// iptRule is one rule: its arguments after "-A FORWARD", unquoted, and
// whether its comment is ours.
type iptRule struct {
	args []string
	ours bool
}

func (f *iptables) list(ctx context.Context, tool string) (forwardChain, error) {
	var fc forwardChain
	out, err := f.r.Run(ctx, tool, "-w", "-S", "FORWARD")
	if err != nil {
		return fc, fmt.Errorf("%s: list FORWARD: %w", tool, err)
	}
	for _, line := range strings.Split(string(out), "\n") {
		args, ours, ok := f.parse(line)
		if !ok {
			continue
		}
		fc.rules = append(fc.rules, iptRule{args: args[1:], ours: ours})
		if fc.dockerUser == 0 && strings.Join(args[1:], " ") == "-j "+dockerUserChain {
			fc.dockerUser = len(fc.rules)
		}
	}
	return fc, nil
}

// inPlace reports whether our rules in fc are exactly want, in order,
// each below the jump to DOCKER-USER.
func (fc forwardChain) inPlace(f *iptables, want []rule) bool {
	k := 0
	for i, r := range fc.rules {
		if !r.ours {
			continue
		}
		if k == len(want) || i+1 < fc.dockerUser || strings.Join(r.args, " ") != strings.Join(f.spec(want[k]), " ") {
			return false
		}
		k++
	}
	return k == len(want)
}

// Remove lists FORWARD and deletes every rule whose comment is ours.
func (f *iptables) Remove(ctx context.Context) error {
	var errs []error
	for _, tool := range f.tools {
		out, err := f.r.Run(ctx, tool, "-w", "-S", "FORWARD")
		var ee *ExitError
		if errors.As(err, &ee) && ee.Code == 3 {
			// No filter table (e.g. IPv6 filtering not in the kernel): no
			// rule of ours can be there.
			continue
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: list FORWARD: %w", tool, err))
			continue
		}
		for _, line := range strings.Split(string(out), "\n") {
			args, ours, ok := f.parse(line)
			if !ok || !ours {
				continue
			}
			if _, err := f.r.Run(ctx, tool, append([]string{"-w", "-D"}, args...)...); err != nil {
				errs = append(errs, fmt.Errorf("%s: delete %q: %w", tool, line, err))
			}
		}
	}
	return errors.Join(errs...)
}

// parse parses one line of `iptables -S FORWARD`: a rule ("-A ...") comes
// back as -D arguments (chain first), with quotes removed, and whether its
// comment starts with our prefix.
func (f *iptables) parse(line string) (args []string, ours, ok bool) {
	fields := strings.Fields(line)
	if len(fields) < 2 || fields[0] != "-A" {
		return nil, false, false
	}
	args = make([]string, 0, len(fields)-1)
	for i, fl := range fields[1:] {
		fl = strings.Trim(fl, `"`)
		if i > 0 && fields[i] == "--comment" && strings.HasPrefix(fl, commentPrefix(f.bridge)) {
			ours = true
		}
		args = append(args, fl)
	}
	return args, ours, true
}
