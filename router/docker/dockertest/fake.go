// Package dockertest provides an in-memory docker.Client for tests of code
// that follows containers: a table of containers, an event stream the test
// drives, and an Engine that can be made unreachable and brought back.
package dockertest

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/weavelab/weave/router/docker"
)

var _ docker.Client = (*Fake)(nil)

// Addr is the address a Fake's ErrUnavailable errors name.
const Addr = "unix:///fake/docker.sock"

// Fake is an in-memory Engine. It is safe for concurrent use. Its events
// reach every open stream in the order they were emitted; each stream
// queues them without bound, so emitting never blocks.
type Fake struct {
	mu          sync.Mutex
	containers  map[string]docker.Container // by ID
	down        bool
	streams     map[*stream]struct{}
	eventsCalls int
	removed     []string
}

// stream is one open Events stream: a queue, fed under Fake.mu, that its
// goroutine forwards to the reader.
type stream struct {
	queue  []docker.Event // guarded by Fake.mu
	ended  error          // guarded by Fake.mu; set to end the stream
	notify chan struct{}  // capacity 1: queue or ended changed
}

// New returns a Fake that is up and has no containers.
func New() *Fake {
	return &Fake{
		containers: make(map[string]docker.Container),
		streams:    make(map[*stream]struct{}),
	}
}

// Put adds c, or replaces the container with its ID, without an event.
// c.ID must be a full ID (docker.IsFullID); Put panics otherwise, as that
// is a mistake in the test.
func (f *Fake) Put(c docker.Container) {
	if !docker.IsFullID(c.ID) {
		panic(fmt.Sprintf("dockertest: Put of %q: not a full container ID", c.ID))
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.containers[c.ID] = c
}

// Start marks the container running with the given pid and emits "start".
func (f *Fake) Start(id string, pid int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	c, ok := f.containers[id]
	if !ok {
		panic("dockertest: Start of unknown container " + id)
	}
	c.Running, c.PID = true, pid
	f.containers[id] = c
	f.emitLocked(docker.ActionStart, id)
}

// Die marks the container stopped and emits "die".
func (f *Fake) Die(id string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	c, ok := f.containers[id]
	if !ok {
		panic("dockertest: Die of unknown container " + id)
	}
	c.Running, c.PID = false, 0
	f.containers[id] = c
	f.emitLocked(docker.ActionDie, id)
}

// Destroy deletes the container and emits "destroy" (with "die" first if
// it was running).
func (f *Fake) Destroy(id string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.destroyLocked(id)
}

func (f *Fake) destroyLocked(id string) {
	c, ok := f.containers[id]
	if !ok {
		return
	}
	if c.Running {
		f.emitLocked(docker.ActionDie, id)
	}
	delete(f.containers, id)
	f.emitLocked(docker.ActionDestroy, id)
}

// Emit sends an event to every open stream without touching the
// container table.
func (f *Fake) Emit(action, id string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.emitLocked(action, id)
}

// emitLocked queues an event on every open stream; f.mu must be held.
func (f *Fake) emitLocked(action, id string) {
	ev := docker.Event{Action: action, ID: id, Time: time.Now()}
	for s := range f.streams {
		s.queue = append(s.queue, ev)
		s.poke()
	}
}

// SetUnavailable makes the Engine unreachable (true) or brings it back.
// Going down ends every open stream with an error wrapping
// docker.ErrUnavailable; while down every call fails with it.
func (f *Fake) SetUnavailable(down bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.down = down
	if !down {
		return
	}
	for s := range f.streams {
		f.endLocked(s, f.unavailable("docker events"))
	}
}

// Streams returns how many event streams are open.
func (f *Fake) Streams() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.streams)
}

// EventsCalls returns how many times Events was called, failed or not.
func (f *Fake) EventsCalls() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.eventsCalls
}

// Removed returns the IDs that Remove removed, in order.
func (f *Fake) Removed() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.removed...)
}

func (f *Fake) unavailable(op string) error {
	return fmt.Errorf("%s: %w at %s: connect: connection refused", op, docker.ErrUnavailable, Addr)
}

// Inspect implements docker.Client.
func (f *Fake) Inspect(ctx context.Context, ref string) (docker.Container, error) {
	if err := ctx.Err(); err != nil {
		return docker.Container{}, fmt.Errorf("inspect %s: %w", ref, err)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.down {
		return docker.Container{}, f.unavailable("inspect " + ref)
	}
	c, err := f.lookupLocked(ref)
	if err != nil {
		return docker.Container{}, fmt.Errorf("inspect %s: %w", ref, err)
	}
	return c, nil
}

// lookupLocked resolves ref as the Engine does: full ID, then name, then
// unique ID prefix.
func (f *Fake) lookupLocked(ref string) (docker.Container, error) {
	if c, ok := f.containers[ref]; ok {
		return c, nil
	}
	name := strings.TrimPrefix(ref, "/")
	for _, c := range f.containers {
		if c.Name == name {
			return c, nil
		}
	}
	var found []docker.Container
	if ref != "" {
		for id, c := range f.containers {
			if strings.HasPrefix(id, ref) {
				found = append(found, c)
			}
		}
	}
	switch len(found) {
	case 0:
		return docker.Container{}, docker.ErrNotFound
	case 1:
		return found[0], nil
	}
	return docker.Container{}, fmt.Errorf("multiple IDs found with provided prefix: %s", ref)
}

// Ping implements docker.Client.
func (f *Fake) Ping(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("ping docker: %w", err)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.down {
		return f.unavailable("ping docker")
	}
	return nil
}

// Remove implements docker.Client: it destroys the container (emitting
// die and destroy) and records its ID.
func (f *Fake) Remove(ctx context.Context, id string) error {
	op := "remove " + docker.ShortID(id)
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.down {
		return f.unavailable(op)
	}
	c, err := f.lookupLocked(id)
	if err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	f.destroyLocked(c.ID)
	f.removed = append(f.removed, c.ID)
	return nil
}

// Events implements docker.Client.
func (f *Fake) Events(ctx context.Context) (<-chan docker.Event, <-chan error) {
	out := make(chan docker.Event)
	errc := make(chan error, 1)
	f.mu.Lock()
	f.eventsCalls++
	if f.down || ctx.Err() != nil {
		err := f.unavailable("docker events")
		if ctx.Err() != nil {
			err = ctx.Err()
		}
		f.mu.Unlock()
		errc <- err
		close(out)
		close(errc)
		return out, errc
	}
	s := &stream{notify: make(chan struct{}, 1)}
	f.streams[s] = struct{}{}
	f.mu.Unlock()

	go func() {
		err := f.serve(ctx, s, out)
		errc <- err
		close(out)
		close(errc)
	}()
	return out, errc
}

// serve forwards s's queue to out until s is ended or ctx ends.
func (f *Fake) serve(ctx context.Context, s *stream, out chan<- docker.Event) error {
	defer func() {
		f.mu.Lock()
		delete(f.streams, s)
		f.mu.Unlock()
	}()
	for {
		f.mu.Lock()
		if s.ended != nil {
			// Like a broken connection, an ended stream drops what it had
			// not delivered.
			err := s.ended
			f.mu.Unlock()
			return err
		}
		var next *docker.Event
		if len(s.queue) > 0 {
			ev := s.queue[0]
			s.queue = s.queue[1:]
			next = &ev
		}
		f.mu.Unlock()

		if next == nil {
			select {
			case <-s.notify:
			case <-ctx.Done():
				return ctx.Err()
			}
			continue
		}
		select {
		case out <- *next:
		case <-s.notify:
			// Ended while we were offering next: it is lost, like the
			// queue behind it; else put it back.
			f.mu.Lock()
			if s.ended == nil {
				s.queue = append([]docker.Event{*next}, s.queue...)
			}
			f.mu.Unlock()
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// endLocked ends stream s with err; f.mu must be held.
func (f *Fake) endLocked(s *stream, err error) {
	if s.ended == nil {
		s.ended = err
		s.poke()
	}
	delete(f.streams, s)
}

func (s *stream) poke() {
	select {
	case s.notify <- struct{}{}:
	default:
	}
}
