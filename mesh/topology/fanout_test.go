package topology

import "testing"

func TestFanOut(t *testing.T) {
	for _, tc := range []struct{ n, want int }{
		{-1, 1}, {0, 1}, {1, 1}, {2, 2}, {3, 4}, {4, 4}, {5, 5}, {8, 6}, {100, 14}, {1000, 20}, {1 << 20, 40},
	} {
		if got := FanOut(tc.n); got != tc.want {
			t.Errorf("FanOut(%d) = %d, want %d", tc.n, got, tc.want)
		}
	}
}
