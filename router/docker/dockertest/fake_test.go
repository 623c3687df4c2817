package dockertest

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/weavelab/weave/router/docker"
)

const (
	idA = "abc1111111111111111111111111111111111111111111111111111111111111"
	idB = "abc2222222222222222222222222222222222222222222222222222222222222"
)

func TestInspect(t *testing.T) {
	f := New()
	f.Put(docker.Container{ID: idA, Name: "db", Hostname: "db"})
	f.Put(docker.Container{ID: idB, Name: "web"})
	ctx := context.Background()
	for _, tc := range []struct {
		ref    string
		wantID string
		is     error
	}{
		{ref: idA, wantID: idA},
		{ref: "db", wantID: idA},
		{ref: "/web", wantID: idB},
		{ref: "abc2", wantID: idB},
		{ref: "abc"}, // ambiguous
		{ref: "nope", is: docker.ErrNotFound},
		{ref: "", is: docker.ErrNotFound},
	} {
		c, err := f.Inspect(ctx, tc.ref)
		switch {
		case tc.wantID != "" && (err != nil || c.ID != tc.wantID):
			t.Errorf("Inspect(%q) = %s, %v; want %s", tc.ref, docker.ShortID(c.ID), err, docker.ShortID(tc.wantID))
		case tc.wantID == "" && err == nil:
			t.Errorf("Inspect(%q) found %s, want an error", tc.ref, docker.ShortID(c.ID))
		case tc.is != nil && !errors.Is(err, tc.is):
			t.Errorf("Inspect(%q): %v, want %v", tc.ref, err, tc.is)
		}
	}
	if _, err := f.Inspect(ctx, "nope"); err == nil || err.Error() != "inspect nope: no such container" {
		t.Errorf("not-found error %q", err)
	}
}

func TestUnavailable(t *testing.T) {
	f := New()
	f.Put(docker.Container{ID: idA, Name: "db"})
	ctx := context.Background()
	f.SetUnavailable(true)
	if _, err := f.Inspect(ctx, "db"); !errors.Is(err, docker.ErrUnavailable) || !strings.Contains(err.Error(), Addr) {
		t.Errorf("Inspect while down: %v", err)
	}
	if err := f.Ping(ctx); !errors.Is(err, docker.ErrUnavailable) {
		t.Errorf("Ping while down: %v", err)
	}
	if err := f.Remove(ctx, idA); !errors.Is(err, docker.ErrUnavailable) {
		t.Errorf("Remove while down: %v", err)
	}
	evs, errc := f.Events(ctx)
	select {
	case err := <-errc:
		if !errors.Is(err, docker.ErrUnavailable) {
			t.Errorf("Events while down: %v", err)
		}
	default:
		t.Fatal("Events while down returned without its error waiting")
	}
	if _, ok := <-evs; ok {
		t.Error("event channel open after the error")
	}
	f.SetUnavailable(false)
	if err := f.Ping(ctx); err != nil {
		t.Errorf("Ping when back: %v", err)
	}
}

// TestStream checks one stream's life: events in order, then the Engine
// going down ends it with one error and closed channels.
func TestStream(t *testing.T) {
	f := New()
	f.Put(docker.Container{ID: idA, Name: "db"})
	evs, errc := f.Events(context.Background())
	if f.Streams() != 1 {
		t.Fatalf("%d streams open", f.Streams())
	}
	f.Start(idA, 7)
	if c, _ := f.Inspect(context.Background(), "db"); !c.Running || c.PID != 7 {
		t.Errorf("after Start: %+v", c)
	}
	if err := f.Remove(context.Background(), "db"); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"start", "die", "destroy"} {
		select {
		case ev := <-evs:
			if ev.Action != want || ev.ID != idA {
				t.Fatalf("event %s %s, want %s", ev.Action, docker.ShortID(ev.ID), want)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("no %s event", want)
		}
	}
	if got := f.Removed(); len(got) != 1 || got[0] != idA {
		t.Errorf("Removed() = %v", got)
	}
	f.Emit("start", idB) // queued, then lost with the stream
	f.SetUnavailable(true)
	err := <-errc
	if !errors.Is(err, docker.ErrUnavailable) {
		t.Errorf("stream ended with %v", err)
	}
	for ev := range evs {
		t.Errorf("event %v after the stream failed", ev)
	}
	if _, ok := <-errc; ok {
		t.Error("error channel open after its one error")
	}
	if f.Streams() != 0 {
		t.Errorf("%d streams open after the Engine went down", f.Streams())
	}
}

func TestStreamCancel(t *testing.T) {
	f := New()
	ctx, cancel := context.WithCancel(context.Background())
	evs, errc := f.Events(ctx)
	f.Emit("start", idA) // never read
	cancel()
	if err := <-errc; !errors.Is(err, context.Canceled) {
		t.Errorf("stream ended with %v, want context.Canceled", err)
	}
	for range evs {
	}
}
