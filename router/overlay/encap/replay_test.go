package encap

import (
	"errors"
	"testing"
)

func TestWindow(t *testing.T) {
	type step struct {
		c    uint64
		want error
	}
	cases := []struct {
		name  string
		steps []step
	}{
		{"in order", []step{{0, nil}, {1, nil}, {2, nil}, {2, ErrReplay}}},
		{"starts anywhere", []step{{1000, nil}, {999, nil}, {1000, ErrReplay}}},
		{"reorder within", []step{{10, nil}, {5, nil}, {7, nil}, {5, ErrReplay}, {11, nil}}},
		{"edge of window", []step{{WindowSize + 100, nil}, {101, nil}, {100, ErrTooOld}}},
		{"big jump clears", []step{{1, nil}, {1 << 20, nil}, {1, ErrTooOld}, {1<<20 - 1, nil}, {1<<20 - 1, ErrReplay}}},
		{"word boundaries", []step{{63, nil}, {64, nil}, {127, nil}, {128, nil}, {63, ErrReplay}, {64, ErrReplay}, {65, nil}}},
		{"ring wrap", []step{{0, nil}, {64 * 64, nil}, {64*64 + 64*64, nil}, {64 * 64, ErrTooOld}, {64*64*2 - 1, nil}}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var w Window
			for i, s := range tc.steps {
				err := w.Check(s.c)
				if !errors.Is(err, s.want) || (err == nil) != (s.want == nil) {
					t.Fatalf("step %d counter %d: got %v want %v", i, s.c, err, s.want)
				}
				if err == nil {
					w.Mark(s.c)
				}
			}
		})
	}
}

// TestWindowModel checks the window against a simple set model on a long
// pseudo-random sequence of counters near the front.
func TestWindowModel(t *testing.T) {
	var w Window
	seen := map[uint64]bool{}
	var highest uint64
	x := uint64(88172645463325252)
	for i := range 200000 {
		x ^= x << 13
		x ^= x >> 7
		x ^= x << 17
		var c uint64
		if i > 0 && x%4 != 0 && highest > 3000 {
			c = highest - x%3000 // behind, sometimes beyond the window
		} else {
			c = highest + x%100
		}
		var want error
		switch {
		case i > 0 && c <= highest && highest-c >= WindowSize:
			want = ErrTooOld
		case seen[c]:
			want = ErrReplay
		}
		err := w.Check(c)
		if err != want {
			t.Fatalf("step %d counter %d highest %d: got %v want %v", i, c, highest, err, want)
		}
		if err == nil {
			w.Mark(c)
			seen[c] = true
			if c > highest {
				highest = c
			}
		}
	}
}
