// Package clocktest provides Virtual, a clock.Clock on virtual time for
// simulations: time moves only when the test steps it, and timers fire in
// the stepping goroutine, in order of their deadlines (ties in the order
// they were set), so a run is exactly reproducible.
package clocktest

import (
	"container/heap"
	"sync"
	"time"

	"github.com/weavelab/weave/mesh/clock"
)

var _ clock.Clock = (*Virtual)(nil)

// Virtual is a clock on virtual time. It is safe for concurrent use, but
// its timers fire only inside Step, Advance and RunUntil, in the goroutine
// that calls them; AfterFunc callbacks run there too (not in goroutines of
// their own), with no lock held, so they may use the clock.
type Virtual struct {
	mu     sync.Mutex
	now    time.Time
	seq    uint64
	events eventHeap
	fired  uint64
}

// Epoch is where virtual time starts when New is given the zero time: a
// fixed instant, so that runs print the same times.
var Epoch = time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)

// New returns a virtual clock reading start (Epoch if zero).
func New(start time.Time) *Virtual {
	if start.IsZero() {
		start = Epoch
	}
	return &Virtual{now: start}
}

// Now returns the virtual time.
func (v *Virtual) Now() time.Time {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.now
}

// AfterFunc calls f from the stepping goroutine once d has passed.
func (v *Virtual) AfterFunc(d time.Duration, f func()) clock.Timer {
	t := &timer{v: v, f: f, index: -1}
	t.Reset(d)
	return t
}

// NewTimer returns a timer whose channel (buffer 1) receives the virtual
// time once d has passed.
func (v *Virtual) NewTimer(d time.Duration) clock.Timer {
	t := &timer{v: v, c: make(chan time.Time, 1), index: -1}
	t.Reset(d)
	return t
}

// NewTicker returns a ticker whose channel (buffer 1) receives the virtual
// time every d; ticks that find the buffer full are dropped, as with
// time.Ticker.
func (v *Virtual) NewTicker(d time.Duration) clock.Ticker {
	if d <= 0 {
		panic("clocktest: non-positive ticker interval")
	}
	t := &timer{v: v, c: make(chan time.Time, 1), period: d, index: -1}
	t.Reset(d)
	return ticker{t}
}

// Pending returns the number of armed timers.
func (v *Virtual) Pending() int {
	v.mu.Lock()
	defer v.mu.Unlock()
	return len(v.events)
}

// Fired returns how many timers have fired so far.
func (v *Virtual) Fired() uint64 {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.fired
}

// Next returns the deadline of the earliest armed timer; ok is false when
// there is none.
func (v *Virtual) Next() (t time.Time, ok bool) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if len(v.events) == 0 {
		return time.Time{}, false
	}
	return v.events[0].when, true
}

// Step moves time to the earliest deadline (never backwards) and fires that
// timer. It reports false, doing nothing, when no timer is armed.
func (v *Virtual) Step() bool {
	v.mu.Lock()
	if len(v.events) == 0 {
		v.mu.Unlock()
		return false
	}
	t := heap.Pop(&v.events).(*timer)
	t.index = -1
	if t.when.After(v.now) {
		v.now = t.when
	}
	v.fired++
	now := v.now
	if t.period > 0 {
		t.when = now.Add(t.period)
		t.seq = v.nextSeqLocked()
		heap.Push(&v.events, t)
	}
	v.mu.Unlock()
	t.fire(now)
	return true
}

// RunUntil fires, in order, every timer due at or before end (including
// timers that those set), then sets the time to end if it is later.
func (v *Virtual) RunUntil(end time.Time) {
	for {
		next, ok := v.Next()
		if !ok || next.After(end) {
			break
		}
		v.Step()
	}
	v.mu.Lock()
	if end.After(v.now) {
		v.now = end
	}
	v.mu.Unlock()
}

// Advance is RunUntil(Now()+d).
func (v *Virtual) Advance(d time.Duration) { v.RunUntil(v.Now().Add(d)) }

func (v *Virtual) nextSeqLocked() uint64 {
	v.seq++
	return v.seq
}

// timer is one armed deadline: an AfterFunc (f), a timer or a ticker (c).
type timer struct {
	v      *Virtual
	f      func()
	c      chan time.Time
	period time.Duration
	when   time.Time
	seq    uint64
	index  int // in v.events; -1 when not armed
}

func (t *timer) fire(now time.Time) {
	if t.f != nil {
		t.f()
		return
	}
	select {
	case t.c <- now:
	default:
	}
}

func (t *timer) C() <-chan time.Time { return t.c }

func (t *timer) Stop() bool {
	v := t.v
	v.mu.Lock()
	defer v.mu.Unlock()
	t.drain()
	if t.index < 0 {
		return false
	}
	heap.Remove(&v.events, t.index)
	t.index = -1
	return true
}

func (t *timer) Reset(d time.Duration) bool {
	v := t.v
	v.mu.Lock()
	defer v.mu.Unlock()
	t.drain()
	active := t.index >= 0
	if active {
		heap.Remove(&v.events, t.index)
	}
	t.when = v.now.Add(max(d, 0))
	t.seq = v.nextSeqLocked()
	heap.Push(&v.events, t)
	return active
}

// drain empties the channel so that no stale time is received after Stop
// or Reset (time.Timer's behaviour since Go 1.23).
func (t *timer) drain() {
	if t.c == nil {
		return
	}
	select {
	case <-t.c:
	default:
	}
}

type ticker struct{ t *timer }

func (k ticker) C() <-chan time.Time { return k.t.c }
func (k ticker) Stop()               { k.t.Stop() }
func (k ticker) Reset(d time.Duration) {
	if d <= 0 {
		panic("clocktest: non-positive ticker interval")
	}
	k.t.v.mu.Lock()
	k.t.period = d
	k.t.v.mu.Unlock()
	k.t.Reset(d)
}

// eventHeap orders timers by deadline, then by when they were set.
type eventHeap []*timer

func (h eventHeap) Len() int { return len(h) }
func (h eventHeap) Less(i, j int) bool {
	if !h[i].when.Equal(h[j].when) {
		return h[i].when.Before(h[j].when)
	}
	return h[i].seq < h[j].seq
}
func (h eventHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].index = i
	h[j].index = j
}
func (h *eventHeap) Push(x any) {
	t := x.(*timer)
	t.index = len(*h)
	*h = append(*h, t)
}
func (h *eventHeap) Pop() any {
	old := *h
	t := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	t.index = -1
	return t
}
