package docker_test

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/docker/docker/api/types/events"

	"github.com/weavelab/weave/router/docker"
)

// fakeEngine serves the two endpoints that Events uses on a unix socket:
// /_ping, and /events, which sends the messages of one element of streams
// per request and then closes the stream, as an Engine that stops does.
type fakeEngine struct {
	t       *testing.T
	streams chan []events.Message
}

func (f *fakeEngine) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch {
	case r.URL.Path == "/_ping":
		w.Header().Set("Api-Version", "1.41")
		w.Write([]byte("OK"))
	case strings.HasSuffix(r.URL.Path, "/events"):
		filters := r.URL.Query().Get("filters")
		for _, want := range []string{`"type":{"container":true}`, `"start":true`, `"die":true`, `"destroy":true`} {
			if !strings.Contains(filters, want) {
				f.t.Errorf("events filters %s lack %s", filters, want)
			}
		}
		// An Engine answers at once and sends events as they happen.
		w.WriteHeader(http.StatusOK)
		w.(http.Flusher).Flush()
		var msgs []events.Message
		select {
		case msgs = <-f.streams:
		case <-r.Context().Done():
			return
		}
		enc := json.NewEncoder(w)
		for _, m := range msgs {
			enc.Encode(m)
			w.(http.Flusher).Flush()
		}
	default:
		http.NotFound(w, r)
	}
}

// startFakeEngine serves a fakeEngine and points DOCKER_HOST at it.
func startFakeEngine(t *testing.T) (*fakeEngine, string) {
	sock := filepath.Join(t.TempDir(), "docker.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	f := &fakeEngine{t: t, streams: make(chan []events.Message, 10)}
	srv := &http.Server{Handler: f}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	host := "unix://" + sock
	t.Setenv("DOCKER_HOST", host)
	return f, host
}

func msg(typ events.Type, action, id string) events.Message {
	return events.Message{Type: typ, Action: events.Action(action), Actor: events.Actor{ID: id}, TimeNano: time.Now().UnixNano()}
}

// TestEngineEvents runs Engine.Events over a stream that an Engine closes:
// container start/die/destroy come through in order, anything else is
// dropped, and the close ends the stream with ErrUnavailable.
func TestEngineEvents(t *testing.T) {
	f, host := startFakeEngine(t)
	e, err := docker.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	f.streams <- []events.Message{
		msg(events.ContainerEventType, "create", id1),
		msg(events.ContainerEventType, "start", id1),
		msg(events.ImageEventType, "pull", "busybox"),
		msg(events.ContainerEventType, "exec_start: sh", id1),
		msg(events.NetworkEventType, "connect", id2),
		msg(events.ContainerEventType, "die", id1),
		msg(events.ContainerEventType, "destroy", id1),
	}
	evs, errc := e.Events(context.Background())
	var got []string
	for ev := range evs {
		if ev.ID != id1 || time.Since(ev.Time).Abs() > time.Minute {
			t.Errorf("event %+v", ev)
		}
		got = append(got, ev.Action)
	}
	if strings.Join(got, " ") != "start die destroy" {
		t.Errorf("events %v, want start die destroy", got)
	}
	err = <-errc
	if want := "docker events: docker is not reachable at " + host + ": event stream closed"; !errors.Is(err, docker.ErrUnavailable) || err.Error() != want {
		t.Errorf("stream ended with\n %v, want\n %s", err, want)
	}
}

// TestWatchEngine runs a Watcher over an Engine whose event stream breaks
// twice: each break is followed by a reconnection and an OnResync, and no
// event is lost from the streams themselves.
func TestWatchEngine(t *testing.T) {
	f, _ := startFakeEngine(t)
	e, err := docker.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	f.streams <- []events.Message{msg(events.ContainerEventType, "start", id1)}
	f.streams <- []events.Message{msg(events.ContainerEventType, "die", id1)}
	f.streams <- []events.Message{msg(events.ContainerEventType, "destroy", id1)}
	r := newRecorder()
	stop := startWatcher(t, e, r, nil, time.Millisecond)
	for _, want := range []string{"start", "die", "destroy"} {
		r.waitResync(t)
		if ev := r.waitEvent(t); ev.Action != want {
			t.Errorf("event %s, want %s", ev.Action, want)
		}
	}
	r.waitResync(t) // the fourth stream, which stays open
	stop()
}
