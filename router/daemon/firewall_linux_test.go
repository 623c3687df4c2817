package daemon

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"testing"

	"github.com/weavelab/weave/router/daemon/firewall"
	"github.com/weavelab/weave/router/daemon/firewall/firewalltest"
)

// TestOpenFirewall checks the daemon's use of the host firewall over the
// fake: rules added at start (once, however often it starts), a warning and
// no failure when no tool is installed.
func TestOpenFirewall(t *testing.T) {
	cfg := DefaultConfig()
	fake := firewalltest.New("iptables")
	cfg.FirewallRunner = fake
	var logs bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	openFirewall(context.Background(), cfg, log)
	openFirewall(context.Background(), cfg, log)
	rules := fake.IPTablesRules("iptables")
	if len(rules) != 2 || !strings.Contains(rules[0], firewall.Comment("weave", "bridged")) {
		t.Fatalf("rules after two starts: %q", rules)
	}
	if !strings.Contains(logs.String(), "backend=iptables") {
		t.Errorf("log does not name the backend:\n%s", logs.String())
	}

	cfg.FirewallRunner = firewalltest.New()
	logs.Reset()
	openFirewall(context.Background(), cfg, log)
	if !strings.Contains(logs.String(), "level=WARN") || !strings.Contains(logs.String(), "neither iptables nor nft") {
		t.Errorf("no warning without tools:\n%s", logs.String())
	}
}
