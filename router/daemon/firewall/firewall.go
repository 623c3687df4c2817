// Package firewall keeps the host's packet filter from dropping the traffic
// that the weave bridge forwards. On a Docker host the FORWARD policy is
// DROP, and with br_netfilter loaded frames bridged between two ports of the
// `weave` bridge (containers' veths and the router's TAP) pass through that
// chain, so without an accept rule containers on one host could not reach
// each other nor the overlay. The router adds a few narrow accept rules to
// FORWARD when it starts and removes them on `weave reset`.
//
// The rules accept only what the overlay needs: frames bridged between
// two ports of the bridge, and replies of established flows into it.
// Nothing accepts traffic from the bridge to other interfaces (`weave
// expose` puts host addresses on the bridge, which is INPUT and OUTPUT, not
// FORWARD). They sit below Docker's jump to DOCKER-USER when there is one,
// so that what an administrator puts in DOCKER-USER (a DROP, say) is
// decided before our accepts, as Docker documents.
//
// Every rule carries a comment "weave:BRIDGE:PURPOSE", which is how Remove
// finds exactly ours and nothing else. Commands run through a Runner, so
// unit tests use the emulating fake in package firewalltest and the real
// kernel tests run the tools inside a network namespace of their own.
package firewall

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"strings"
)

// Firewall opens the host's packet filter for the bridge's traffic.
// Methods are not safe for concurrent use.
type Firewall interface {
	// Ensure puts our rules in place, below Docker's jump to DOCKER-USER
	// when there is one, and removes rules of ours that are out of place
	// or no longer wanted. Idempotent.
	Ensure(ctx context.Context) error
	// Remove deletes every rule of ours (by comment), and nothing else.
	// Missing rules, chains or tools are not errors.
	Remove(ctx context.Context) error
	// String names the backend ("iptables", "nftables", "none").
	String() string
}

// Runner runs the firewall tools. Exec is the real one.
type Runner interface {
	// LookPath reports whether the tool is installed (as exec.LookPath).
	LookPath(file string) (string, error)
	// Run runs the tool and returns its combined output. A tool that ran
	// and failed returns an *ExitError.
	Run(ctx context.Context, name string, args ...string) ([]byte, error)
}

// ExitError is a tool's non-zero exit.
type ExitError struct {
	Code   int
	Output string
}

func (e *ExitError) Error() string {
	return fmt.Sprintf("exit status %d: %s", e.Code, oneLine(e.Output))
}

// ErrNoTool is returned by New when neither iptables nor nft is installed.
var ErrNoTool = errors.New("neither iptables nor nft is installed")

// Exec runs the tools as child processes.
type Exec struct{}

var _ Runner = Exec{}

// LookPath implements Runner.
func (Exec) LookPath(file string) (string, error) { return exec.LookPath(file) }

// Run implements Runner.
func (Exec) Run(ctx context.Context, name string, args ...string) ([]byte, error) {
	out, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return out, &ExitError{Code: ee.ExitCode(), Output: string(out)}
	}
	return out, err
}

// rule is one accept rule, in a form each backend renders.
type rule struct {
	purpose string // last part of the comment
	in, out string // interface matches; "!x" negates
	related bool   // only replies (conntrack RELATED,ESTABLISHED)
}

// dockerUserChain is the chain Docker leaves to administrators: Docker
// jumps to it first thing in FORWARD, and our rules go below that jump.
const dockerUserChain = "DOCKER-USER"

// rules are, in order: frames bridged between two ports of the bridge
// (containers, TAP), and replies of flows that something else accepted
// into the bridge. Weave Net also accepted everything leaving the bridge
// for other interfaces ("from-bridge"); that let containers reach any
// network the host routes to, past DOCKER-USER, and nothing here needs
// it. Ensure deletes such a rule left by an older version.
func rules(bridge string) []rule {
	return []rule{
		{purpose: "bridged", in: bridge, out: bridge},
		{purpose: "to-bridge-replies", out: bridge, related: true},
	}
}

// Comment returns the comment of our rules' for the bridge and purpose.
func Comment(bridge, purpose string) string { return commentPrefix(bridge) + purpose }

func commentPrefix(bridge string) string { return "weave:" + bridge + ":" }

// New picks the backend. iptables is used when installed: on a Docker host
// the DROP policy lives in iptables' filter FORWARD chain (with the legacy
// or the nf_tables backend), and an accept verdict in a separate nftables
// table would not override a drop there; writing nft-native rules into a
// chain that iptables-nft manages would make iptables (and so Docker)
// refuse the table. Without iptables, nft is used and our rules go into
// every existing base chain on the forward hook. Without either, New
// returns a Firewall that does nothing and ErrNoTool.
func New(r Runner, bridge string) (Firewall, error) {
	if bridge == "" || strings.ContainsAny(bridge, " \t\n\"'") {
		return none{}, fmt.Errorf("firewall: bad bridge name %q", bridge)
	}
	var ipt []string
	for _, tool := range []string{"iptables", "ip6tables"} {
		if _, err := r.LookPath(tool); err == nil {
			ipt = append(ipt, tool)
		}
	}
	if len(ipt) > 0 && ipt[0] == "iptables" {
		return &iptables{r: r, bridge: bridge, tools: ipt}, nil
	}
	if _, err := r.LookPath("nft"); err == nil {
		return &nft{r: r, bridge: bridge}, nil
	}
	return none{}, ErrNoTool
}

// none is the Firewall when no tool is installed.
type none struct{}

func (none) Ensure(context.Context) error { return nil }
func (none) Remove(context.Context) error { return nil }
func (none) String() string               { return "none" }

func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }
