package docker

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/events"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/client"
)

var _ Client = (*Engine)(nil)

// Engine is the Client of a real Docker Engine. It is safe for concurrent
// use.
type Engine struct {
	cli *client.Client
	log *slog.Logger

	// dialErr is the error of the most recent failed dial, nil after a
	// good one. The docker client replaces dial errors with a message
	// that drops the cause ("no such file" or "connection refused"); we
	// keep it to say why the Engine is unreachable. Under concurrent calls
	// it may be another call's error, which is as true.
	dialErr atomic.Pointer[error]
}

// New returns an Engine for the Engine that the environment names, as the
// docker CLI finds it: DOCKER_HOST (default unix:///var/run/docker.sock),
// DOCKER_TLS_VERIFY, DOCKER_CERT_PATH, DOCKER_API_VERSION. The API version
// is negotiated on first use, so New succeeds while the Engine is down;
// calls then fail with ErrUnavailable until it is up. It fails only on a
// malformed environment.
func New(log *slog.Logger) (*Engine, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	e := &Engine{log: log}
	cli, err := client.NewClientWithOpts(client.FromEnv, client.WithAPIVersionNegotiation(), e.recordDialErrors)
	if err != nil {
		return nil, fmt.Errorf("docker client: %w", err)
	}
	e.cli = cli
	log.Debug("docker client", "addr", cli.DaemonHost())
	return e, nil
}

// recordDialErrors is a client option, applied after FromEnv has set up
// the transport, that wraps the transport's dialer to keep dial errors.
func (e *Engine) recordDialErrors(c *client.Client) error {
	tr, ok := c.HTTPClient().Transport.(*http.Transport)
	if !ok || tr.DialContext == nil {
		return nil // only the error messages get poorer
	}
	dial := tr.DialContext
	tr.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
		conn, err := dial(ctx, network, addr)
		if err != nil {
			e.dialErr.Store(&err)
		} else {
			e.dialErr.Store(nil)
		}
		return conn, err
	}
	return nil
}

// Addr is the Engine's address, e.g. unix:///var/run/docker.sock.
func (e *Engine) Addr() string { return e.cli.DaemonHost() }

// Close releases idle connections. Streams from Events end with their
// contexts, not with Close.
func (e *Engine) Close() error { return e.cli.Close() }

// Inspect implements Client.
func (e *Engine) Inspect(ctx context.Context, ref string) (Container, error) {
	r, err := e.cli.ContainerInspect(ctx, ref)
	if err != nil {
		return Container{}, e.wrap(ctx, "inspect "+ref, err)
	}
	c := Container{ID: r.ID, Name: strings.TrimPrefix(r.Name, "/"), ResolvConfPath: r.ResolvConfPath}
	if r.HostConfig != nil && len(r.HostConfig.DNS) > 0 {
		c.DNS = slices.Clone(r.HostConfig.DNS)
	}
	if r.State != nil {
		c.Running = r.State.Running
		if c.Running {
			c.PID = r.State.Pid
		}
	}
	if r.Config != nil {
		c.Hostname = r.Config.Hostname
		c.Domainname = r.Config.Domainname
		c.Image = r.Config.Image
	}
	return c, nil
}

// Ping implements Client.
func (e *Engine) Ping(ctx context.Context) error { return e.ping(ctx, "ping docker") }

func (e *Engine) ping(ctx context.Context, op string) error {
	if _, err := e.cli.Ping(ctx); err != nil {
		return e.wrap(ctx, op, err)
	}
	return nil
}

// Remove implements Client.
func (e *Engine) Remove(ctx context.Context, id string) error {
	err := e.cli.ContainerRemove(ctx, id, container.RemoveOptions{Force: true})
	if err != nil {
		return e.wrap(ctx, "remove "+ShortID(id), err)
	}
	return nil
}

// Events implements Client. It pings first, so that an Engine that is
// down is reported before Events returns, as Client requires.
func (e *Engine) Events(ctx context.Context) (<-chan Event, <-chan error) {
	out := make(chan Event)
	errc := make(chan error, 1)
	if err := e.ping(ctx, "docker events"); err != nil {
		errc <- err
		close(out)
		close(errc)
		return out, errc
	}
	ctx, cancel := context.WithCancel(ctx)
	msgs, derrs := e.cli.Events(ctx, events.ListOptions{Filters: filters.NewArgs(
		filters.Arg("type", string(events.ContainerEventType)),
		filters.Arg("event", ActionStart),
		filters.Arg("event", ActionDie),
		filters.Arg("event", ActionDestroy),
	)})
	go func() {
		err := e.forward(ctx, msgs, derrs, out)
		// The client's goroutine closes derrs as it returns: wait for it,
		// so that no goroutine outlives the closing of out.
		cancel()
		for range derrs {
		}
		errc <- err
		close(out)
		close(errc)
	}()
	return out, errc
}

// forward copies container events from msgs to out until the stream fails
// or ctx ends, and returns the mapped error.
func (e *Engine) forward(ctx context.Context, msgs <-chan events.Message, derrs <-chan error, out chan<- Event) error {
	for {
		select {
		case m := <-msgs:
			ev, ok := eventOf(m)
			if !ok {
				continue
			}
			select {
			case out <- ev:
			case <-ctx.Done():
				return ctx.Err()
			}
		case err, ok := <-derrs:
			if !ok {
				err = io.EOF
			}
			if ctx.Err() != nil {
				return ctx.Err()
			}
			if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
				// The Engine closed the stream: it is stopping.
				return fmt.Errorf("docker events: %w", &unavailableError{addr: e.Addr(), cause: errors.New("event stream closed")})
			}
			return e.wrap(ctx, "docker events", err)
		}
	}
}

// eventOf converts a container start, die or destroy message.
func eventOf(m events.Message) (Event, bool) {
	if m.Type != events.ContainerEventType {
		return Event{}, false
	}
	switch a := string(m.Action); a {
	case ActionStart, ActionDie, ActionDestroy:
		t := time.Unix(0, m.TimeNano)
		if m.TimeNano == 0 {
			t = time.Unix(m.Time, 0)
		}
		return Event{Action: a, ID: m.Actor.ID, Time: t}, true
	}
	return Event{}, false
}

// wrap maps an error of the docker client to ours, prefixed with op.
func (e *Engine) wrap(ctx context.Context, op string, err error) error {
	var dialErr error
	if p := e.dialErr.Load(); p != nil {
		dialErr = *p
	}
	return mapError(ctx, e.Addr(), dialErr, op, err)
}

// mapError is the pure part of wrap: connection failures become
// ErrUnavailable (saying where, and why when dialErr knows), not-found
// becomes ErrNotFound, and daemon errors lose their "Error response from
// daemon" prefix. The result is one line.
func mapError(ctx context.Context, addr string, dialErr error, op string, err error) error {
	switch {
	case ctx.Err() != nil && (errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)):
		return fmt.Errorf("%s: %w", op, err)
	case client.IsErrConnectionFailed(err):
		cause := dialErr
		if cause == nil {
			cause = err
		}
		return fmt.Errorf("%s: %w", op, &unavailableError{addr: addr, cause: cause})
	case cerrdefs.IsNotFound(err):
		return fmt.Errorf("%s: %w", op, ErrNotFound)
	}
	var opErr *net.OpError
	if errors.As(err, &opErr) && opErr.Op == "dial" {
		return fmt.Errorf("%s: %w", op, &unavailableError{addr: addr, cause: err})
	}
	return fmt.Errorf("%s: %w", op, &daemonError{err: err})
}

// unavailableError is ErrUnavailable with the Engine's address and the
// reason.
type unavailableError struct {
	addr  string
	cause error
}

func (e *unavailableError) Error() string {
	return fmt.Sprintf("%v at %s: %s", ErrUnavailable, e.addr, oneLine(e.cause.Error()))
}

func (e *unavailableError) Is(target error) bool { return target == ErrUnavailable }
func (e *unavailableError) Unwrap() error        { return e.cause }

// daemonError is an error from the docker client shown on one line and
// without its "Error response from daemon: " prefix; errdefs checks still
// see the original.
type daemonError struct{ err error }

func (e *daemonError) Error() string {
	return oneLine(strings.TrimPrefix(e.err.Error(), "Error response from daemon: "))
}

func (e *daemonError) Unwrap() error { return e.err }

// oneLine joins the lines of s with "; ".
func oneLine(s string) string {
	var parts []string
	for _, l := range strings.Split(s, "\n") {
		if l = strings.TrimSpace(l); l != "" {
			parts = append(parts, l)
		}
	}
	return strings.Join(parts, "; ")
}
