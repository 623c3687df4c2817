package ipam

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// roundTrip saves c's state in dir, loads it and restores it into a fresh
// Core with c's configuration.
func roundTrip(tb testing.TB, c *Core, dir string) *Core {
	tb.Helper()
	if err := saveFile(dir, c.snapshot()); err != nil {
		tb.Fatal(err)
	}
	p, ok, err := loadFile(dir)
	if err != nil || !ok {
		tb.Fatalf("loadFile = %v, %v", ok, err)
	}
	back, err := NewCore(c.cfg)
	if err != nil {
		tb.Fatal(err)
	}
	if err := back.restore(p); err != nil {
		tb.Fatal(err)
	}
	return back
}

func TestPersistRoundTrip(t *testing.T) {
	n := newCoreNet(t, "10.32.0.0/24", 2, 1, 2)
	n.seed()
	c := n.cores[1]
	mustAllocate(t, c, "a", "10.32.0.0/24")
	mustAllocate(t, c, "b", "10.32.0.16/28")
	if err := c.Claim("c", pfx("10.32.0.100/24"), t0); err != nil {
		t.Fatal(err)
	}
	c.Hold("b", t0.Add(time.Minute))
	n.deliver()

	dir := t.TempDir()
	back := roundTrip(t, c, dir)
	if !sameRing(back.Ring(), c.Ring()) {
		t.Errorf("ring\n got  %s\n want %s", ringString(back.Ring()), ringString(c.Ring()))
	}
	if got, want := back.Allocs(), c.Allocs(); !slices.EqualFunc(got, want, sameAlloc) {
		t.Errorf("allocations\n got  %v\n want %v", got, want)
	}
	if back.TakeDirty() || len(back.Flush()) != 0 {
		t.Error("a restored Core has something to save or send")
	}
	// Held addresses keep their deadline across the restart.
	if freed := back.Tick(t0.Add(time.Minute)); len(freed) != 1 || freed[0].ID != "b" {
		t.Errorf("held address after restart: freed %v", freed)
	}
	// The next allocation continues where the old one left off.
	if p := mustAllocate(t, back, "d", "10.32.0.0/24"); p != pfx("10.32.0.2/24") {
		t.Errorf("after restart allocated %s", p)
	}

	// The file is private and nothing temporary is left behind.
	fi, err := os.Stat(filepath.Join(dir, StateFile))
	if err != nil || fi.Mode().Perm()&0o077 != 0 {
		t.Errorf("state file %v mode %v", err, fi.Mode())
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 1 {
		t.Errorf("state dir holds %d files", len(ents))
	}
}

// TestPersistClaims: before the ring is seeded our consensus claims are
// saved, because an acceptor must not forget what it promised.
func TestPersistClaims(t *testing.T) {
	n := newCoreNet(t, "10.32.0.0/24", 3, 1, 2, 3)
	n.cut[3] = true
	n.cores[1].Allocate("a", sub("10.32.0.0/24"), t0)
	n.deliver()
	c := n.cores[2]
	if c.Seeded() || c.cons.known[2].Promise.IsZero() {
		t.Fatalf("peer 2 should have promised without a ring: %+v", c.cons.known[2])
	}
	back := roundTrip(t, c, t.TempDir())
	if got := back.cons.known[2]; got.Promise != c.cons.known[2].Promise || got.Accepted != c.cons.known[2].Accepted {
		t.Errorf("claims after restart %+v, want %+v", got, c.cons.known[2])
	}
	if st := back.Status(); st.State != "awaiting consensus" {
		t.Errorf("state after restart %q", st.State)
	}
}

func TestPersistErrors(t *testing.T) {
	c := seededCore(t, "10.32.0.0/24")
	mustAllocate(t, c, "a", "10.32.0.0/24")

	t.Run("no state dir", func(t *testing.T) {
		if err := saveFile("", c.snapshot()); err != nil {
			t.Error(err)
		}
		if _, ok, err := loadFile(""); ok || err != nil {
			t.Errorf("loadFile(\"\") = %v, %v", ok, err)
		}
	})
	t.Run("no file yet", func(t *testing.T) {
		if _, ok, err := loadFile(t.TempDir()); ok || err != nil {
			t.Errorf("loadFile of an empty dir = %v, %v", ok, err)
		}
	})
	t.Run("state dir created", func(t *testing.T) {
		dir := filepath.Join(t.TempDir(), "a", "b")
		if err := saveFile(dir, c.snapshot()); err != nil {
			t.Fatal(err)
		}
		if _, ok, err := loadFile(dir); !ok || err != nil {
			t.Errorf("loadFile = %v, %v", ok, err)
		}
	})
	t.Run("another range", func(t *testing.T) {
		dir := t.TempDir()
		if err := saveFile(dir, c.snapshot()); err != nil {
			t.Fatal(err)
		}
		p, _, err := loadFile(dir)
		if err != nil {
			t.Fatal(err)
		}
		other := newTestCore(t, 1, "10.40.0.0/16", 1)
		err = other.restore(p)
		if err == nil || !strings.Contains(err.Error(), "10.32.0.0-10.32.0.255") || !strings.Contains(err.Error(), "--ipalloc-range") {
			t.Errorf("restore into another range = %v", err)
		}
		if other.Seeded() || len(other.Allocs()) != 0 {
			t.Error("a refused restore changed the Core")
		}
	})
	for _, tt := range []struct {
		name, content, want string
	}{
		{"corrupt", "{not json", "read "},
		{"future version", `{"version": 99, "ring": {}}`, "unsupported version 99"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			if err := os.WriteFile(filepath.Join(dir, StateFile), []byte(tt.content), 0o600); err != nil {
				t.Fatal(err)
			}
			if _, ok, err := loadFile(dir); ok || err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("loadFile = %v, %v; want an error with %q", ok, err, tt.want)
			}
		})
	}
	t.Run("invalid ring", func(t *testing.T) {
		p := c.snapshot()
		p.Ring.Entries[0].Token++
		if err := newTestCore(t, 1, "10.32.0.0/24", 1).restore(p); err == nil {
			t.Error("restored an invalid ring")
		}
		if err := newTestCore(t, 1, "10.32.0.0/24", 1).restore(persisted{Version: persistVersion}); err == nil {
			t.Error("restored no ring")
		}
	})
	t.Run("allocations outside the range are dropped", func(t *testing.T) {
		p := c.snapshot()
		p.Allocs = append(p.Allocs, Alloc{Addr: mustAddr("192.168.0.1").IP(), Subnet: pfx("192.168.0.0/24"), ID: "x"})
		back := newTestCore(t, 1, "10.32.0.0/24", 1)
		if err := back.restore(p); err != nil {
			t.Fatal(err)
		}
		if got := back.Allocs(); len(got) != 1 || got[0].ID != "a" {
			t.Errorf("allocations %v", got)
		}
	})
	t.Run("unwritable", func(t *testing.T) {
		file := filepath.Join(t.TempDir(), "file")
		if err := os.WriteFile(file, nil, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := saveFile(file, c.snapshot()); err == nil || !strings.Contains(err.Error(), "save ipam state") {
			t.Errorf("saving under a file = %v", err)
		}
	})
}

// TestPersistFormat pins the state file's field names: a restarted router
// reads what the previous version wrote.
func TestPersistFormat(t *testing.T) {
	c := seededCore(t, "10.32.0.0/30")
	mustAllocate(t, c, "a", "10.32.0.0/30")
	b, err := json.Marshal(c.snapshot())
	if err != nil {
		t.Fatal(err)
	}
	want := `{"version":1,"peer":"00:00:00:00:00:01","ring":{"range":{"Start":169869312,"End":169869316},"seeds":["00:00:00:00:00:01"],"entries":[{"token":169869312,"peer":"00:00:00:00:00:01","version":2,"free":1}]},"allocs":[{"addr":"10.32.0.1","subnet":"10.32.0.0/30","id":"a"}]}`
	if string(b) != want {
		t.Errorf("state file\n got  %s\n want %s", b, want)
	}
}
