package main

import (
	"bytes"
	"encoding/json"
	"net/netip"
	"reflect"
	"strings"
	"testing"
)

func TestDNSRatiosAndPrint(t *testing.T) {
	d := &dnsResult{Names: 100, Seconds: 5, Dnsmasq: "2.90", DnsmasqCacheSize: 200, Rows: []dnsRow{
		{Query: dnsQueryWeave, Server: dnsServerWeave, loadSummary: loadSummary{Clients: 1, Answered: 500, QPS: 100, P50Ms: 0.2, P99Ms: 0.9}},
		{Query: dnsQueryWeave, Server: dnsServerDnsmasq, loadSummary: loadSummary{Clients: 1, Answered: 1000, QPS: 200, P50Ms: 0.1, P99Ms: 0.3}},
		{Query: dnsQueryForwarded, Server: dnsServerDnsmasqCached, loadSummary: loadSummary{Clients: 8, Answered: 10, Lost: 1}},
	}}
	d.setRatios()
	if d.Rows[0].WeaveVs != nil {
		t.Error("the weaveDNS row has ratios to itself")
	}
	if got, want := *d.Rows[1].WeaveVs, (dnsRatios{QPS: 0.5, P50: 2, P99: 3}); !near(got.QPS, want.QPS) || !near(got.P50, want.P50) || !near(got.P99, want.P99) {
		t.Errorf("ratios = %+v, want %+v", got, want)
	}
	if d.Rows[2].WeaveVs != nil {
		t.Error("a row without a weaveDNS row of its own got ratios")
	}
	if d.Rows[2].ok() {
		t.Error("a row with 1 query lost out of 11 is ok")
	}

	var b bytes.Buffer
	printDNS(&b, result{Scenario: scenarioDNS, DNS: d})
	out := b.String()
	for _, want := range []string{"dnsmasq 2.90", "0.50x", "2.00x", "3.00x", "dnsmasq --cache-size=0", "dnsmasq --cache-size=200", "FAILED", "not like for like"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}

	// The row's load figures sit at its top level in the JSON.
	j, err := json.Marshal(d.Rows[1])
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(j, &m); err != nil {
		t.Fatal(err)
	}
	if m["qps"] != 200.0 || m["server"] != dnsServerDnsmasq || m["weave_vs_this"] == nil {
		t.Errorf("JSON row %s", j)
	}
}

func near(a, b float64) bool { return a-b < 1e-9 && b-a < 1e-9 }

func TestReportPrintsDNS(t *testing.T) {
	cfg, err := parseFlags([]string{"-only", "dns"}, &strings.Builder{})
	if err != nil {
		t.Fatal(err)
	}
	rep := newReport(cfg, []result{{Scenario: scenarioDNS, Error: "dnsmasq exited"}})
	var out strings.Builder
	rep.print(&out)
	for _, s := range []string{"weaveDNS and dnsmasq", "FAILED", "dns failed: dnsmasq exited"} {
		if !strings.Contains(out.String(), s) {
			t.Errorf("report lacks %q:\n%s", s, out.String())
		}
	}
	if strings.Contains(out.String(), "iperf3") {
		t.Errorf("a dns-only report prints the data-path table:\n%s", out.String())
	}
}

func TestParseClientCounts(t *testing.T) {
	for _, c := range []struct {
		in   string
		want []int
		ok   bool
	}{
		{"1,8", []int{1, 8}, true},
		{" 8, 1 ,8,", []int{8, 1}, true},
		{"", nil, false},
		{"0", nil, false},
		{"1,x", nil, false},
		{"65", nil, false},
	} {
		got, err := parseClientCounts(c.in, 64)
		if (err == nil) != c.ok || !reflect.DeepEqual(got, c.want) {
			t.Errorf("parseClientCounts(%q) = %v, %v", c.in, got, err)
		}
	}
}

func TestParseDNSFlags(t *testing.T) {
	var sb strings.Builder
	cfg, err := parseFlags([]string{"-only", "dns", "-dns-clients", "2", "-dns-names", "10"}, &sb)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.needsLab() || !cfg.needsWeave() || cfg.dnsNames != 10 || !reflect.DeepEqual(cfg.dnsClients, []int{2}) {
		t.Errorf("config %+v", cfg)
	}
	if cfg, _ := parseFlags(nil, &sb); !reflect.DeepEqual(cfg.dnsClients, []int{1, 8}) || cfg.scenarios[len(cfg.scenarios)-1] != scenarioDNS {
		t.Errorf("defaults: %+v", cfg)
	}
	for _, bad := range [][]string{{"-dns-names", "0"}, {"-dns-clients", "0"}, {"-dns-clients", ""}} {
		if _, err := parseFlags(bad, &sb); err == nil {
			t.Errorf("parseFlags(%q) accepted it", bad)
		}
	}
}

func TestParseNameserver(t *testing.T) {
	got, err := parseNameserver("# weaveDNS: written by weave\nsearch weave.local\nnameserver 169.254.53.53\nnameserver 10.0.0.1\n")
	if err != nil || got != netip.MustParseAddr("169.254.53.53") {
		t.Errorf("parseNameserver = %v, %v", got, err)
	}
	for _, bad := range []string{"", "search x\n", "nameserver bogus\n"} {
		if _, err := parseNameserver(bad); err == nil {
			t.Errorf("parseNameserver(%q) accepted it", bad)
		}
	}
}

func TestParseDnsmasqVersion(t *testing.T) {
	for in, want := range map[string]string{
		"Dnsmasq version 2.90  Copyright (c) 2000-2024 Simon Kelley\nCompile time options: IPv6\n": "2.90",
		"dnsmasq: bad option\n": "",
		"":                      "",
	} {
		if got := parseDnsmasqVersion(in); got != want {
			t.Errorf("parseDnsmasqVersion(%q) = %q, want %q", in, got, want)
		}
	}
}
