package firewall

import (
	"context"
	"errors"
	"fmt"
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

// Ensure checks each rule with -C and inserts the missing ones at the top
// of FORWARD, keeping their order.
func (f *iptables) Ensure(ctx context.Context) error {
	var errs []error
	for _, tool := range f.tools {
		rs := rules(f.bridge)
		for i := len(rs) - 1; i >= 0; i-- {
			spec := f.spec(rs[i])
			_, err := f.r.Run(ctx, tool, append([]string{"-w", "-C", "FORWARD"}, spec...)...)
			var ee *ExitError
			if err == nil {
				continue
			}
			if !errors.As(err, &ee) || ee.Code != 1 {
				errs = append(errs, fmt.Errorf("%s: check rule %s: %w", tool, Comment(f.bridge, rs[i].purpose), err))
				continue
			}
			if _, err := f.r.Run(ctx, tool, append([]string{"-w", "-I", "FORWARD", "1"}, spec...)...); err != nil {
				errs = append(errs, fmt.Errorf("%s: insert rule %s: %w", tool, Comment(f.bridge, rs[i].purpose), err))
			}
		}
	}
	return errors.Join(errs...)
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
			args, ok := f.ours(line)
			if !ok {
				continue
			}
			if _, err := f.r.Run(ctx, tool, append([]string{"-w", "-D"}, args...)...); err != nil {
				errs = append(errs, fmt.Errorf("%s: delete %q: %w", tool, line, err))
			}
		}
	}
	return errors.Join(errs...)
}

// ours parses one line of `iptables -S FORWARD` and, when it is a rule
// whose comment starts with our prefix, returns it as -D arguments.
func (f *iptables) ours(line string) ([]string, bool) {
	fields := strings.Fields(line)
	if len(fields) < 2 || fields[0] != "-A" {
		return nil, false
	}
	args := make([]string, 0, len(fields)-1)
	found := false
	for i, fl := range fields[1:] {
		fl = strings.Trim(fl, `"`)
		if i > 0 && fields[i] == "--comment" && strings.HasPrefix(fl, commentPrefix(f.bridge)) {
			found = true
		}
		args = append(args, fl)
	}
	return args, found
}
