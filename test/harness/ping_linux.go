package harness

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/weavelab/weave/test/pingstat"
)

// PingStats is what one ping run reported, with the command's result.
type PingStats struct {
	pingstat.Stats
	Result Result
}

// ParsePing reads iputils ping output.
func ParsePing(out string) (PingStats, error) {
	st, err := pingstat.Parse(out)
	return PingStats{Stats: st}, err
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
