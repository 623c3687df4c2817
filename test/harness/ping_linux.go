package harness

import (
	"context"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"time"
)

// PingStats is what one ping run reported.
type PingStats struct {
	Sent, Received int
	RTTs           []time.Duration // one per reply, in arrival order
	Result         Result
}

// Loss is the fraction of echo requests without a reply (1 if none sent).
func (p PingStats) Loss() float64 {
	if p.Sent == 0 {
		return 1
	}
	return float64(p.Sent-p.Received) / float64(p.Sent)
}

// Avg is the mean round-trip time of the replies.
func (p PingStats) Avg() time.Duration {
	if len(p.RTTs) == 0 {
		return 0
	}
	var sum time.Duration
	for _, r := range p.RTTs {
		sum += r
	}
	return sum / time.Duration(len(p.RTTs))
}

// Percentile returns the q-th (0..1) round-trip time.
func (p PingStats) Percentile(q float64) time.Duration {
	if len(p.RTTs) == 0 {
		return 0
	}
	s := slices.Clone(p.RTTs)
	slices.Sort(s)
	i := int(q*float64(len(s)-1) + 0.5)
	return s[min(i, len(s)-1)]
}

func (p PingStats) String() string {
	return fmt.Sprintf("%d sent, %d received, %.1f%% loss, avg %v, p99 %v",
		p.Sent, p.Received, 100*p.Loss(), p.Avg(), p.Percentile(0.99))
}

var (
	pingSummary = regexp.MustCompile(`(\d+) packets transmitted, (\d+) (?:packets )?received`)
	pingReply   = regexp.MustCompile(`icmp_seq=\d+ ttl=\d+ time=([0-9.]+) ms`)
)

// ParsePing reads iputils ping output.
func ParsePing(out string) (PingStats, error) {
	var p PingStats
	m := pingSummary.FindStringSubmatch(out)
	if m == nil {
		return p, fmt.Errorf("no ping summary in %q", out)
	}
	p.Sent, _ = strconv.Atoi(m[1])
	p.Received, _ = strconv.Atoi(m[2])
	for _, r := range pingReply.FindAllStringSubmatch(out, -1) {
		ms, err := strconv.ParseFloat(r[1], 64)
		if err == nil {
			p.RTTs = append(p.RTTs, time.Duration(ms*float64(time.Millisecond)))
		}
	}
	return p, nil
}

// Ping pings dst count times from the namespace (extra are more ping
// flags, e.g. "-i", "0.01", "-s", "1400"). Each probe waits up to 2 s.
func (n Netns) Ping(dst string, count int, extra ...string) (PingStats, error) {
	args := append([]string{"ping", "-n", "-c", strconv.Itoa(count), "-W", "2"}, extra...)
	args = append(args, dst)
	ctx, cancel := context.WithTimeout(context.Background(), time.Duration(count)*2*time.Second+30*time.Second)
	defer cancel()
	r := n.Run(ctx, args...)
	p, err := ParsePing(r.Stdout)
	p.Result = r
	if err != nil {
		return p, fmt.Errorf("%s: %w (%v, stderr %q)", n.Name, err, r.Err, r.Stderr)
	}
	return p, nil
}

// Reaches reports whether one ping from the namespace to dst is answered;
// for WaitFor.
func (n Netns) Reaches(dst string) (bool, string) {
	r := n.Run(context.Background(), "ping", "-n", "-c", "1", "-W", "1", dst)
	if r.OK() {
		return true, ""
	}
	return false, fmt.Sprintf("%s cannot ping %s: %s", n.Name, dst, r)
}
