// Package clock is the time source of the control and data planes: an
// interface with the real clock behind it, so that code whose behaviour
// depends on timing (heartbeats, backoff, gossip rounds) can be run on
// virtual time by a simulation (see clock/clocktest) and stepped event by
// event, without sleeping or polling real timers.
//
// It depends on nothing else in the module, so any package can import it.
package clock

import "time"

// Clock tells the time and makes timers. Implementations are safe for
// concurrent use.
type Clock interface {
	// Now returns the current time.
	Now() time.Time
	// NewTimer returns a timer that sends the time on its C once d has
	// passed (like time.NewTimer).
	NewTimer(d time.Duration) Timer
	// NewTicker returns a ticker that sends the time on its C every d
	// (like time.NewTicker); d must be positive.
	NewTicker(d time.Duration) Ticker
	// AfterFunc calls f in its own goroutine once d has passed (like
	// time.AfterFunc). A virtual clock may call f from the goroutine that
	// advances it instead; f must not assume either.
	AfterFunc(d time.Duration, f func()) Timer
}

// Timer is a timer made by NewTimer or AfterFunc. Stop and Reset behave
// as time.Timer's (Go 1.23 semantics: after Stop or Reset no stale value
// is received from C).
type Timer interface {
	// C is the channel the time is sent on; nil for AfterFunc timers.
	C() <-chan time.Time
	// Stop prevents the timer from firing; it reports whether it did.
	Stop() bool
	// Reset makes the timer fire after d; it reports whether it was active.
	Reset(d time.Duration) bool
}

// Ticker is a ticker made by NewTicker.
type Ticker interface {
	C() <-chan time.Time
	Stop()
	Reset(d time.Duration)
}

// Since returns the time elapsed on c since t.
func Since(c Clock, t time.Time) time.Duration { return c.Now().Sub(t) }

// Real is the system clock.
type Real struct{}

var _ Clock = Real{}

// Now returns time.Now().
func (Real) Now() time.Time { return time.Now() }

// NewTimer wraps time.NewTimer.
func (Real) NewTimer(d time.Duration) Timer { return realTimer{time.NewTimer(d)} }

// NewTicker wraps time.NewTicker.
func (Real) NewTicker(d time.Duration) Ticker { return realTicker{time.NewTicker(d)} }

// AfterFunc wraps time.AfterFunc.
func (Real) AfterFunc(d time.Duration, f func()) Timer { return realTimer{time.AfterFunc(d, f)} }

type realTimer struct{ t *time.Timer }

func (t realTimer) C() <-chan time.Time        { return t.t.C }
func (t realTimer) Stop() bool                 { return t.t.Stop() }
func (t realTimer) Reset(d time.Duration) bool { return t.t.Reset(d) }

type realTicker struct{ t *time.Ticker }

func (t realTicker) C() <-chan time.Time   { return t.t.C }
func (t realTicker) Stop()                 { t.t.Stop() }
func (t realTicker) Reset(d time.Duration) { t.t.Reset(d) }
