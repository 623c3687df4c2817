package overlay

import (
	"errors"
	"testing"
)

func TestControlHello(t *testing.T) {
	h := hello{Index: 0x10002, MaxDatagram: 1472}
	got, err := decodeControl(encodeHello(h))
	if err != nil || got != h {
		t.Fatalf("round trip %+v %v", got, err)
	}
	// later versions may append fields
	if _, err := decodeControl(append(encodeHello(h), 9, 9)); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		b    []byte
	}{
		{"empty", nil},
		{"version", []byte{2, 1, 0, 0, 0, 1, 5, 0}},
		{"type", []byte{1, 2, 0, 0, 0, 1, 5, 0}},
		{"short", []byte{1, 1, 0, 0, 0, 1, 5}},
		{"zero index", []byte{1, 1, 0, 0, 0, 0, 5, 0}},
		{"tiny datagram", []byte{1, 1, 0, 0, 0, 1, 0, 10}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := decodeControl(tc.b); !errors.Is(err, errControl) {
				t.Fatalf("got %v", err)
			}
		})
	}
}

func FuzzDecodeControl(f *testing.F) {
	f.Add(encodeHello(hello{Index: 1, MaxDatagram: 1472}))
	f.Add([]byte{1, 1})
	f.Fuzz(func(t *testing.T, b []byte) {
		h, err := decodeControl(b)
		if err != nil {
			return
		}
		if h.Index == 0 || h.MaxDatagram < 512 {
			t.Fatalf("accepted invalid hello %+v", h)
		}
		if again, err := decodeControl(encodeHello(h)); err != nil || again != h {
			t.Fatalf("re-encode: %+v %v", again, err)
		}
	})
}
