package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/weavelab/weave/test/pingstat"
)

const (
	// fastDPWarmup is how long a warm-up pings before the fast-path
	// measurements: a few of the router's maintenance ticks.
	fastDPWarmup = 5 * time.Second
	iperfPort    = "5201"
	// clockTicks is USER_HZ, the unit of /proc/PID/stat times; 100 on
	// every Linux architecture Go supports.
	clockTicks = 100
)

// endpoints is what a scenario hands to the measurements.
type endpoints struct {
	dst     string // container 2's address, targeted from container 1
	mtu     int    // container 1's MTU
	routers []int  // PIDs whose CPU time is measured (weave's routers, the wireguard-go processes)
	cipher  string // data-plane cipher suite weave reports (WireGuard's), "" if none
	path    string // connection path weave reports (fastdp, sleeve; userspace for wireguard-go), "" if none
	// software names what carries the traffic in a reference row that is
	// not weave (its version), "" otherwise.
	software string
	// warmup asks for fastDPWarmup of pings before measuring: the fast
	// path takes a MAC only once the router has learnt it and its next
	// maintenance tick has programmed the kernel.
	warmup bool
	// diagnose, when set, describes the scenario's state for an error
	// message (e.g. the end of the routers' logs).
	diagnose func() string
}

// measureEndpoints fills res with latency and throughput from container 1 to
// container 2. It measures as much as it can and returns what failed.
func measureEndpoints(ctx context.Context, cfg config, l *lab, ep *endpoints, res *result) error {
	c1, c2 := l.hosts[0].container, l.hosts[1].container
	if err := poll(ctx, 30*time.Second, 200*time.Millisecond, func() (bool, string) {
		_, err := c1.run(ctx, nil, "ping", "-n", "-c", "1", "-W", "1", ep.dst)
		if err != nil {
			return false, fmt.Sprintf("%s does not reach %s: %v", c1.name, ep.dst, err)
		}
		return true, ""
	}); err != nil {
		return err
	}

	if ep.warmup {
		warm := cfg
		warm.pings = int(fastDPWarmup / cfg.interval)
		if _, err := ping(ctx, warm, c1, ep.dst); err != nil {
			return fmt.Errorf("warm-up: %w", err)
		}
	}

	var errs []error
	p, err := ping(ctx, cfg, c1, ep.dst)
	if err != nil {
		errs = append(errs, err)
	} else {
		res.PingP50Ms = ms(p.Percentile(0.5))
		res.PingAvgMs = ms(p.Avg())
		res.PingP99Ms = ms(p.Percentile(0.99))
		res.PingMaxMs = ms(p.Percentile(1))
		res.PingLossPct = 100 * p.Loss()
		if p.Loss() > 0 {
			errs = append(errs, fmt.Errorf("ping: %d of %d lost", p.Sent-p.Received, p.Sent))
		}
	}

	if ctx.Err() != nil {
		return errors.Join(append(errs, context.Cause(ctx))...)
	}
	cpu0, cpuErr := cpuTicks(ep.routers)
	start := time.Now()
	var gbit float64 // moved by both runs
	for _, streams := range []int{1, 4} {
		if ctx.Err() != nil {
			return errors.Join(append(errs, context.Cause(ctx))...)
		}
		r, err := iperf(ctx, cfg, c1, c2, ep.dst, streams)
		if err != nil {
			errs = append(errs, fmt.Errorf("%d stream(s): %w", streams, err))
			continue
		}
		gbps := r.bitsPerSecond / 1e9
		gbit += r.bytes * 8 / 1e9
		if streams == 1 {
			res.Gbps1, res.Retransmits1 = gbps, float64(r.retransmits)
		} else {
			res.Gbps4, res.Retransmits4 = gbps, float64(r.retransmits)
		}
	}
	if len(ep.routers) > 0 && cpuErr == nil {
		if cpu1, err := cpuTicks(ep.routers); err == nil {
			res.setRouterCPU(float64(cpu1-cpu0)/clockTicks, time.Since(start), gbit)
		}
	}
	return errors.Join(errs...)
}

// ping sends cfg.pings echo requests from c to dst.
func ping(ctx context.Context, cfg config, c netns, dst string) (pingstat.Stats, error) {
	interval := strconv.FormatFloat(cfg.interval.Seconds(), 'f', 3, 64)
	timeout := time.Duration(cfg.pings)*cfg.interval + 30*time.Second
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	// Exit status 1 means some replies were lost: the output still counts.
	out, err := c.run(ctx, nil, "ping", "-n", "-c", strconv.Itoa(cfg.pings), "-i", interval, "-W", "1", dst)
	p, perr := pingstat.Parse(out)
	switch {
	case perr != nil && err != nil:
		return p, err // says why ping ended without a summary
	case perr != nil:
		return p, fmt.Errorf("ping: %w", perr)
	}
	return p, nil
}

// iperf runs an iperf3 server in dstNs (for one test) and a client with
// the given number of parallel streams in srcNs.
func iperf(ctx context.Context, cfg config, srcNs, dstNs netns, dst string, streams int) (iperfResult, error) {
	srv, err := dstNs.start("iperf3", "-s", "-1", "-B", dst, "-p", iperfPort)
	if err != nil {
		return iperfResult{}, err
	}
	defer srv.stop()
	if err := poll(ctx, 10*time.Second, 20*time.Millisecond, func() (bool, string) {
		select {
		case <-srv.done:
			return false, "iperf3 server exited: " + strings.TrimSpace(srv.errb.String())
		default:
		}
		out, err := dstNs.run(ctx, nil, "ss", "-Hltn", "sport = :"+iperfPort)
		return err == nil && strings.TrimSpace(out) != "", "iperf3 server not listening yet"
	}); err != nil {
		return iperfResult{}, err
	}
	secs := strconv.Itoa(int(cfg.duration.Round(time.Second).Seconds()))
	ctx, cancel := context.WithTimeout(ctx, cfg.duration+30*time.Second)
	defer cancel()
	out, err := srcNs.run(ctx, nil, "iperf3", "-c", dst, "-p", iperfPort, "-t", secs,
		"-P", strconv.Itoa(streams), "--connect-timeout", "5000", "-J")
	r, perr := parseIperf([]byte(out))
	if perr != nil {
		if ctx.Err() != nil {
			return r, errors.Join(perr, err)
		}
		return r, perr
	}
	return r, nil
}

// cpuTicks sums the CPU time (user+system, clock ticks) of the processes.
func cpuTicks(pids []int) (uint64, error) {
	var sum uint64
	for _, pid := range pids {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			return 0, fmt.Errorf("cpu time of %d: %w", pid, err)
		}
		t, err := parseProcStatCPU(string(b))
		if err != nil {
			return 0, fmt.Errorf("cpu time of %d: %w", pid, err)
		}
		sum += t
	}
	return sum, nil
}
