package replicate

import (
	"bytes"
	"errors"
	"testing"

	"github.com/weavelab/weave/mesh/identity"
)

func TestEnvelope(t *testing.T) {
	const a = identity.PeerName(0x0a0b0c0d0e0f)
	for _, tc := range []struct {
		name string
		b    []byte
		want envelope
		bad  bool
	}{
		{name: "delta", b: encodeDelta(a, 42, []byte("x")), want: envelope{kind: envDelta, origin: a, id: 42, data: []byte("x")}},
		{name: "state", b: encodeState(a, []byte("full")), want: envelope{kind: envState, origin: a, data: []byte("full")}},
		{name: "empty state", b: encodeState(a, nil), want: envelope{kind: envState, origin: a, data: []byte{}}},
		{name: "empty delta", b: encodeDelta(a, 1, nil), bad: true},
		{name: "zero origin", b: encodeState(0, []byte("x")), bad: true},
		{name: "unknown kind", b: []byte{3, 0, 0, 0, 0, 0, 1}, bad: true},
		{name: "short state", b: []byte{envState, 0, 0, 0, 0, 1}, bad: true},
		{name: "nothing", b: nil, bad: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e, err := decodeEnvelope(tc.b)
			if tc.bad {
				if !errors.Is(err, errBadEnvelope) {
					t.Fatalf("decode(%x) = %+v, %v; want errBadEnvelope", tc.b, e, err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if e.kind != tc.want.kind || e.origin != tc.want.origin || e.id != tc.want.id || !bytes.Equal(e.data, tc.want.data) {
				t.Fatalf("decoded %+v, want %+v", e, tc.want)
			}
		})
	}
}

func TestSeenSetForgetsOldest(t *testing.T) {
	s := newSeenSet(2)
	id := func(n uint64) msgID { return msgID{origin: 1, id: n} }
	for _, step := range []struct {
		id   uint64
		want bool
	}{{1, true}, {1, false}, {2, true}, {3, true}, {2, false}, {1, true}} {
		if got := s.add(id(step.id)); got != step.want {
			t.Fatalf("add(%d) = %v, want %v", step.id, got, step.want)
		}
	}
}

// FuzzEnvelope checks the decoder of memberlist user data as FuzzFrame
// checks frames.
func FuzzEnvelope(f *testing.F) {
	f.Add(encodeDelta(0x020000000001, 7, []byte("a.weave.local")))
	f.Add(encodeState(0x020000000001, []byte("state")))
	f.Fuzz(func(t *testing.T, b []byte) {
		e, err := decodeEnvelope(b)
		if err != nil {
			if !errors.Is(err, errBadEnvelope) {
				t.Fatalf("error %v does not wrap errBadEnvelope", err)
			}
			return
		}
		if got := e.encode(); !bytes.Equal(got, b) {
			t.Fatalf("%x decodes to %+v, which re-encodes to %x", b, e, got)
		}
	})
}
