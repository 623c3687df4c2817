package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// iperfResult is what one iperf3 client run reported.
type iperfResult struct {
	bitsPerSecond float64 // received by the server, all streams
	bytes         float64 // received by the server, all streams
	retransmits   int     // TCP retransmissions of the sender, all streams
}

// parseIperf reads `iperf3 -c ... -J` output.
func parseIperf(out []byte) (iperfResult, error) {
	var doc struct {
		Error string `json:"error"`
		End   struct {
			SumSent struct {
				Retransmits int `json:"retransmits"`
			} `json:"sum_sent"`
			SumReceived struct {
				Bytes         float64 `json:"bytes"`
				BitsPerSecond float64 `json:"bits_per_second"`
			} `json:"sum_received"`
		} `json:"end"`
	}
	if err := json.Unmarshal(out, &doc); err != nil {
		s := strings.TrimSpace(string(out))
		if s == "" {
			return iperfResult{}, errors.New("iperf3 printed nothing")
		}
		return iperfResult{}, fmt.Errorf("iperf3 output: %w: %q", err, lastLines(s, 3))
	}
	if doc.Error != "" {
		return iperfResult{}, fmt.Errorf("iperf3: %s", doc.Error)
	}
	if doc.End.SumReceived.BitsPerSecond <= 0 {
		return iperfResult{}, fmt.Errorf("iperf3: nothing received (%v bytes)", doc.End.SumReceived.Bytes)
	}
	return iperfResult{
		bitsPerSecond: doc.End.SumReceived.BitsPerSecond,
		bytes:         doc.End.SumReceived.Bytes,
		retransmits:   doc.End.SumSent.Retransmits,
	}, nil
}

// parseProcStatCPU returns utime+stime (clock ticks) from /proc/PID/stat.
// The command name in parentheses may hold spaces, so fields are counted
// from the last ')'.
func parseProcStatCPU(stat string) (uint64, error) {
	i := strings.LastIndexByte(stat, ')')
	if i < 0 {
		return 0, errors.New("/proc stat: no ')'")
	}
	// After ')': state(3) ppid(4) ... utime(14) stime(15), i.e. the 12th
	// and 13th fields of the rest.
	f := strings.Fields(stat[i+1:])
	if len(f) < 13 {
		return 0, fmt.Errorf("/proc stat: %d fields after the command", len(f))
	}
	utime, err1 := strconv.ParseUint(f[11], 10, 64)
	stime, err2 := strconv.ParseUint(f[12], 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		return 0, fmt.Errorf("/proc stat: %w", err)
	}
	return utime + stime, nil
}

// helpListsFlag reports whether a command's --help output lists flag as
// one of its flags (a line starting with it, or with its shorthand and it:
// "  -h, --help   help for launch").
func helpListsFlag(help, flag string) bool {
	for _, line := range strings.Split(help, "\n") {
		f := strings.Fields(line)
		for i := 0; i < len(f) && i < 2; i++ {
			if strings.TrimSuffix(f[i], ",") == flag {
				return true
			}
		}
	}
	return false
}

// ms converts d to milliseconds.
func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// lastLines returns the last n lines of s, trimmed.
func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.TrimSpace(strings.Join(lines, "\n"))
}

// linkNames reads `ip -o link show`: "2: ethwe@if5: <...> mtu ...".
func linkNames(out string) []string {
	var names []string
	for _, line := range strings.Split(out, "\n") {
		f := strings.SplitN(line, ": ", 3)
		if len(f) < 3 {
			continue
		}
		name, _, _ := strings.Cut(f[1], "@")
		names = append(names, name)
	}
	return names
}
