package table

import (
	"bytes"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
)

var updateSeeds = flag.Bool("update-seeds", false, "rewrite testdata/fuzz/FuzzDecode from the current encoder")

// sampleEntries covers every field's extremes: IPv4 and IPv6, live and
// tombstoned, the longest name and container ID, the largest version and
// origin, the latest deletion time.
func sampleEntries() []Entry {
	label := strings.Repeat("a", 63)
	longName := label + "." + label + "." + label + "." + strings.Repeat("b", 61) + "."
	return []Entry{
		live(1, strings.Repeat("0123456789abcdef", 4), "db.weave.local.", "10.32.0.1", 1),
		dead(2, "netns:blue", "web.weave.local.", "fd00::5", 300, t0),
		live(3, ContainerExtern, "a.", "192.0.2.1", MaxVersion),
		{Key: Key{Origin: 1<<48 - 1, Container: "netns:" + strings.Repeat("n", 255), Name: longName, Addr: ip("ffff::ffff")},
			Version: 1 << 40, Tombstone: true, DeletedAt: deletionTime(t0.AddDate(8000, 0, 0))},
		live(1, ContainerExpose, "_x-1.weave.local.", "255.255.255.255", 2),
	}
}

// tableState is the full state of a table after a few changes: a real
// message as routers exchange them.
func tableState(tb testing.TB) []Entry {
	tbl := newTable(tb, 1)
	mustAdd(tb, tbl, "c1", "db.weave.local", "10.32.0.1", "fd00::1")
	mustAdd(tb, tbl, "c2", "web.weave.local", "10.32.0.2")
	mustAdd(tb, tbl, ContainerExtern, "ext.weave.local", "192.0.2.10")
	tbl.RemoveContainer(t0, "c2")
	mustMerge(tb, tbl, t0, live(2, "c3", "db.weave.local.", "10.32.1.1", 7), dead(2, "c3", "old.weave.local.", "10.32.1.1", 6, t0))
	return tbl.All()
}

func TestRoundTrip(t *testing.T) {
	for _, tc := range []struct {
		name    string
		entries []Entry
	}{
		{"empty", nil},
		{"sample", sampleEntries()},
		{"table state", tableState(t)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := Encode(tc.entries)
			got, err := Decode(b, 0)
			if err != nil {
				t.Fatalf("Decode: %v", err)
			}
			if len(tc.entries) == 0 {
				if len(got) != 0 {
					t.Fatalf("got %v", got)
				}
				return
			}
			if !reflect.DeepEqual(got, tc.entries) {
				t.Fatalf("round trip:\ngot\n%swant\n%s", show(got), show(tc.entries))
			}
			if !bytes.Equal(Encode(got), b) {
				t.Fatal("re-encoding differs")
			}
		})
	}
}

func TestEncodeSize(t *testing.T) {
	// A typical entry: Docker ID, IPv4, short name, small version.
	e := live(1, strings.Repeat("0123456789abcdef", 4), "db.weave.local.", "10.32.0.1", 100)
	if n := len(Encode([]Entry{e})) - 2; n != 6+1+1+4+1+15+1+64 {
		t.Fatalf("one entry takes %d bytes", n)
	}
}

// Every strict prefix of a valid message is rejected, as is any extra byte.
func TestDecodeTruncatedAndTrailing(t *testing.T) {
	b := Encode(sampleEntries())
	for i := range len(b) {
		if _, err := Decode(b[:i], 0); !errors.Is(err, ErrInvalid) {
			t.Fatalf("prefix of %d/%d bytes: err = %v", i, len(b), err)
		}
	}
	if _, err := Decode(append(b[:len(b):len(b)], 0), 0); err == nil || !strings.Contains(err.Error(), "trailing") {
		t.Fatalf("trailing byte: err = %v", err)
	}
}

// msg builds test messages field by field.
func msg(parts ...any) []byte {
	var b []byte
	for _, p := range parts {
		switch p := p.(type) {
		case int:
			b = binary.AppendUvarint(b, uint64(p))
		case uint64:
			b = binary.AppendUvarint(b, p)
		case string:
			b = appendString(b, p)
		case []byte:
			b = append(b, p...)
		default:
			panic(fmt.Sprintf("msg: %T", p))
		}
	}
	return b
}

func TestDecodeErrors(t *testing.T) {
	f1 := []byte{entriesFormat}
	origin := []byte{2, 0, 0, 0, 0, 1}
	v4 := []byte{0, 10, 0, 0, 1} // flags 0, 10.0.0.1
	for _, tc := range []struct {
		name string
		b    []byte
		max  int
		want string
	}{
		{"empty", nil, 0, "truncated"},
		{"unknown format", []byte{2, 0}, 0, "unknown format"},
		{"bad varint", msg(f1, bytes.Repeat([]byte{0xff}, 11)), 0, "varint"},
		{"non-minimal count", msg(f1, []byte{0x80, 0x00}), 0, "minimal"},
		{"non-minimal version", msg(f1, 1, origin, []byte{0x81, 0x00}, v4, "a.", "c"), 0, "minimal"},
		{"too many entries", msg(f1, 3, make([]byte, 100)), 2, "3 entries, max 2"},
		{"default limit", msg(f1, DefaultMaxEntriesPerMessage+1), 0, "max"},
		{"huge count", msg(f1, uint64(1)<<62), 1 << 62, "truncated"},
		{"count beyond input", msg(f1, 5, make([]byte, 4*minEntryLen)), 0, "truncated"},
		{"zero origin", msg(f1, 1, make([]byte, 6), 1, v4, "a.", "c"), 0, "origin"},
		{"version 0", msg(f1, 1, origin, 0, v4, "a.", "c"), 0, "version 0"},
		{"version above max", msg(f1, 1, origin, uint64(MaxVersion+1), v4, "a.", "c"), 0, "version"},
		{"unknown flags", msg(f1, 1, origin, 1, []byte{4, 10, 0, 0, 1}, "a.", "c"), 0, "unknown flags"},
		{"truncated ipv6", msg(f1, 1, origin, 1, []byte{flagIPv6, 0xfd}, make([]byte, 14)), 0, "truncated"},
		{"mapped ipv6", msg(f1, 1, origin, 1, []byte{flagIPv6}, ip("::ffff:10.0.0.1").AsSlice(), "a.", "c"), 0, "mapped"},
		{"unspecified", msg(f1, 1, origin, 1, []byte{0, 0, 0, 0, 0}, "a.", "c"), 0, "unspecified"},
		{"huge name", msg(f1, 1, origin, 1, v4, 1<<40, make([]byte, 20)), 0, "name of"},
		{"long name", msg(f1, 1, origin, 1, v4, strings.Repeat("a.", 128), "c"), 0, "name of"},
		{"name beyond input", msg(f1, 1, origin, 1, v4, 30, make([]byte, 20)), 0, "truncated"},
		{"upper-case name", msg(f1, 1, origin, 1, v4, "A.", "c"), 0, "not canonical"},
		{"name without dot", msg(f1, 1, origin, 1, v4, "ab", "c"), 0, "not canonical"},
		{"bad name", msg(f1, 1, origin, 1, v4, "a b.", "c"), 0, "character"},
		{"empty container", msg(f1, 1, origin, 1, v4, "a.", "", make([]byte, 10)), 0, "container"},
		{"long container", msg(f1, 1, origin, 1, v4, "a.", strings.Repeat("c", MaxContainerLen+1)), 0, "container id of"},
		{"control in container", msg(f1, 1, origin, 1, v4, "a.", "c\n"), 0, "control"},
		{"tombstone without time", msg(f1, 1, origin, 1, []byte{flagTombstone, 10, 0, 0, 1}, "a.", "c"), 0, "varint"},
		{"tombstone at 0", msg(f1, 1, origin, 1, []byte{flagTombstone, 10, 0, 0, 1}, "a.", "c", 0), 0, "out of range"},
		{"tombstone after 9999", msg(f1, 1, origin, 1, []byte{flagTombstone, 10, 0, 0, 1}, "a.", "c", maxUnix+1), 0, "out of range"},
		{"key twice", msg(f1, 2, origin, 1, v4, "a.", "c", origin, 2, v4, "a.", "c"), 0, "twice"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Decode(tc.b, tc.max)
			if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want ErrInvalid containing %q", err, tc.want)
			}
			if got != nil {
				t.Fatalf("entries on error:\n%s", show(got))
			}
		})
	}
	// The same key from two origins, or at two addresses, is two keys.
	ok := msg(f1, 3, origin, 1, v4, "a.", "c", []byte{2, 0, 0, 0, 0, 2}, 1, v4, "a.", "c", origin, 2, []byte{0, 10, 0, 0, 2}, "a.", "c")
	if got, err := Decode(ok, 3); err != nil || len(got) != 3 {
		t.Fatalf("Decode = %v, %v", got, err)
	}
}

// Hostile counts and lengths must not make the decoder allocate more than
// the input justifies.
func TestDecodeHostileLengthsAllocateLittle(t *testing.T) {
	f1 := []byte{entriesFormat}
	inputs := [][]byte{
		msg(f1, DefaultMaxEntriesPerMessage),
		msg(f1, DefaultMaxEntriesPerMessage, make([]byte, 64)),
		msg(f1, 1, []byte{2, 0, 0, 0, 0, 1}, 1, []byte{0, 10, 0, 0, 1}, 1<<50),
		msg(f1, 1, []byte{2, 0, 0, 0, 0, 1}, 1, []byte{0, 10, 0, 0, 1}, "a.", 1<<50),
	}
	for i, b := range inputs {
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		for range 10 {
			if _, err := Decode(b, 1<<40); err == nil {
				t.Fatalf("input %d decoded", i)
			}
		}
		runtime.ReadMemStats(&after)
		if got := after.TotalAlloc - before.TotalAlloc; got > 64<<10 {
			t.Errorf("input %d (%d bytes): 10 decodes allocated %d bytes", i, len(b), got)
		}
	}
}

// seeds are the corpus in testdata/fuzz/FuzzDecode: real encoded messages
// ("valid_") and near misses ("bad_"). TestFuzzSeeds keeps the files in
// step with the encoder; regenerate them with -update-seeds.
func seeds(tb testing.TB) map[string][]byte {
	full := Encode(tableState(tb))
	tbl := newTable(tb, 3)
	mustAdd(tb, tbl, "netns:blue", "svc.weave.local", "10.40.0.1", "10.40.0.2")
	delta := tbl.RemoveContainer(t0, "netns:blue")
	dup := Encode(sampleEntries()[:1])
	dup = slices.Concat([]byte{entriesFormat, 2}, dup[2:], dup[2:])
	flags := Encode(sampleEntries()[:1])
	flags[2+6+1] |= 0x80
	return map[string][]byte{
		"valid_empty":          Encode(nil),
		"valid_sample":         Encode(sampleEntries()),
		"valid_full_state":     full,
		"valid_delta_add":      Encode(sampleEntries()[4:]),
		"valid_delta_remove":   Encode(delta),
		"bad_truncated":        full[:len(full)-1],
		"bad_trailing":         append(Encode(delta), 0),
		"bad_duplicate_key":    dup,
		"bad_unknown_flags":    flags,
		"bad_huge_count":       msg([]byte{entriesFormat}, uint64(1)<<60),
		"bad_nonminimal_count": []byte{entriesFormat, 0x80, 0x00},
	}
}

func TestFuzzSeeds(t *testing.T) {
	dir := filepath.Join("testdata", "fuzz", "FuzzDecode")
	want := seeds(t)
	if *updateSeeds {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		for name, b := range want {
			if err := os.WriteFile(filepath.Join(dir, name), fmt.Appendf(nil, "go test fuzz v1\n[]byte(%q)\n", b), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	for name, b := range want {
		raw, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatalf("%v (run go test -run TestFuzzSeeds -update-seeds)", err)
		}
		header, body, _ := strings.Cut(string(raw), "\n")
		quoted, ok := strings.CutPrefix(strings.TrimSpace(body), "[]byte(")
		quoted, ok2 := strings.CutSuffix(quoted, ")")
		got, err := strconv.Unquote(quoted)
		if header != "go test fuzz v1" || !ok || !ok2 || err != nil {
			t.Fatalf("%s: not a go test fuzz v1 []byte file", name)
		}
		if got != string(b) {
			t.Fatalf("%s is stale: run go test -run TestFuzzSeeds -update-seeds", name)
		}
		_, err = Decode(b, 0)
		if valid := strings.HasPrefix(name, "valid_"); valid != (err == nil) {
			t.Fatalf("%s: Decode err = %v", name, err)
		}
	}
}

// fuzzMaxEntries keeps the limit small enough for the fuzzer to hit.
const fuzzMaxEntries = 64

func FuzzDecode(f *testing.F) {
	for _, b := range seeds(f) {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		entries, err := Decode(b, fuzzMaxEntries)
		if err != nil {
			if !errors.Is(err, ErrInvalid) || entries != nil {
				t.Fatalf("error %v not ErrInvalid, or with entries", err)
			}
			return
		}
		// The encoding is canonical: what decodes re-encodes to the same
		// bytes, and decodes again to the same entries.
		if re := Encode(entries); !bytes.Equal(re, b) {
			t.Fatalf("re-encoding differs:\n%q\n%q", re, b)
		}
		again, err := Decode(Encode(entries), fuzzMaxEntries)
		if err != nil || len(again) != len(entries) || (len(entries) > 0 && !reflect.DeepEqual(again, entries)) {
			t.Fatalf("round trip: %v\n%s\nwant\n%s", err, show(again), show(entries))
		}
		// Whatever decodes merges, twice being a no-op, and is found.
		tbl := newTable(t, 1<<20)
		if _, err := tbl.Merge(t0, entries); err != nil && !errors.Is(err, ErrVersionExhausted) {
			t.Fatalf("merge of decoded entries: %v", err)
		}
		if d, err := tbl.Merge(t0, entries); d != nil || (err != nil && !errors.Is(err, ErrVersionExhausted)) {
			t.Fatalf("second merge: %v\n%s", err, show(d))
		}
		for _, e := range tbl.Live() {
			if !slices.Contains(tbl.Lookup(e.Name), e.Addr) || !slices.Contains(tbl.LookupAddr(e.Addr), e.Name) {
				t.Fatalf("%s %s not found", e.Name, e.Addr)
			}
		}
		checkIndexes(t, tbl)
		tbl.GC(t0.Add(DefaultTombstoneExpiry))
		for _, e := range entries {
			tbl.DropOrigin(e.Origin)
		}
		for _, e := range tbl.All() {
			if e.Origin != tbl.Self() {
				t.Fatalf("entry left after dropping every origin:\n%s", show([]Entry{e}))
			}
		}
	})
}
