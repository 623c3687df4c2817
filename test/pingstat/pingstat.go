// Package pingstat reads the output of iputils ping into per-reply round-trip
// times, for the end-to-end harness and the benchmark alike.
package pingstat

import (
	"fmt"
	"math"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Stats is what one ping run reported.
type Stats struct {
	Sent, Received int
	RTTs           []time.Duration // one per reply, in arrival order
}

var (
	summaryRE = regexp.MustCompile(`(\d+) packets transmitted, (\d+) (?:packets )?received`)
	replyRE   = regexp.MustCompile(`icmp_seq=\d+ ttl=\d+ time=([0-9.]+) ms`)
)

// Parse reads the output of iputils ping run without -q: one line per reply,
// then the summary.
func Parse(out string) (Stats, error) {
	var p Stats
	m := summaryRE.FindStringSubmatch(out)
	if m == nil {
		return p, fmt.Errorf("no ping summary in %q", lastLines(out, 3))
	}
	p.Sent, _ = strconv.Atoi(m[1])
	p.Received, _ = strconv.Atoi(m[2])
	for _, r := range replyRE.FindAllStringSubmatch(out, -1) {
		ms, err := strconv.ParseFloat(r[1], 64)
		if err != nil {
			return p, fmt.Errorf("ping reply time %q: %w", r[1], err)
		}
		p.RTTs = append(p.RTTs, time.Duration(ms*float64(time.Millisecond)))
	}
	return p, nil
}

// Loss is the fraction of echo requests without a reply (1 if none sent).
func (p Stats) Loss() float64 {
	if p.Sent == 0 {
		return 1
	}
	return float64(p.Sent-p.Received) / float64(p.Sent)
}

// Avg is the mean round-trip time of the replies, 0 with none.
func (p Stats) Avg() time.Duration {
	if len(p.RTTs) == 0 {
		return 0
	}
	var sum time.Duration
	for _, r := range p.RTTs {
		sum += r
	}
	return sum / time.Duration(len(p.RTTs))
}

// Percentile returns the nearest-rank q-th (0 < q <= 1) round-trip time: the
// smallest time that at least q of the replies did not exceed; 0 with none.
func (p Stats) Percentile(q float64) time.Duration {
	if len(p.RTTs) == 0 {
		return 0
	}
	s := slices.Clone(p.RTTs)
	slices.Sort(s)
	rank := int(math.Ceil(q * float64(len(s))))
	return s[min(max(rank, 1), len(s))-1]
}

func (p Stats) String() string {
	return fmt.Sprintf("%d sent, %d received, %.1f%% loss, avg %v, p99 %v",
		p.Sent, p.Received, 100*p.Loss(), p.Avg(), p.Percentile(0.99))
}

// lastLines returns the last n lines of s, for error messages.
func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
