// Package docker owns the router's view of the Docker Engine: resolving
// container names and IDs to what the router needs (Container), following
// container lifecycle events (Events, Watch), and handing `weave run` over
// to the docker CLI (Run).
//
// Code that needs the Engine takes a Client, so tests run it over
// dockertest.Fake; *Engine is the real one.
package docker

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Container is what the router needs of one Docker container.
type Container struct {
	ID         string // full 64-hex ID
	Name       string // without the leading "/"
	PID        int    // init process pid, 0 when not running
	Running    bool
	Hostname   string
	Domainname string
	// ResolvConfPath is the container's resolv.conf, as a path on the
	// host (Docker bind-mounts it into the container).
	ResolvConfPath string
	// DNS are the name servers the user gave (docker run --dns).
	DNS   []string
	Image string // the image as the user named it (Config.Image)
}

// NetnsPath returns /proc/PID/ns/net of the container's init process, or an
// error wrapping ErrNotRunning when it has none. The path is only good while
// that process lives: a caller must open it before the container can exit
// and restart under a new pid.
func (c Container) NetnsPath() (string, error) {
	if !c.Running || c.PID <= 0 {
		return "", fmt.Errorf("container %s: %w", c.label(), ErrNotRunning)
	}
	return "/proc/" + strconv.Itoa(c.PID) + "/ns/net", nil
}

// label names the container in errors: its name, else its short ID.
func (c Container) label() string {
	if c.Name != "" {
		return c.Name
	}
	return ShortID(c.ID)
}

// Event actions that Events delivers.
const (
	ActionStart   = "start"
	ActionDie     = "die"
	ActionDestroy = "destroy"
)

// Event is one container lifecycle event.
type Event struct {
	Action string // ActionStart, ActionDie or ActionDestroy (others are filtered out)
	ID     string // full ID
	Time   time.Time
}

// Client is the part of the Engine API the router uses; *Engine implements
// it and dockertest.Fake fakes it. Implementations are safe for concurrent
// use. Errors wrap ErrUnavailable, ErrNotFound or ErrNotRunning where those
// apply, so callers test them with errors.Is.
type Client interface {
	// Inspect resolves a name (with or without the leading "/"), a full
	// ID or a unique ID prefix. A stopped container is no error: it comes
	// back with Running false.
	Inspect(ctx context.Context, ref string) (Container, error)

	// Events streams container start, die and destroy events. It returns
	// once the stream is open or has failed; when the Engine could not be
	// reached the error is already waiting on the error channel, so a
	// caller can tell a failed connection from an open stream without
	// waiting. When the stream ends (Engine gone, or ctx done, which gives
	// ctx.Err()) exactly one error is sent on the error channel and then
	// both channels are closed, after which the Client's goroutines for
	// the stream return without blocking. The event channel is unbuffered:
	// a slow reader holds the stream back, it loses nothing.
	Events(ctx context.Context) (<-chan Event, <-chan error)

	// Ping checks that the Engine answers.
	Ping(ctx context.Context) error

	// Remove force-removes a container (stopping it first if it runs);
	// used to undo a failed `weave run`.
	Remove(ctx context.Context, id string) error
}

var (
	// ErrUnavailable means the Engine could not be reached. Errors wrapping
	// it say where: "docker is not reachable at unix:///var/run/docker.sock: ...".
	ErrUnavailable = errors.New("docker is not reachable")
	// ErrNotFound means the Engine has no such container.
	ErrNotFound = errors.New("no such container")
	// ErrNotRunning means the container exists but is not running.
	ErrNotRunning = errors.New("container is not running")
)

// ShortID returns the first 12 characters of a container ID, as docker
// shows it; shorter strings come back whole.
func ShortID(id string) string {
	if len(id) > 12 {
		return id[:12]
	}
	return id
}

// IsFullID reports whether s is a full container ID: 64 lowercase hex digits.
func IsFullID(s string) bool {
	if len(s) != 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// FQDN returns the container's fully qualified host name: its hostname if
// that has a dot, else hostname.domainname, else "" (a bare hostname is no
// DNS name).
func (c Container) FQDN() string {
	switch {
	case strings.Contains(c.Hostname, "."):
		return c.Hostname
	case c.Hostname != "" && c.Domainname != "":
		return c.Hostname + "." + c.Domainname
	}
	return ""
}
