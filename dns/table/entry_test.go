package table

import (
	"encoding/json"
	"errors"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestCanonicalName(t *testing.T) {
	label63 := strings.Repeat("a", 63)
	// 3 labels of 63 plus one of 61: 253 bytes without the trailing dot.
	longest := label63 + "." + label63 + "." + label63 + "." + strings.Repeat("b", 61)
	for _, tc := range []struct {
		in, want string // want "" means invalid
	}{
		{"db.weave.local", "db.weave.local."},
		{"db.weave.local.", "db.weave.local."},
		{"DB.Weave.LOCAL", "db.weave.local."},
		{"db", "db."},
		{"web-1.weave.local", "web-1.weave.local."},
		{"_srv.x9.weave.local", "_srv.x9.weave.local."},
		{"1a.weave.local", "1a.weave.local."},
		{label63 + ".local", label63 + ".local."},
		{longest, longest + "."},
		{longest + "b", ""},
		{strings.Repeat("a", 64) + ".local", ""},
		{"", ""},
		{".", ""},
		{"..", ""},
		{"db..local", ""},
		{".db.local", ""},
		{"-db.local", ""},
		{"db-.local", ""},
		{"db local", ""},
		{"db.wéave.local", ""},
		{"db/x.local", ""},
		{"db.local..", ""},
		{"db\x00.local", ""},
	} {
		t.Run(tc.in, func(t *testing.T) {
			got, err := CanonicalName(tc.in)
			if tc.want == "" {
				if !errors.Is(err, ErrInvalid) {
					t.Fatalf("CanonicalName(%q) = %q, %v; want ErrInvalid", tc.in, got, err)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("CanonicalName(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
			}
		})
	}
}

func TestValidateContainer(t *testing.T) {
	for _, tc := range []struct {
		id string
		ok bool
	}{
		{strings.Repeat("0123456789abcdef", 4), true},
		{"netns:blue", true},
		{"netns:" + strings.Repeat("n", 255), true},
		{"netns:" + strings.Repeat("n", 256), false},
		{ContainerExpose, true},
		{ContainerExtern, true},
		{"", false},
		{"a b", false},
		{"a\tb", false},
		{"a\x7fb", false},
		{"\xff", false},
		{"netns:blå", true},
		{"a\u3000b", false},
		{"a\u0085b", false},
	} {
		if err := ValidateContainer(tc.id); (err == nil) != tc.ok || (err != nil && !errors.Is(err, ErrInvalid)) {
			t.Errorf("ValidateContainer(%q) = %v, want ok=%v", tc.id, err, tc.ok)
		}
	}
}

func TestValidateEntry(t *testing.T) {
	good := live(1, "c1", "db.weave.local.", "10.32.0.1", 1)
	for _, tc := range []struct {
		name string
		edit func(*Entry)
		want string // "" means valid
	}{
		{"live", func(*Entry) {}, ""},
		{"ipv6", func(e *Entry) { e.Addr = ip("fd00::1") }, ""},
		{"tombstone", func(e *Entry) { e.Tombstone, e.DeletedAt = true, deletionTime(t0) }, ""},
		{"max version", func(e *Entry) { e.Version = MaxVersion }, ""},
		{"max origin", func(e *Entry) { e.Origin = 1<<48 - 1 }, ""},
		{"zero origin", func(e *Entry) { e.Origin = 0 }, "origin"},
		{"origin above 48 bits", func(e *Entry) { e.Origin = 1 << 48 }, "origin"},
		{"empty container", func(e *Entry) { e.Container = "" }, "container"},
		{"upper-case name", func(e *Entry) { e.Name = "DB.weave.local." }, "not canonical"},
		{"name without dot", func(e *Entry) { e.Name = "db.weave.local" }, "not canonical"},
		{"bad name", func(e *Entry) { e.Name = "d b." }, "character"},
		{"no addr", func(e *Entry) { e.Addr = netip.Addr{} }, "no address"},
		{"zone", func(e *Entry) { e.Addr = ip("fe80::1%eth0") }, "zone"},
		{"mapped", func(e *Entry) { e.Addr = ip("::ffff:10.0.0.1") }, "mapped"},
		{"unspecified", func(e *Entry) { e.Addr = ip("0.0.0.0") }, "unspecified"},
		{"version 0", func(e *Entry) { e.Version = 0 }, "version"},
		{"version above max", func(e *Entry) { e.Version = MaxVersion + 1 }, "version"},
		{"live with time", func(e *Entry) { e.DeletedAt = t0 }, "live entry with"},
		{"tombstone without time", func(e *Entry) { e.Tombstone = true }, "out of range"},
		{"tombstone at epoch", func(e *Entry) { e.Tombstone, e.DeletedAt = true, time.Unix(0, 0) }, "out of range"},
		{"tombstone after 9999", func(e *Entry) { e.Tombstone, e.DeletedAt = true, time.Unix(maxUnix+1, 0) }, "out of range"},
		{"tombstone with nanoseconds", func(e *Entry) { e.Tombstone, e.DeletedAt = true, t0.Add(time.Millisecond) }, "whole seconds"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := good
			tc.edit(&e)
			err := e.Validate()
			if tc.want == "" {
				if err != nil {
					t.Fatalf("Validate: %v", err)
				}
				return
			}
			if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Validate = %v, want ErrInvalid containing %q", err, tc.want)
			}
		})
	}
}

func TestDeletionTime(t *testing.T) {
	for _, tc := range []struct {
		in   time.Time
		want int64
	}{
		{t0.Add(999 * time.Millisecond), t0.Unix()},
		{time.Time{}, 1},
		{time.Unix(-5, 0), 1},
		{time.Date(12000, 1, 1, 0, 0, 0, 0, time.UTC), maxUnix},
	} {
		got := deletionTime(tc.in)
		if got.Unix() != tc.want || got.Nanosecond() != 0 || got.Location() != time.UTC {
			t.Errorf("deletionTime(%v) = %v, want unix %d UTC", tc.in, got, tc.want)
		}
	}
}

func TestNamesOf(t *testing.T) {
	got := NamesOf([]Entry{
		live(1, "c", "b.", "10.0.0.1", 1),
		live(1, "c", "a.", "10.0.0.1", 2),
		live(2, "d", "b.", "10.0.0.2", 1),
	})
	if want := []string{"a.", "b."}; !slices.Equal(got, want) {
		t.Fatalf("NamesOf = %v, want %v", got, want)
	}
	if NamesOf(nil) != nil {
		t.Fatal("NamesOf(nil) not nil")
	}
}

// `weave status dns --json` prints entries as they marshal.
func TestEntryJSON(t *testing.T) {
	for _, tc := range []struct {
		e    Entry
		want string
	}{
		{live(1, "c1", "db.weave.local.", "10.32.0.1", 3),
			`{"origin":"02:00:00:00:00:01","container":"c1","name":"db.weave.local.","addr":"10.32.0.1","version":3}`},
		{dead(2, "netns:x", "a.", "fd00::1", 4, t0),
			`{"origin":"02:00:00:00:00:02","container":"netns:x","name":"a.","addr":"fd00::1","version":4,"tombstone":true,"deleted_at":"2025-06-01T12:00:00Z"}`},
	} {
		b, err := json.Marshal(tc.e)
		if err != nil || string(b) != tc.want {
			t.Fatalf("json = %s, %v; want %s", b, err, tc.want)
		}
		var back Entry
		if err := json.Unmarshal(b, &back); err != nil || back != tc.e {
			t.Fatalf("unmarshal = %+v, %v; want %+v", back, err, tc.e)
		}
	}
}
