package docker

import (
	"testing"
	"time"
)

func TestJitter(t *testing.T) {
	for _, d := range []time.Duration{0, 1, 3, 4, time.Millisecond, DefaultBackoff, DefaultMaxBackoff} {
		for range 1000 {
			j := jitter(d)
			if j > d || j < d-d/4 {
				t.Fatalf("jitter(%v) = %v, want within (3/4 d, d]", d, j)
			}
		}
	}
}
