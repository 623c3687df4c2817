package docker_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/weavelab/weave/router/docker"
	"github.com/weavelab/weave/test/harness"
)

// newEngine returns an Engine for the machine's Docker Engine, failing the
// test when there is none.
func newEngine(t *testing.T) *docker.Engine {
	t.Helper()
	e, err := docker.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := e.Ping(ctx); err != nil {
		t.Fatalf("this test needs a running Docker Engine: %v", err)
	}
	return e
}

// nextEvent returns the next event of container id, skipping other
// containers' (other tests may run containers meanwhile).
func nextEvent(t *testing.T, evs <-chan docker.Event, errc <-chan error, id string) docker.Event {
	t.Helper()
	timeout := time.After(30 * time.Second)
	for {
		select {
		case ev, ok := <-evs:
			if !ok {
				t.Fatalf("event stream ended: %v", <-errc)
			}
			if ev.ID == id {
				return ev
			}
		case <-timeout:
			t.Fatalf("no event for %s", docker.ShortID(id))
		}
	}
}

// TestEngine runs the Engine client against the machine's Docker Engine:
// lookups, events of a container of the test image from start to
// destroy, a container that has exited, and `docker run` failures.
func TestEngine(t *testing.T) {
	e := newEngine(t)
	img := harness.DockerImage(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	prefix := fmt.Sprintf("weave-test-engine-%d-", os.Getpid())

	t.Run("not found", func(t *testing.T) {
		ref := prefix + "nosuch"
		_, err := e.Inspect(ctx, ref)
		if !errors.Is(err, docker.ErrNotFound) || err.Error() != "inspect "+ref+": no such container" {
			t.Errorf("Inspect(%q): %v, want ErrNotFound", ref, err)
		}
	})

	t.Run("lifecycle", func(t *testing.T) {
		sctx, stop := context.WithCancel(ctx)
		defer stop()
		evs, errc := e.Events(sctx)
		select {
		case err := <-errc:
			t.Fatalf("Events: %v", err)
		default:
		}
		name := prefix + "sleep"
		id, err := docker.Run(ctx, nil, []string{"--name", name, img, "sleep"})
		if id != "" {
			t.Cleanup(func() { harness.RemoveContainer(t, id) })
		}
		if err != nil {
			t.Fatal(err)
		}
		if ev := nextEvent(t, evs, errc, id); ev.Action != docker.ActionStart || time.Since(ev.Time).Abs() > time.Minute {
			t.Errorf("first event %+v, want a recent start", ev)
		}

		c, err := e.Inspect(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		want := docker.Container{ID: id, Name: name, PID: c.PID, Running: true, Hostname: docker.ShortID(id), Image: img, ResolvConfPath: c.ResolvConfPath}
		if !reflect.DeepEqual(c, want) || c.PID <= 0 || !strings.HasSuffix(c.ResolvConfPath, "/resolv.conf") {
			t.Errorf("Inspect(%s) = %+v, want %+v with a pid", name, c, want)
		}
		if c2, err := e.Inspect(ctx, docker.ShortID(id)); err != nil || c2.ID != id {
			t.Errorf("Inspect by short ID: %+v, %v", c2, err)
		}
		if c2, err := e.Inspect(ctx, "/"+name); err != nil || c2.ID != id {
			t.Errorf("Inspect by /name: %+v, %v", c2, err)
		}
		p, err := c.NetnsPath()
		if err != nil {
			t.Fatal(err)
		}
		if _, err := os.Stat(p); err != nil {
			t.Errorf("netns of a running container: %v", err)
		}

		if err := e.Remove(ctx, id); err != nil {
			t.Fatal(err)
		}
		for _, want := range []string{docker.ActionDie, docker.ActionDestroy} {
			if ev := nextEvent(t, evs, errc, id); ev.Action != want {
				t.Errorf("event %s, want %s", ev.Action, want)
			}
		}
		if _, err := e.Inspect(ctx, id); !errors.Is(err, docker.ErrNotFound) {
			t.Errorf("Inspect after Remove: %v", err)
		}
		if err := e.Remove(ctx, id); !errors.Is(err, docker.ErrNotFound) {
			t.Errorf("second Remove: %v", err)
		}

		stop()
		if err := <-errc; !errors.Is(err, context.Canceled) {
			t.Errorf("stream ended with %v, want context.Canceled", err)
		}
		for range evs {
		}
	})

	t.Run("exited", func(t *testing.T) {
		id, err := docker.Run(ctx, nil, []string{img, "probe", "127.0.0.1:1"})
		if id != "" {
			t.Cleanup(func() { harness.RemoveContainer(t, id) })
		}
		if err != nil {
			t.Fatal(err)
		}
		var c docker.Container
		harness.WaitFor(t, 30*time.Second, func() (bool, string) {
			c, err = e.Inspect(ctx, id)
			return err == nil && !c.Running, fmt.Sprintf("%+v, %v", c, err)
		})
		if c.PID != 0 {
			t.Errorf("exited container has pid %d", c.PID)
		}
		if _, err := c.NetnsPath(); !errors.Is(err, docker.ErrNotRunning) {
			t.Errorf("NetnsPath of an exited container: %v", err)
		}
	})

	t.Run("run errors", func(t *testing.T) {
		for _, tc := range []struct {
			name    string
			env     []string
			args    []string
			created bool
			want    string
		}{
			{name: "bad flag", args: []string{"--no-such-flag", img}, want: "docker run: unknown flag: --no-such-flag"},
			{
				name: "no image",
				args: []string{"--pull=never", "weave-test/no-such-image:0"},
				want: "docker run: Error response from daemon: No such image: weave-test/no-such-image:0",
			},
			{
				name:    "cannot start",
				args:    []string{"--entrypoint", "/nonexistent", img},
				created: true,
				want:    "docker run: Error response from daemon: ",
			},
			{
				name: "no engine",
				env:  append(os.Environ(), "DOCKER_HOST=unix:///nonexistent.sock"),
				args: []string{img},
				want: "docker run: Cannot connect to the Docker daemon at unix:///nonexistent.sock. Is the docker daemon running?",
			},
		} {
			t.Run(tc.name, func(t *testing.T) {
				id, err := docker.Run(ctx, tc.env, tc.args)
				if id != "" {
					t.Cleanup(func() { harness.RemoveContainer(t, id) })
				}
				if err == nil || !strings.HasPrefix(err.Error(), tc.want) || strings.Contains(err.Error(), "\n") {
					t.Errorf("error %q, want one line starting %q", err, tc.want)
				}
				if tc.created {
					if !docker.IsFullID(id) {
						t.Fatalf("no ID for the container left behind (%q)", id)
					}
					if c, err := e.Inspect(ctx, id); err != nil || c.Running {
						t.Errorf("container left behind: %+v, %v", c, err)
					}
				} else if id != "" {
					t.Errorf("ID %s returned with %v", id, err)
				}
			})
		}
	})
}

// TestEngineUnreachable points the Engine at sockets where no Engine
// answers: one that does not exist and one that refuses connections. Every
// call fails at once with ErrUnavailable, saying where and why.
func TestEngineUnreachable(t *testing.T) {
	refused := filepath.Join(t.TempDir(), "refused.sock")
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: refused, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	ln.SetUnlinkOnClose(false)
	ln.Close()

	for _, tc := range []struct{ sock, why string }{
		{"/nonexistent.sock", "connect: no such file or directory"},
		{refused, "connect: connection refused"},
	} {
		t.Run(filepath.Base(tc.sock), func(t *testing.T) {
			host := "unix://" + tc.sock
			t.Setenv("DOCKER_HOST", host)
			e, err := docker.New(nil)
			if err != nil {
				t.Fatalf("New with the Engine down: %v", err)
			}
			defer e.Close()
			if e.Addr() != host {
				t.Errorf("Addr() = %s, want %s", e.Addr(), host)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			where := "docker is not reachable at " + host + ": dial unix " + tc.sock + ": " + tc.why

			_, err = e.Inspect(ctx, "db")
			check(t, err, "inspect db: "+where)
			check(t, e.Ping(ctx), "ping docker: "+where)
			check(t, e.Remove(ctx, "0123456789ab"), "remove 0123456789ab: "+where)
			evs, errc := e.Events(ctx)
			select {
			case err := <-errc:
				check(t, err, "docker events: "+where)
			default:
				t.Fatal("Events returned without its error waiting")
			}
			if _, ok := <-evs; ok {
				t.Error("event channel open after the error")
			}
		})
	}
}

func check(t *testing.T, err error, want string) {
	t.Helper()
	if !errors.Is(err, docker.ErrUnavailable) {
		t.Errorf("%v is not ErrUnavailable", err)
	}
	if err == nil || err.Error() != want {
		t.Errorf("error\n %v, want\n %s", err, want)
	}
}
