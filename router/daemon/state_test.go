package daemon

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestStateIdentity(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "state")
	s, err := OpenState(dir)
	if err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(dir); err != nil || fi.Mode().Perm() != 0o700 {
		t.Fatalf("state dir mode: %v %v", fi, err)
	}
	first, err := s.Identity("")
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, identityFile)
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("identity key mode: %v %v", fi, err)
	}
	again, err := s.Identity("")
	if err != nil || again.Public() != first.Public() {
		t.Fatalf("second start: %v; want the stored key", err)
	}
	if k, err := s.Identity(first.Name().String()); err != nil || k.Name() != first.Name() {
		t.Fatalf("--name of our own key: %v", err)
	}
	if _, err := s.Identity("0a:00:00:00:00:07"); err == nil || !strings.Contains(err.Error(), "derived from keys") {
		t.Fatalf("--name of another key: %v", err)
	}
	if _, err := s.Identity("bogus"); err == nil {
		t.Fatal("bad --name accepted")
	}
	os.Chmod(path, 0o644)
	if _, err := s.Identity(""); err == nil || !strings.Contains(err.Error(), "chmod 600") {
		t.Fatalf("world-readable key: %v", err)
	}
	os.Chmod(path, 0o600)
	os.WriteFile(path, []byte("garbage\n"), 0o600)
	if _, err := s.Identity(""); err == nil {
		t.Fatal("corrupt identity key accepted")
	}
}

func TestStateTargets(t *testing.T) {
	s, err := OpenState(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if got, err := s.Targets(); err != nil || len(got) != 0 {
		t.Fatalf("fresh: %v, %v", got, err)
	}
	want := []string{"10.0.0.1:6783", "h2:6783"}
	if err := s.SetTargets(want); err != nil {
		t.Fatal(err)
	}
	if got, err := s.Targets(); err != nil || !slices.Equal(got, want) {
		t.Fatalf("got %v, %v; want %v", got, err, want)
	}
	if err := s.SetTargets(nil); err != nil {
		t.Fatal(err)
	}
	if got, err := s.Targets(); err != nil || len(got) != 0 {
		t.Fatalf("cleared: %v, %v", got, err)
	}
	entries, _ := os.ReadDir(s.Dir())
	if len(entries) != 1 {
		t.Errorf("state dir has %d entries (temp files left?)", len(entries))
	}
}

func TestPasswordSource(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "pw")
	os.WriteFile(file, []byte("s3cret\n"), 0o600)
	empty := filepath.Join(dir, "empty")
	os.WriteFile(empty, []byte("\n"), 0o600)
	tests := []struct {
		name    string
		src     PasswordSource
		want    []byte
		wantErr bool
	}{
		{"none", PasswordSource{}, nil, false},
		{"env", PasswordSource{Env: "e"}, []byte("e"), false},
		{"file beats env", PasswordSource{File: file, Env: "e"}, []byte("s3cret"), false},
		{"flag beats env", PasswordSource{Flag: "f", FlagSet: true, Env: "e"}, []byte("f"), false},
		{"flag and file", PasswordSource{Flag: "f", FlagSet: true, File: file}, nil, true},
		{"empty flag", PasswordSource{FlagSet: true}, nil, true},
		{"missing file", PasswordSource{File: filepath.Join(dir, "nope")}, nil, true},
		{"empty file", PasswordSource{File: empty}, nil, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.src.Password()
			if (err != nil) != tt.wantErr || !bytes.Equal(got, tt.want) {
				t.Fatalf("got %q, %v; want %q, err=%v", got, err, tt.want, tt.wantErr)
			}
			if err != nil && !errors.Is(err, ErrBadConfig) {
				t.Errorf("err %v does not wrap ErrBadConfig", err)
			}
		})
	}
}

func TestReadPasswordFD(t *testing.T) {
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	w.Write([]byte("pipe pw"))
	w.Close()
	fd, err := dupFD(r)
	r.Close()
	if err != nil {
		t.Fatal(err)
	}
	got, err := ReadPasswordFD(fd)
	if err != nil || string(got) != "pipe pw" {
		t.Fatalf("got %q, %v", got, err)
	}
}

func TestPIDLock(t *testing.T) {
	path := filepath.Join(t.TempDir(), "weave.pid")
	if held, _ := LockHolder(path); held {
		t.Fatal("held before anyone locked")
	}
	l, err := AcquirePIDLock(path)
	if err != nil {
		t.Fatal(err)
	}
	held, pid := LockHolder(path)
	if !held || pid != os.Getpid() {
		t.Fatalf("holder = %v, %d; want us (%d)", held, pid, os.Getpid())
	}
	_, err = AcquirePIDLock(path)
	var re *RunningError
	if !errors.As(err, &re) || re.PID != os.Getpid() || !errors.Is(err, ErrRunning) {
		t.Fatalf("second lock: err = %v, want RunningError with our pid", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	if err := WaitUnlocked(ctx, path); err == nil {
		t.Fatal("WaitUnlocked returned while locked")
	}
	cancel()
	l.Release()
	l.Release() // idempotent
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Errorf("pid file left after release: %v", err)
	}
	if err := WaitUnlocked(context.Background(), path); err != nil {
		t.Fatal(err)
	}
	// A stale pid file (killed daemon: content but no lock) does not block.
	os.WriteFile(path, []byte("999999\n"), 0o644)
	l, err = AcquirePIDLock(path)
	if err != nil {
		t.Fatalf("stale pid file blocked the lock: %v", err)
	}
	l.Release()
}
