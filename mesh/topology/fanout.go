package topology

import "math"

// FanOut returns how many neighbours a gossip update about n peers should be
// sent to: ceil(2·log2 n), at least 1. That keeps the cost of one change
// O(N log N) messages mesh-wide instead of O(N²), while each update still
// reaches every peer with high probability since receivers forward what was
// new to them. The caller caps it at the number of neighbours it has.
func FanOut(n int) int {
	if n <= 2 {
		return max(n, 1)
	}
	return int(math.Ceil(2 * math.Log2(float64(n))))
}
