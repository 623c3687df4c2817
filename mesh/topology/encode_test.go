package topology

import (
	"bytes"
	"encoding/binary"
	"errors"
	"math/rand/v2"
	"reflect"
	"runtime"
	"slices"
	"strings"
	"testing"

	"github.com/weavelab/weave/mesh/identity"
)

func sampleUpdate() []Peer {
	return []Peer{
		mk(1, 1001, 7, est(2), pend(3), Conn{Remote: pn(4), RemoteAddr: "[fe80::1%eth0]:6783", Outbound: true, Established: true}),
		{Peer: identity.Peer{Name: pn(2), NickName: "hôte-ü", UID: 1<<64 - 1}, Version: MaxVersion, Conns: []Conn{{Remote: 1<<48 - 1}}},
		{Peer: identity.Peer{Name: 1<<48 - 1, UID: 1}, Version: 1},
	}
}

func TestUpdateRoundTrip(t *testing.T) {
	for _, update := range [][]Peer{nil, sampleUpdate(), randomGraph(rand.New(rand.NewPCG(3, 4)), 300, 4, true).peers(rand.New(rand.NewPCG(5, 6)))} {
		b := EncodeUpdate(update)
		got, err := DecodeUpdate(b)
		if err != nil {
			t.Fatalf("decode: %v", err)
		}
		if len(update) == 0 && len(got) == 0 {
			continue
		}
		if !reflect.DeepEqual(got, update) {
			t.Fatalf("round trip:\ngot  %#v\nwant %#v", got, update)
		}
		if !bytes.Equal(EncodeUpdate(got), b) {
			t.Fatal("re-encoding differs")
		}
	}
}

func TestSummaryRoundTrip(t *testing.T) {
	topo := newTopo(t, 1)
	mustMerge(t, topo, sampleUpdate()[1:]...)
	s := topo.Summary()
	b := EncodeSummary(s)
	got, err := DecodeSummary(b)
	if err != nil {
		t.Fatalf("decode: %v", err)
	}
	if !reflect.DeepEqual(got, s) {
		t.Fatalf("round trip: got %v, want %v", got, s)
	}
	if got.Digest() != topo.Digest() {
		t.Fatal("digest differs after round trip")
	}
	if empty, err := DecodeSummary(EncodeSummary(nil)); err != nil || len(empty) != 0 {
		t.Fatalf("empty summary: %v, %v", empty, err)
	}
}

// Every strict prefix of a valid message is rejected, as is any extra byte.
func TestDecodeTruncatedAndTrailing(t *testing.T) {
	topo := newTopo(t, 1)
	mustMerge(t, topo, sampleUpdate()[1:]...)
	for _, tc := range []struct {
		name   string
		b      []byte
		decode func([]byte) error
	}{
		{"update", EncodeUpdate(sampleUpdate()), func(b []byte) error { _, err := DecodeUpdate(b); return err }},
		{"summary", EncodeSummary(topo.Summary()), func(b []byte) error { _, err := DecodeSummary(b); return err }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for i := range len(tc.b) {
				if err := tc.decode(tc.b[:i]); !errors.Is(err, ErrInvalid) {
					t.Fatalf("prefix of %d/%d bytes: err = %v", i, len(tc.b), err)
				}
			}
			if err := tc.decode(append(tc.b[:len(tc.b):len(tc.b)], 0)); err == nil || !strings.Contains(err.Error(), "trailing") {
				t.Fatalf("trailing byte: err = %v", err)
			}
		})
	}
}

func TestDecodeUpdateErrors(t *testing.T) {
	uv := func(v uint64) []byte { return binary.AppendUvarint(nil, v) }
	cat := func(parts ...[]byte) []byte { return bytes.Join(parts, nil) }
	name := []byte{2, 0, 0, 0, 0, 2}
	uid := []byte{0, 0, 0, 0, 0, 0, 0, 9}
	ks := make([]byte, 96) // key and signature
	tests := []struct {
		name string
		b    []byte
		want string
	}{
		{"empty", nil, "truncated"},
		{"unknown format", []byte{9, 0}, "unknown update format"},
		{"bad varint", cat([]byte{2}, bytes.Repeat([]byte{0xff}, 11)), "varint"},
		{"too many peers", cat([]byte{2}, uv(MaxPeers+1)), "max"},
		{"huge count", cat([]byte{2}, uv(1<<62)), "max"},
		{"count beyond input", cat([]byte{2}, uv(100), make([]byte, 100)), "truncated"},
		{"huge nickname", cat([]byte{2}, uv(1), name, uid, uv(1), uv(1<<40), make([]byte, 120)), "nickname of"},
		{"too many conns", cat([]byte{2}, uv(1), name, uid, uv(1), uv(0), uv(MaxConnsPerPeer+1), ks), "connections, max"},
		{"conns beyond input", cat([]byte{2}, uv(1), name, uid, uv(1), uv(0), uv(50), make([]byte, 20)), "truncated"},
		{"unknown flags", cat([]byte{2}, uv(1), name, uid, uv(1), uv(0), uv(1), []byte{2, 0, 0, 0, 0, 3}, []byte{4}, uv(0), ks), "flags"},
		{"huge addr", cat([]byte{2}, uv(1), name, uid, uv(1), uv(0), uv(1), []byte{2, 0, 0, 0, 0, 3}, []byte{0}, uv(MaxAddrLen+1), make([]byte, MaxAddrLen+1), ks), "address of"},
		{"version 0", cat([]byte{2}, uv(1), name, uid, uv(0), uv(0), uv(0), ks), "version 0"},
		{"zero uid", cat([]byte{2}, uv(1), name, make([]byte, 8), uv(1), uv(0), uv(0), ks), "zero uid"},
		{"conn to self", cat([]byte{2}, uv(1), name, uid, uv(1), uv(0), uv(1), name, []byte{3}, uv(0), ks), "itself"},
		{"peer twice", cat([]byte{2}, uv(2), name, uid, uv(1), uv(0), uv(0), ks, name, uid, uv(2), uv(0), uv(0), ks), "twice"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p, err := DecodeUpdate(tc.b)
			if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want ErrInvalid containing %q", err, tc.want)
			}
			if p != nil {
				t.Fatalf("peers = %v on error", p)
			}
		})
	}
}

func TestDecodeSummaryErrors(t *testing.T) {
	uv := func(v uint64) []byte { return binary.AppendUvarint(nil, v) }
	cat := func(parts ...[]byte) []byte { return bytes.Join(parts, nil) }
	name := []byte{2, 0, 0, 0, 0, 2}
	uid := []byte{0, 0, 0, 0, 0, 0, 0, 9}
	tests := []struct {
		name string
		b    []byte
		want string
	}{
		{"empty", nil, "truncated"},
		{"unknown format", []byte{9, 0}, "unknown summary format"},
		{"too many", cat([]byte{1}, uv(MaxPeers+1)), "max"},
		{"count beyond input", cat([]byte{1}, uv(3), name, uid, uv(1)), "truncated"},
		{"zero name", cat([]byte{1}, uv(1), make([]byte, 6), uid, uv(1)), "zero name"},
		{"zero uid", cat([]byte{1}, uv(1), name, make([]byte, 8), uv(1)), "bad uid"},
		{"zero version", cat([]byte{1}, uv(1), name, uid, uv(0)), "version 0"},
		{"version above max", cat([]byte{1}, uv(1), name, uid, uv(MaxVersion+1)), "bad uid"},
		{"twice", cat([]byte{1}, uv(2), name, uid, uv(1), name, uid, uv(2)), "twice"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s, err := DecodeSummary(tc.b)
			if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want ErrInvalid containing %q", err, tc.want)
			}
			if s != nil {
				t.Fatalf("summary = %v on error", s)
			}
		})
	}
}

// Hostile length prefixes must not make the decoder allocate more than the
// input justifies.
func TestDecodeHostileLengthsAllocateLittle(t *testing.T) {
	uv := func(v uint64) []byte { return binary.AppendUvarint(nil, v) }
	inputs := [][]byte{
		append([]byte{1}, uv(MaxPeers)...),
		append(append([]byte{1}, uv(MaxPeers)...), make([]byte, 64)...),
		append([]byte{1, 1, 2, 0, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 9, 1, 0}, uv(MaxConnsPerPeer)...),
		append([]byte{1, 1, 2, 0, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 9, 1}, uv(1<<50)...),
	}
	for i, b := range inputs {
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		for range 10 {
			if _, err := DecodeUpdate(b); err == nil {
				t.Fatalf("input %d decoded", i)
			}
			if _, err := DecodeSummary(b); err == nil {
				t.Fatalf("input %d decoded as summary", i)
			}
		}
		runtime.ReadMemStats(&after)
		if got := after.TotalAlloc - before.TotalAlloc; got > 64<<10 {
			t.Errorf("input %d (%d bytes): 20 decodes allocated %d bytes", i, len(b), got)
		}
	}
}

func FuzzDecodeUpdate(f *testing.F) {
	f.Add([]byte{})
	f.Add(EncodeUpdate(nil))
	f.Add(EncodeUpdate(sampleUpdate()))
	rng := rand.New(rand.NewPCG(1, 1))
	f.Add(EncodeUpdate(randomGraph(rng, 12, 3, true).peers(rng)))
	f.Fuzz(func(t *testing.T, b []byte) {
		update, err := DecodeUpdate(b)
		if err != nil {
			if !errors.Is(err, ErrInvalid) || update != nil {
				t.Fatalf("error %v not ErrInvalid or with peers %v", err, update)
			}
			return
		}
		if err := ValidateUpdate(update); err != nil {
			t.Fatalf("decoded an invalid update: %v", err)
		}
		re := EncodeUpdate(update)
		if len(re) > len(b) {
			t.Fatalf("re-encoding grew from %d to %d bytes", len(b), len(re))
		}
		again, err := DecodeUpdate(re)
		if err != nil {
			t.Fatalf("re-encoded update does not decode: %v", err)
		}
		if len(update) > 0 && !reflect.DeepEqual(again, update) {
			t.Fatalf("round trip:\ngot  %#v\nwant %#v", again, update)
		}
		// Whatever decodes also merges, and routes over it work.
		topo := newTopo(t, 1)
		if _, err := topo.Merge(update); err != nil {
			t.Fatalf("merge of a decoded update: %v", err)
		}
		r := topo.Routes()
		for _, p := range update {
			r.Unicast(p.Name)
			r.Broadcast(p.Name)
		}
		topo.GC()
	})
}

func FuzzDecodeSummary(f *testing.F) {
	f.Add([]byte{})
	f.Add(EncodeSummary(nil))
	topo := newTopo(f, 1)
	mustMerge(f, topo, sampleUpdate()[1:]...)
	f.Add(EncodeSummary(topo.Summary()))
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := DecodeSummary(b)
		if err != nil {
			if !errors.Is(err, ErrInvalid) || s != nil {
				t.Fatalf("error %v not ErrInvalid or with summary %v", err, s)
			}
			return
		}
		re := EncodeSummary(s)
		if len(re) > len(b) {
			t.Fatalf("re-encoding grew from %d to %d bytes", len(b), len(re))
		}
		again, err := DecodeSummary(re)
		if err != nil {
			t.Fatalf("re-encoded summary does not decode: %v", err)
		}
		if !reflect.DeepEqual(again, s) {
			t.Fatalf("round trip: got %v, want %v", again, s)
		}
		// NewerThan sends only what s lacks or holds older.
		other := newTopo(t, 1)
		mustMerge(t, other, sampleUpdate()[1:]...)
		for _, p := range other.NewerThan(s) {
			if st, ok := s[p.Name]; ok && !stampOf(&p).beats(st) {
				t.Fatalf("NewerThan sent %s at %d/%d, summary has %d/%d", p.Name, p.Version, p.UID, st.Version, st.UID)
			}
		}
		other.Wants(s)
	})
}

// FuzzDecodePartialSummary: the decoder never panics, rejects with
// ErrInvalid, and what it accepts lies in its buckets and round-trips.
func FuzzDecodePartialSummary(f *testing.F) {
	f.Add([]byte{partialFormat})
	f.Add(EncodePartialSummary(0, nil))
	topo := newTopo(f, 1)
	mustMerge(f, topo, sampleUpdate()[1:]...)
	f.Add(EncodePartialSummary(AllBuckets, topo.Summary()))
	mask := uint64(1) << BucketOf(sampleUpdate()[1].Name)
	f.Add(EncodePartialSummary(mask, topo.SummaryOf(mask)))
	f.Fuzz(func(t *testing.T, b []byte) {
		buckets, s, err := DecodePartialSummary(b)
		if err != nil {
			if !errors.Is(err, ErrInvalid) || s != nil {
				t.Fatalf("error %v not ErrInvalid or with summary %v", err, s)
			}
			return
		}
		for n := range s {
			if buckets&(1<<BucketOf(n)) == 0 {
				t.Fatalf("%s outside buckets %#x", n, buckets)
			}
		}
		b2, s2, err := DecodePartialSummary(EncodePartialSummary(buckets, s))
		if err != nil || b2 != buckets || !reflect.DeepEqual(s2, s) {
			t.Fatalf("round trip: %#x %v %v, want %#x %v", b2, s2, err, buckets, s)
		}
	})
}

// FuzzDecodeBucketDigests: the decoder never panics and round-trips.
func FuzzDecodeBucketDigests(f *testing.F) {
	f.Add([]byte{bucketsFormat})
	topo := newTopo(f, 1)
	mustMerge(f, topo, sampleUpdate()[1:]...)
	d := topo.BucketDigests()
	f.Add(EncodeBucketDigests(&d))
	f.Fuzz(func(t *testing.T, b []byte) {
		d, err := DecodeBucketDigests(b)
		if err != nil {
			if !errors.Is(err, ErrInvalid) || d != nil {
				t.Fatalf("error %v not ErrInvalid or with digests", err)
			}
			return
		}
		if !bytes.Equal(EncodeBucketDigests(d), b) {
			t.Fatal("bucket digests re-encode differently")
		}
	})
}

func TestBucketDigestsSumToDigest(t *testing.T) {
	topo := newTopo(t, 1)
	mustMerge(t, topo, sampleUpdate()[1:]...)
	var sum uint64
	for _, d := range topo.BucketDigests() {
		sum += d
	}
	if sum != topo.Digest() {
		t.Fatalf("bucket digests sum to %#x, digest %#x", sum, topo.Digest())
	}
	topo.GC()
	sum = 0
	for _, d := range topo.BucketDigests() {
		sum += d
	}
	if sum != topo.Digest() || topo.Digest() != topo.Summary().Digest() {
		t.Fatalf("after GC: bucket sum %#x, digest %#x, summary digest %#x", sum, topo.Digest(), topo.Summary().Digest())
	}
	for n := range topo.Summary() {
		mask := uint64(1) << BucketOf(n)
		if _, ok := topo.SummaryOf(mask)[n]; !ok {
			t.Fatalf("SummaryOf(bucket of %s) lacks it", n)
		}
	}
}

// TestDecodeStampsOrder: stamps come back sorted by name whatever order
// the sender used, and a name listed twice is caught in or out of order.
func TestDecodeStampsOrder(t *testing.T) {
	raw := func(names ...identity.PeerName) []byte {
		b := binary.AppendUvarint([]byte{summaryFormat}, uint64(len(names)))
		for _, n := range names {
			b = identity.AppendName(b, n)
			b = binary.BigEndian.AppendUint64(b, 1)
			b = binary.AppendUvarint(b, 1)
		}
		return b
	}
	for _, tc := range []struct {
		name  string
		in    []identity.PeerName
		want  []identity.PeerName
		valid bool
	}{
		{"ascending", []identity.PeerName{1, 2, 3}, []identity.PeerName{1, 2, 3}, true},
		{"unordered", []identity.PeerName{3, 1, 2}, []identity.PeerName{1, 2, 3}, true},
		{"twice in order", []identity.PeerName{1, 2, 2}, nil, false},
		{"twice out of order", []identity.PeerName{2, 3, 1, 3}, nil, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := DecodeStamps(raw(tc.in...))
			if (err == nil) != tc.valid {
				t.Fatalf("err = %v, want valid %v", err, tc.valid)
			}
			var got []identity.PeerName
			for _, e := range s {
				got = append(got, e.Name)
			}
			if tc.valid && !slices.Equal(got, tc.want) {
				t.Fatalf("names %v, want %v", got, tc.want)
			}
			if tc.valid && !bytes.Equal(EncodeStamps(s), raw(tc.want...)) {
				t.Fatal("re-encoded stamps differ")
			}
		})
	}
}
