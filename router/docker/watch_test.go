package docker_test

import (
	"context"
	"log/slog"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/weavelab/weave/router/docker"
	"github.com/weavelab/weave/router/docker/dockertest"
)

// recorder is a Handler that hands what it sees to the test.
type recorder struct {
	events  chan docker.Event
	resyncs chan struct{}
}

func newRecorder() *recorder {
	return &recorder{events: make(chan docker.Event, 100), resyncs: make(chan struct{}, 100)}
}

func (r *recorder) OnEvent(ev docker.Event) { r.events <- ev }
func (r *recorder) OnResync()               { r.resyncs <- struct{}{} }

func (r *recorder) waitResync(t *testing.T) {
	t.Helper()
	select {
	case <-r.resyncs:
	case <-time.After(10 * time.Second):
		t.Fatal("no OnResync")
	}
}

func (r *recorder) waitEvent(t *testing.T) docker.Event {
	t.Helper()
	select {
	case ev := <-r.events:
		return ev
	case <-time.After(10 * time.Second):
		t.Fatal("no event")
		return docker.Event{}
	}
}

// logRecords is a slog.Handler that keeps records for the test.
type logRecords struct {
	mu      sync.Mutex
	records []slog.Record
}

func (l *logRecords) Enabled(context.Context, slog.Level) bool { return true }
func (l *logRecords) WithAttrs([]slog.Attr) slog.Handler       { return l }
func (l *logRecords) WithGroup(string) slog.Handler            { return l }
func (l *logRecords) Handle(_ context.Context, r slog.Record) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.records = append(l.records, r)
	return nil
}

// count returns how many records of level have the message.
func (l *logRecords) count(level slog.Level, msg string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, r := range l.records {
		if r.Level == level && r.Message == msg {
			n++
		}
	}
	return n
}

// startWatcher runs a Watcher over c in a goroutine; the returned stop
// cancels it and waits for Run to return, failing the test if it hangs.
func startWatcher(t *testing.T, c docker.Client, h docker.Handler, log *slog.Logger, backoff time.Duration) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	w := &docker.Watcher{Client: c, Handler: h, Log: log, Backoff: backoff, MaxBackoff: 4 * backoff}
	go func() {
		defer close(done)
		w.Run(ctx)
	}()
	stop = func() {
		cancel()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Fatal("Watcher.Run did not return after cancel")
		}
	}
	t.Cleanup(stop)
	return stop
}

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("gave up waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

func TestWatchDeliversEventsInOrder(t *testing.T) {
	defer goleak.VerifyNone(t)
	f := dockertest.New()
	f.Put(docker.Container{ID: id1, Name: "db"})
	f.Put(docker.Container{ID: id2, Name: "web"})
	r := newRecorder()
	stop := startWatcher(t, f, r, nil, time.Millisecond)
	r.waitResync(t)

	f.Start(id1, 100)
	f.Start(id2, 200)
	f.Die(id1)
	f.Destroy(id2) // running: die, then destroy
	f.Destroy(id1)
	want := []docker.Event{
		{Action: "start", ID: id1}, {Action: "start", ID: id2}, {Action: "die", ID: id1},
		{Action: "die", ID: id2}, {Action: "destroy", ID: id2}, {Action: "destroy", ID: id1},
	}
	var last time.Time
	for i, w := range want {
		ev := r.waitEvent(t)
		if ev.Action != w.Action || ev.ID != w.ID {
			t.Fatalf("event %d = %s %s, want %s %s", i, ev.Action, docker.ShortID(ev.ID), w.Action, docker.ShortID(w.ID))
		}
		if ev.Time.Before(last) {
			t.Errorf("event %d goes back in time", i)
		}
		last = ev.Time
	}
	stop()
	if n := len(r.resyncs); n != 0 {
		t.Errorf("%d extra OnResync without an outage", n)
	}
	if n := f.Streams(); n != 0 {
		t.Errorf("%d streams still open after Run returned", n)
	}
}

// TestWatchReconnects takes the Engine down while the Watcher listens,
// keeps it down for several failed attempts, and brings it back: the
// outage is logged once, the return once, OnResync comes again, and events
// flow on the new stream.
func TestWatchReconnects(t *testing.T) {
	defer goleak.VerifyNone(t)
	f := dockertest.New()
	f.Put(docker.Container{ID: id1, Name: "db"})
	r := newRecorder()
	logs := &logRecords{}
	stop := startWatcher(t, f, r, slog.New(logs), time.Millisecond)
	r.waitResync(t)

	for outage := 1; outage <= 2; outage++ {
		calls := f.EventsCalls()
		f.SetUnavailable(true)
		waitUntil(t, "three failed reconnections", func() bool { return f.EventsCalls() >= calls+3 })
		f.Put(docker.Container{ID: id2, Name: "web"}) // changed while not listening
		f.SetUnavailable(false)
		r.waitResync(t)

		f.Start(id1, 100)
		if ev := r.waitEvent(t); ev.Action != "start" || ev.ID != id1 {
			t.Fatalf("after outage %d: event %s %s, want start of db", outage, ev.Action, docker.ShortID(ev.ID))
		}
		f.Die(id1)
		r.waitEvent(t)
		if got := logs.count(slog.LevelWarn, "docker events unavailable, retrying"); got != outage {
			t.Errorf("after outage %d: %d warnings, want one per outage", outage, got)
		}
		if got := logs.count(slog.LevelInfo, "docker events resumed"); got != outage {
			t.Errorf("after outage %d: %d resumed lines, want one per outage", outage, got)
		}
		if got := logs.count(slog.LevelDebug, "docker events still unavailable"); got < 2*outage {
			t.Errorf("after outage %d: %d debug lines for failed retries, want at least %d", outage, got, 2*outage)
		}
	}
	stop()
}

// TestWatchDownAtStart starts the Watcher while the Engine is down: no
// OnResync until it is up, then one.
func TestWatchDownAtStart(t *testing.T) {
	defer goleak.VerifyNone(t)
	f := dockertest.New()
	f.SetUnavailable(true)
	r := newRecorder()
	logs := &logRecords{}
	stop := startWatcher(t, f, r, slog.New(logs), time.Millisecond)
	waitUntil(t, "two failed attempts", func() bool { return f.EventsCalls() >= 2 })
	if len(r.resyncs) != 0 {
		t.Fatal("OnResync while the Engine is down")
	}
	f.SetUnavailable(false)
	r.waitResync(t)
	stop()
	if got := logs.count(slog.LevelWarn, "docker events unavailable, retrying"); got != 1 {
		t.Errorf("%d warnings, want 1", got)
	}
}

// TestWatchExitsOnCancel cancels the Watcher while it listens, while it
// waits out a long backoff, and while a handler holds an event back.
func TestWatchExitsOnCancel(t *testing.T) {
	defer goleak.VerifyNone(t)
	t.Run("listening", func(t *testing.T) {
		f := dockertest.New()
		r := newRecorder()
		stop := startWatcher(t, f, r, nil, time.Hour)
		r.waitResync(t)
		stop()
	})
	t.Run("backing off", func(t *testing.T) {
		f := dockertest.New()
		f.SetUnavailable(true)
		stop := startWatcher(t, f, newRecorder(), nil, time.Hour)
		waitUntil(t, "the first attempt", func() bool { return f.EventsCalls() >= 1 })
		stop()
		if n := f.EventsCalls(); n != 1 {
			t.Errorf("%d attempts within an hour's backoff", n)
		}
	})
	t.Run("undelivered events", func(t *testing.T) {
		f := dockertest.New()
		f.Put(docker.Container{ID: id1, Name: "db"})
		r := &recorder{events: make(chan docker.Event), resyncs: make(chan struct{}, 1)} // nobody reads events
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() {
			defer close(done)
			docker.Watch(ctx, f, nil, blockingHandler{r, ctx})
		}()
		r.waitResync(t)
		f.Start(id1, 1)
		f.Die(id1)
		cancel()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Fatal("Watch did not return after cancel")
		}
	})
}

// blockingHandler blocks in OnEvent until ctx ends, like a handler stuck
// on a reply from a router that is shutting down.
type blockingHandler struct {
	r   *recorder
	ctx context.Context
}

func (b blockingHandler) OnEvent(ev docker.Event) {
	select {
	case b.r.events <- ev:
	case <-b.ctx.Done():
	}
}
func (b blockingHandler) OnResync() { b.r.OnResync() }
