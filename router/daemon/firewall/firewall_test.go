package firewall_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/weavelab/weave/router/daemon/firewall"
	"github.com/weavelab/weave/router/daemon/firewall/firewalltest"
)

func TestNewPicksBackend(t *testing.T) {
	for _, tc := range []struct {
		tools []string
		want  string
		err   error
	}{
		{[]string{"iptables", "ip6tables", "nft"}, "iptables+ip6tables", nil},
		{[]string{"iptables"}, "iptables", nil},
		{[]string{"nft"}, "nftables", nil},
		{[]string{"ip6tables", "nft"}, "nftables", nil},
		{nil, "none", firewall.ErrNoTool},
	} {
		fw, err := firewall.New(firewalltest.New(tc.tools...), "weave")
		if !errors.Is(err, tc.err) || fw.String() != tc.want {
			t.Errorf("tools %v: got %s, %v; want %s, %v", tc.tools, fw, err, tc.want, tc.err)
		}
	}
	if _, err := firewall.New(firewalltest.New("iptables"), `we"ave`); err == nil {
		t.Error("bridge name with a quote accepted")
	}
}

// oldFromBridge is the rule that older versions put at the top of
// FORWARD: it accepted everything leaving the bridge.
const oldFromBridge = "-i weave ! -o weave -m comment --comment weave:weave:from-bridge -j ACCEPT"

func TestIPTables(t *testing.T) {
	ctx := context.Background()
	fake := firewalltest.New("iptables", "ip6tables")
	docker := "-j DOCKER-USER"
	other := "-i weave2 -o weave2 -m comment --comment weave:weave2:bridged -j ACCEPT"
	fake.AddIPTablesRule("iptables", oldFromBridge) // an older version's, above Docker's jump
	fake.AddIPTablesRule("iptables", docker)
	fake.AddIPTablesRule("iptables", other)
	fw, err := firewall.New(fake, "weave")
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"-i weave -o weave -m comment --comment weave:weave:bridged -j ACCEPT",
		"-o weave -m conntrack --ctstate RELATED,ESTABLISHED -m comment --comment weave:weave:to-bridge-replies -j ACCEPT",
	}
	for range 2 { // idempotent
		if err := fw.Ensure(ctx); err != nil {
			t.Fatal(err)
		}
		if got := fake.IPTablesRules("iptables"); !slices.Equal(got, append(append([]string{docker}, want...), other)) {
			t.Fatalf("iptables FORWARD after Ensure:\n%q", got)
		}
		if got := fake.IPTablesRules("ip6tables"); !slices.Equal(got, want) {
			t.Fatalf("ip6tables FORWARD after Ensure:\n%q", got)
		}
	}
	calls := len(fake.Calls)
	if err := fw.Ensure(ctx); err != nil {
		t.Fatal(err)
	}
	for _, c := range fake.Calls[calls:] {
		if !strings.Contains(c, " -S ") {
			t.Errorf("Ensure with the rules in place ran %q", c)
		}
	}
	// A rule deleted by someone else comes back, once.
	fake.Run(ctx, "iptables", append([]string{"-D", "FORWARD"}, strings.Fields(want[0])...)...)
	if err := fw.Ensure(ctx); err != nil {
		t.Fatal(err)
	}
	if got := fake.IPTablesRules("iptables"); !slices.Equal(got, append(append([]string{docker}, want...), other)) {
		t.Fatalf("after re-ensure: %q", got)
	}
	for range 2 { // idempotent
		if err := fw.Remove(ctx); err != nil {
			t.Fatal(err)
		}
		if got := fake.IPTablesRules("iptables"); !slices.Equal(got, []string{docker, other}) {
			t.Fatalf("iptables FORWARD after Remove: %q", got)
		}
		if got := fake.IPTablesRules("ip6tables"); len(got) != 0 {
			t.Fatalf("ip6tables FORWARD after Remove: %q", got)
		}
	}
}

// TestIPTablesBelowDockerUser: whatever the order things happened in,
// after Ensure our rules sit below Docker's jump to DOCKER-USER: rules made
// before Docker started, and moved above it by a tool, are put back below.
func TestIPTablesBelowDockerUser(t *testing.T) {
	ctx := context.Background()
	fake := firewalltest.New("iptables")
	fw, _ := firewall.New(fake, "weave")
	if err := fw.Ensure(ctx); err != nil { // no Docker yet: at the top
		t.Fatal(err)
	}
	ours := fake.IPTablesRules("iptables")
	if len(ours) != 2 {
		t.Fatalf("rules without Docker: %q", ours)
	}
	// Docker starts: it inserts its jump first thing.
	fake.Run(ctx, "iptables", "-w", "-I", "FORWARD", "1", "-j", "DOCKER-USER")
	if err := fw.Ensure(ctx); err != nil {
		t.Fatal(err)
	}
	if got := fake.IPTablesRules("iptables"); !slices.Equal(got, append([]string{"-j DOCKER-USER"}, ours...)) {
		t.Fatalf("after Docker started: %q", got)
	}
	// Someone moves one of ours to the top: Ensure puts it back below.
	fake.Run(ctx, "iptables", append([]string{"-w", "-D", "FORWARD"}, strings.Fields(ours[1])...)...)
	fake.Run(ctx, "iptables", append([]string{"-w", "-I", "FORWARD", "1"}, strings.Fields(ours[1])...)...)
	if err := fw.Ensure(ctx); err != nil {
		t.Fatal(err)
	}
	if got := fake.IPTablesRules("iptables"); !slices.Equal(got, append([]string{"-j DOCKER-USER"}, ours...)) {
		t.Fatalf("after a rule of ours was moved up: %q", got)
	}
}

// TestNoRuleAcceptsAllLeavingBridge: no rule of either backend accepts
// new traffic from the bridge to another interface (older versions had
// "-i weave ! -o weave -j ACCEPT").
func TestNoRuleAcceptsAllLeavingBridge(t *testing.T) {
	ctx := context.Background()
	ipt := firewalltest.New("iptables")
	fw, _ := firewall.New(ipt, "weave")
	if err := fw.Ensure(ctx); err != nil {
		t.Fatal(err)
	}
	for _, r := range ipt.IPTablesRules("iptables") {
		f := strings.Fields(r)
		if slices.Contains(f, "-i") && !(slices.Contains(f, "-o") && f[slices.Index(f, "-o")-1] != "!") && !strings.Contains(r, "ctstate") {
			t.Errorf("iptables rule accepts traffic leaving the bridge: %q", r)
		}
	}
	nft := firewalltest.New("nft")
	nft.AddChain("inet", "filter", "forward", "forward")
	fw, _ = firewall.New(nft, "weave")
	if err := fw.Ensure(ctx); err != nil {
		t.Fatal(err)
	}
	for _, c := range nft.Calls {
		if strings.Contains(c, "iifname") && (!strings.Contains(c, "oifname") || strings.Contains(c, "!=")) && !strings.Contains(c, "ct state") {
			t.Errorf("nft rule accepts traffic leaving the bridge: %q", c)
		}
	}
}

// TestIPTablesNoIPv6Table: a kernel without ip6tables' filter table makes
// Ensure report the failure, but Remove has nothing to remove there.
func TestIPTablesNoIPv6Table(t *testing.T) {
	ctx := context.Background()
	fake := firewalltest.New("iptables", "ip6tables")
	fake.RemoveTable("ip6tables")
	fw, err := firewall.New(fake, "weave")
	if err != nil {
		t.Fatal(err)
	}
	if err := fw.Ensure(ctx); err == nil || !strings.Contains(err.Error(), "ip6tables") {
		t.Errorf("Ensure: %v, want an ip6tables error", err)
	}
	if got := fake.IPTablesRules("iptables"); len(got) != 2 {
		t.Errorf("iptables rules: %q, want ours despite ip6tables failing", got)
	}
	if err := fw.Remove(ctx); err != nil {
		t.Errorf("Remove: %v", err)
	}
	if got := fake.IPTablesRules("iptables"); len(got) != 0 {
		t.Errorf("iptables rules after Remove: %q", got)
	}
}

func TestNft(t *testing.T) {
	ctx := context.Background()
	fake := firewalltest.New("nft")
	fake.AddChain("inet", "filter", "forward", "forward")
	fake.AddChain("ip", "filter", "FORWARD", "forward")
	fake.AddChain("inet", "filter", "input", "input")
	fake.AddChain("inet", "filter", "mine", "")
	fake.AddChain("bridge", "filter", "forward", "forward")
	fake.AddNftRule("inet", "filter", "forward", "accept", "weave:weave:from-bridge") // an older version's
	fake.AddNftRule("inet", "filter", "forward", "ct state invalid drop", "")
	fake.AddNftRule("inet", "filter", "forward", "jump DOCKER-USER", "docker")
	fake.AddNftRule("inet", "filter", "forward", "iifname x accept", "weave:weave2:bridged")
	fw, err := firewall.New(fake, "weave")
	if err != nil {
		t.Fatal(err)
	}
	ours := []string{"weave:weave:bridged", "weave:weave:to-bridge-replies"}
	for range 2 {
		if err := fw.Ensure(ctx); err != nil {
			t.Fatal(err)
		}
		// Below the jump to DOCKER-USER; the older version's rule gone.
		if got := fake.NftRules("inet", "filter", "forward"); !slices.Equal(got, []string{"", "docker", ours[0], ours[1], "weave:weave2:bridged"}) {
			t.Fatalf("inet forward after Ensure: %q", got)
		}
		if got := fake.NftRules("ip", "filter", "FORWARD"); !slices.Equal(got, ours) {
			t.Fatalf("ip FORWARD after Ensure: %q", got)
		}
		for _, c := range [][3]string{{"inet", "filter", "input"}, {"inet", "filter", "mine"}, {"bridge", "filter", "forward"}} {
			if got := fake.NftRules(c[0], c[1], c[2]); len(got) != 0 {
				t.Fatalf("%v got rules %q", c, got)
			}
		}
	}
	for range 2 {
		if err := fw.Remove(ctx); err != nil {
			t.Fatal(err)
		}
		if got := fake.NftRules("inet", "filter", "forward"); !slices.Equal(got, []string{"", "docker", "weave:weave2:bridged"}) {
			t.Fatalf("inet forward after Remove: %q", got)
		}
		if got := fake.NftRules("ip", "filter", "FORWARD"); len(got) != 0 {
			t.Fatalf("ip FORWARD after Remove: %q", got)
		}
	}
}

func TestNone(t *testing.T) {
	fake := firewalltest.New()
	fw, err := firewall.New(fake, "weave")
	if !errors.Is(err, firewall.ErrNoTool) {
		t.Fatalf("got %v", err)
	}
	if fw.Ensure(context.Background()) != nil || fw.Remove(context.Background()) != nil || len(fake.Calls) != 0 {
		t.Fatalf("none backend ran %q", fake.Calls)
	}
}
