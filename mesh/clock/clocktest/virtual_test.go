package clocktest

import (
	"slices"
	"testing"
	"time"
)

func TestVirtualOrder(t *testing.T) {
	v := New(time.Time{})
	var got []string
	v.AfterFunc(2*time.Second, func() { got = append(got, "b") })
	v.AfterFunc(time.Second, func() {
		got = append(got, "a")
		v.AfterFunc(time.Second, func() { got = append(got, "c") }) // ties with b, set later
	})
	stopped := v.AfterFunc(1500*time.Millisecond, func() { got = append(got, "x") })
	if !stopped.Stop() {
		t.Fatal("Stop of an armed timer reported false")
	}
	v.Advance(3 * time.Second)
	if want := []string{"a", "b", "c"}; !slices.Equal(got, want) {
		t.Fatalf("fired %v, want %v", got, want)
	}
	if d := v.Now().Sub(Epoch); d != 3*time.Second {
		t.Fatalf("now is epoch+%s, want 3s", d)
	}
}

func TestVirtualTimerAndTicker(t *testing.T) {
	v := New(time.Time{})
	tm := v.NewTimer(time.Second)
	tk := v.NewTicker(400 * time.Millisecond)
	defer tk.Stop()
	v.Advance(time.Second)
	select {
	case at := <-tm.C():
		if at.Sub(Epoch) != time.Second {
			t.Fatalf("timer fired at %s", at.Sub(Epoch))
		}
	default:
		t.Fatal("timer did not fire")
	}
	// Two ticks fired (0.4 s, 0.8 s); the buffer holds one.
	if at := <-tk.C(); at.Sub(Epoch) != 400*time.Millisecond {
		t.Fatalf("first tick at %s", at.Sub(Epoch))
	}
	tm.Reset(time.Second)
	if tm.Reset(2*time.Second) != true {
		t.Fatal("Reset of an armed timer reported false")
	}
	v.Advance(1500 * time.Millisecond)
	select {
	case <-tm.C():
		t.Fatal("timer fired before its reset deadline")
	default:
	}
	if v.Pending() != 2 {
		t.Fatalf("pending = %d, want 2", v.Pending())
	}
}
