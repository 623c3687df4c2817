package docker

import (
	"context"
	"log/slog"
	"math/rand/v2"
	"time"
)

// Handler receives what a Watcher sees. Its methods are called from the
// Watcher's goroutine, one at a time, and hold the stream back while they
// run.
type Handler interface {
	// OnEvent is called for each event, in the Engine's order.
	OnEvent(Event)
	// OnResync is called after each (re)connection of the event stream,
	// before any event from it: events from while the Watcher was not
	// listening are lost, so the handler reconciles its containers with
	// what Inspect says now.
	OnResync()
}

// Default reconnection backoff of a Watcher.
const (
	DefaultBackoff    = 500 * time.Millisecond
	DefaultMaxBackoff = 10 * time.Second
)

// Watcher follows the Engine's container events across Engine outages and
// restarts.
type Watcher struct {
	Client  Client
	Handler Handler
	Log     *slog.Logger // nil: discard

	// Backoff is the wait before the first reconnection attempt after the
	// stream fails; it doubles after each failed attempt up to MaxBackoff.
	// Each wait is jittered down by up to a quarter. Zero means
	// DefaultBackoff and DefaultMaxBackoff.
	Backoff, MaxBackoff time.Duration
}

// Watch runs a Watcher with the default backoff until ctx ends.
func Watch(ctx context.Context, c Client, log *slog.Logger, h Handler) {
	(&Watcher{Client: c, Handler: h, Log: log}).Run(ctx)
}

// Run opens the event stream, calls OnResync, and delivers events until ctx
// ends, reopening the stream with backoff whenever it fails. An outage is
// logged once at warn level (later failed attempts at debug), and its end
// at info. Run returns when ctx ends, after every goroutine it started
// (and the Client's stream goroutines) has exited.
func (w *Watcher) Run(ctx context.Context) {
	log := w.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	minWait, maxWait := w.Backoff, w.MaxBackoff
	if minWait <= 0 {
		minWait = DefaultBackoff
	}
	if maxWait <= 0 {
		maxWait = DefaultMaxBackoff
	}
	if maxWait < minWait {
		maxWait = minWait
	}

	var (
		down     bool      // in an outage
		downFrom time.Time // when it began
		wait     = minWait
	)
	for ctx.Err() == nil {
		err := w.stream(ctx, func() {
			if down {
				log.Info("docker events resumed", "after", time.Since(downFrom).Round(time.Millisecond))
				down = false
			}
			wait = minWait
		})
		if ctx.Err() != nil {
			return
		}
		if !down {
			log.Warn("docker events unavailable, retrying", "err", err)
			down, downFrom = true, time.Now()
		} else {
			log.Debug("docker events still unavailable", "err", err, "retry_in", wait)
		}
		if !sleep(ctx, jitter(wait)) {
			return
		}
		wait = min(2*wait, maxWait)
	}
}

// stream runs one event stream: it opens it, calls up and OnResync when it
// is open, and delivers events until it fails. It returns the stream's
// error after the stream's goroutines have exited.
func (w *Watcher) stream(ctx context.Context, up func()) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	evs, errc := w.Client.Events(ctx)
	defer func() {
		// Wait for the Client to let go: it closes evs as it finishes.
		cancel()
		for range evs {
		}
	}()
	select {
	case err := <-errc:
		return err
	default:
	}
	up()
	w.Handler.OnResync()
	for {
		select {
		case ev, ok := <-evs:
			if !ok {
				return <-errc
			}
			if ctx.Err() != nil {
				return ctx.Err()
			}
			w.Handler.OnEvent(ev)
		case err := <-errc:
			return err
		}
	}
}

// jitter returns d less a random part of up to a quarter of d, so that
// routers that lost the same Engine do not retry in lockstep.
func jitter(d time.Duration) time.Duration {
	if d < 4 {
		return d
	}
	return d - rand.N(d/4)
}

// sleep waits for d or until ctx ends, and reports whether d passed.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
