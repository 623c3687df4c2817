package replicate

import (
	"bytes"
	"errors"
	"strings"
	"testing"
)

func TestFrameRoundTrip(t *testing.T) {
	for _, tc := range []struct {
		name string
		f    frame
	}{
		{"packet", frame{kind: kindPacket, payload: []byte("ping")}},
		{"syn", frame{kind: kindSYN, stream: 7, seqLimit: 32, byteLimit: 1 << 18}},
		{"accept", frame{kind: kindAccept, fromAcceptor: true, stream: 7, seqLimit: 32, byteLimit: 1 << 40}},
		{"data", frame{kind: kindData, stream: 1, seq: 5, payload: []byte("hello")}},
		{"data from acceptor", frame{kind: kindData, fromAcceptor: true, stream: 0xffffffff, seq: 0, payload: make([]byte, MaxSegment)}},
		{"window", frame{kind: kindWindow, fromAcceptor: true, stream: 9, seqLimit: 1, byteLimit: 2}},
		{"fin", frame{kind: kindFIN, stream: 3, seq: 12}},
		{"reset", frame{kind: kindReset, fromAcceptor: true, stream: 3, reason: resetLost}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := tc.f.encode()
			got, err := decodeFrame(b)
			if err != nil {
				t.Fatalf("decode: %v", err)
			}
			if !bytes.Equal(got.encode(), b) {
				t.Fatalf("re-encoded %x, want %x", got.encode(), b)
			}
			if got.kind != tc.f.kind || got.fromAcceptor != tc.f.fromAcceptor || got.stream != tc.f.stream ||
				got.seq != tc.f.seq || got.seqLimit != tc.f.seqLimit || got.byteLimit != tc.f.byteLimit ||
				got.reason != tc.f.reason || !bytes.Equal(got.payload, tc.f.payload) {
				t.Fatalf("decoded %+v, want %+v", got, tc.f)
			}
		})
	}
}

func TestFrameRejects(t *testing.T) {
	valid := func(f frame) []byte { return f.encode() }
	syn := valid(frame{kind: kindSYN, stream: 1, seqLimit: 1, byteLimit: 1})
	for _, tc := range []struct {
		name string
		b    []byte
		want string
	}{
		{"empty", nil, "empty"},
		{"empty packet", []byte{kindPacket}, "empty packet"},
		{"unknown kind", []byte{0x08, 0, 0, 0, 0, 1}, "unknown kind"},
		{"kind zero", []byte{0x00}, "unknown kind"},
		{"short header", []byte{kindFIN, 0, 0, 0, 1}, "too short"},
		{"bad flags", append([]byte{kindFIN, 0x02}, 0, 0, 0, 1, 0, 0, 0, 0), "unknown flags"},
		{"stream zero", valid(frame{kind: kindFIN, stream: 0}), "stream 0"},
		{"syn from acceptor", valid(frame{kind: kindSYN, fromAcceptor: true, stream: 1}), "wrong side"},
		{"accept from dialler", valid(frame{kind: kindAccept, stream: 1}), "wrong side"},
		{"syn too long", append(syn, 0), "want 12"},
		{"syn too short", syn[:len(syn)-1], "want 12"},
		{"data without payload", valid(frame{kind: kindData, stream: 1, seq: 1}), "without payload"},
		{"data too big", valid(frame{kind: kindData, stream: 1, payload: make([]byte, MaxSegment+1)}), "exceeds"},
		{"fin with payload", append(valid(frame{kind: kindFIN, stream: 1}), 'x'), "want 4"},
		{"unknown reason", valid(frame{kind: kindReset, stream: 1, reason: 99}), "unknown reset reason"},
		{"reason zero", valid(frame{kind: kindReset, stream: 1, reason: 0}), "unknown reset reason"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := decodeFrame(tc.b)
			if !errors.Is(err, ErrBadFrame) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("decode(%x) = %v, want ErrBadFrame with %q", tc.b, err, tc.want)
			}
		})
	}
}

// FuzzFrame checks that the decoder never panics and that whatever it
// accepts re-encodes to the same bytes (so it accepts one spelling only).
func FuzzFrame(f *testing.F) {
	for _, fr := range []frame{
		{kind: kindPacket, payload: []byte{1, 2, 3}},
		{kind: kindSYN, stream: 1, seqLimit: 32, byteLimit: 1 << 18},
		{kind: kindAccept, fromAcceptor: true, stream: 1, seqLimit: 32, byteLimit: 1 << 18},
		{kind: kindData, stream: 2, seq: 3, payload: []byte("data")},
		{kind: kindWindow, fromAcceptor: true, stream: 2, seqLimit: 64, byteLimit: 1 << 19},
		{kind: kindFIN, stream: 2, seq: 4},
		{kind: kindReset, fromAcceptor: true, stream: 2, reason: resetProtocol},
	} {
		f.Add(fr.encode())
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		fr, err := decodeFrame(b)
		if err != nil {
			if !errors.Is(err, ErrBadFrame) {
				t.Fatalf("error %v does not wrap ErrBadFrame", err)
			}
			return
		}
		if got := fr.encode(); !bytes.Equal(got, b) {
			t.Fatalf("%x decodes to %+v, which re-encodes to %x", b, fr, got)
		}
	})
}
