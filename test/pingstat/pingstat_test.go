package pingstat

import (
	"testing"
	"time"
)

func TestParse(t *testing.T) {
	const out = `PING 10.40.0.2 (10.40.0.2) 56(84) bytes of data.
64 bytes from 10.40.0.2: icmp_seq=1 ttl=64 time=0.250 ms
64 bytes from 10.40.0.2: icmp_seq=2 ttl=64 time=0.100 ms
64 bytes from 10.40.0.2: icmp_seq=4 ttl=64 time=1.50 ms

--- 10.40.0.2 ping statistics ---
4 packets transmitted, 3 received, 25% packet loss, time 30ms
rtt min/avg/max/mdev = 0.100/0.616/1.500/0.626 ms
`
	p, err := Parse(out)
	if err != nil {
		t.Fatal(err)
	}
	if p.Sent != 4 || p.Received != 3 || len(p.RTTs) != 3 {
		t.Fatalf("sent %d received %d rtts %v", p.Sent, p.Received, p.RTTs)
	}
	if p.Loss() != 0.25 {
		t.Errorf("loss %v, want 0.25", p.Loss())
	}
	for _, c := range []struct {
		name      string
		got, want time.Duration
	}{
		{"avg", p.Avg(), 616666 * time.Nanosecond},
		{"p50", p.Percentile(0.5), 250 * time.Microsecond},
		{"p99", p.Percentile(0.99), 1500 * time.Microsecond},
		{"max", p.Percentile(1), 1500 * time.Microsecond},
		{"min", p.Percentile(0.01), 100 * time.Microsecond},
	} {
		if d := c.got - c.want; d < -time.Microsecond || d > time.Microsecond {
			t.Errorf("%s = %v, want %v", c.name, c.got, c.want)
		}
	}
	if _, err := Parse("ping: connect: Network is unreachable"); err == nil {
		t.Error("output without a summary parsed")
	}
	if (Stats{}).Loss() != 1 || (Stats{}).Avg() != 0 || (Stats{}).Percentile(0.5) != 0 {
		t.Error("empty stats: want loss 1, avg 0, percentile 0")
	}
}

func TestPercentileNearestRank(t *testing.T) {
	var p Stats
	for i := 1; i <= 200; i++ {
		p.RTTs = append(p.RTTs, time.Duration(201-i)*time.Millisecond) // 200..1 ms, unsorted
	}
	if got := p.Percentile(0.99); got != 198*time.Millisecond {
		t.Errorf("p99 of 1..200 ms = %v, want 198ms", got)
	}
	if got := p.Percentile(1); got != 200*time.Millisecond {
		t.Errorf("max = %v, want 200ms", got)
	}
	if got := (Stats{}).Percentile(0.99); got != 0 {
		t.Errorf("p99 of nothing = %v, want 0", got)
	}
}
