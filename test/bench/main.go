// Command bench measures container-to-container TCP throughput (iperf3, one
// and four streams), ping latency (median and p99) and the weave routers'
// CPU time per Gbit moved, across two host network namespaces: for the
// kernel's VXLAN as the baseline, and between the same namespaces for weave
// on its kernel fast path (weave-fastdp, default flags; skipped when the
// weave binary has no fast path), on its userspace path plain (weave, with
// --no-fastdp when weave has a fast path) and encrypted (the default cipher,
// then each suite forced: --cipher aes-gcm, --cipher nacl); and, as a
// reference that is not weave, the userspace WireGuard (wireguard-go, the
// pinned version go installed, or -wireguard-go's binary; skipped when it
// cannot be built) between the same namespaces. It prints one row per
// scenario with the ratios to VXLAN, under the date and the machine. The data-path scenarios run -rounds times (default 3) in
// rotation, each in turn and then each again, so that all see the same
// spells of the machine's other work; each row reports every figure's
// median over the rounds that succeeded, and the ratios of those medians
// (the JSON report keeps each round's figures too). Scenario ipam
// measures instead the wall time of `weave attach` with an allocated
// address (median and p99): in turn on one host, next to static-address
// attaches measured in the same run (and the ratio), and all at once over
// three hosts on a LAN of their own.
// Scenario dns measures weaveDNS (queries/s, p50 and p99 latency, for a
// weave name and for a forwarded name, with 1 and 8 clients) next to
// dnsmasq serving the same names from a hosts file on the same host in the
// same run, and the ratio weave/dnsmasq. Scenario proxy measures the time
// from `docker run` to the container's first packet through weave's Docker
// API proxy, next to plain docker run on Docker's bridge and weave run
// (see proxy_linux.go). These three run once, after the data-path rounds.
// `make bench` runs them all.
//
//	go run ./test/bench [-rounds 3] [-duration 5s] [-pings 1000] [-only vxlan,weave-fastdp,weave,weave-nacl,wireguard-go,ipam,proxy,dns] [-attaches 100] [-dns-names 100] [-dns-clients 1,8] [-proxy-runs 10] [-json out.json] [-weave bin/weave] [-wireguard-go BINARY] [-v]
//
// It needs root and ip (iproute2), for the data path iperf3 and ping
// (iputils), for scenario wireguard-go /dev/net/tun and sysctl (procps),
// for scenario dns dnsmasq (dnsmasq-base), and for scenario proxy the
// docker CLI and a running Docker Engine. Everything it makes
// (namespaces named wb<pid>-*, links inside them, processes it started,
// containers labelled weave-bench=wb<pid>, temporary directories) is
// removed on exit, also after a failure or SIGINT. Traffic stays inside
// those namespaces, but for the proxy scenario's baseline, which uses
// Docker's own bridge.
package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == helperCmd {
		os.Exit(runHelper(os.Args[2:], os.Stdout, os.Stderr))
	}
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// run is main with its inputs and outputs passed in; it returns the exit
// code: 0 when every scenario produced figures, 1 otherwise, 2 for bad flags.
func run(args []string, stdout, stderr io.Writer) int {
	cfg, err := parseFlags(args, stderr)
	if err != nil {
		return 2
	}
	if err := checkPrerequisites(cfg); err != nil {
		fmt.Fprintf(stderr, "bench: %v\n", err)
		return 1
	}
	// Catch SIGINT and SIGTERM until cleanup is over: the first one
	// cancels ctx, which stops the running command and unwinds to the
	// cleanups.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	log := newLogger(stderr, cfg.verbose)
	results, err := runScenarios(ctx, cfg, log)
	rep := newReport(cfg, results)
	rep.print(stdout)
	if cfg.jsonOut != "" {
		if werr := rep.writeJSON(cfg.jsonOut); werr != nil {
			fmt.Fprintf(stderr, "bench: %v\n", werr)
			return 1
		}
	}
	if err != nil {
		fmt.Fprintf(stderr, "bench: %v\n", err)
		return 1
	}
	if failed := rep.failed(); len(failed) > 0 {
		fmt.Fprintf(stderr, "bench: scenarios failed: %v\n", failed)
		return 1
	}
	return 0
}

// newLogger logs progress at info level, and every command at debug level
// when verbose.
func newLogger(w io.Writer, verbose bool) *slog.Logger {
	level := slog.LevelInfo
	if verbose {
		level = slog.LevelDebug
	}
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: level}))
}
