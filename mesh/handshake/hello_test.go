package handshake

import (
	"bytes"
	"errors"
	"strings"
	"testing"
)

func testHello() *hello {
	h := &hello{MinVersion: MinVersion, MaxVersion: MaxVersion, Password: true, Peer: testPeer(3), UDPPort: 6783, Identity: testKey(3).Public()}
	for i := range h.Nonce {
		h.Nonce[i] = byte(i)
	}
	h.Element[0] = 9
	h.Suites = offer{Accept: suiteMask, Prefer: SuiteChaCha}
	return h
}

func TestHelloRoundTrip(t *testing.T) {
	for _, h := range []*hello{testHello(), {MinVersion: 1, MaxVersion: 3, Peer: testPeer(4), Identity: testKey(4).Public()}} {
		b := h.encode()
		got, raw, err := readHello(bytes.NewReader(b))
		if err != nil {
			t.Fatal(err)
		}
		if *got != *h || !bytes.Equal(raw, b) {
			t.Fatalf("decoded %+v, want %+v", got, h)
		}
		// Extension bytes after the nickname are ignored (and kept in raw).
		ext := append(bytes.Clone(b), 1, 2, 3)
		ext[11] += 3
		if got, err := decodeHello(ext); err != nil || *got != *h {
			t.Fatalf("with extensions: %+v, %v", got, err)
		}
	}
}

func TestHelloDecodeErrors(t *testing.T) {
	good := testHello().encode()
	edit := func(f func(b []byte) []byte) []byte { return f(bytes.Clone(good)) }
	for _, tc := range []struct {
		name string
		b    []byte
		msg  string
	}{
		{"empty", nil, "truncated"},
		{"bad magic", edit(func(b []byte) []byte { b[0] = 'W'; return b }), "bad magic"},
		{"zero version", edit(func(b []byte) []byte { b[8] = 0; return b }), "version range"},
		{"inverted range", edit(func(b []byte) []byte { b[8] = MaxVersion + 1; return b }), "version range"},
		{"length mismatch", edit(func(b []byte) []byte { b[11]++; return b }), "body length"},
		{"short body", edit(func(b []byte) []byte { b[11] = 10; return b[:22] }), "shorter"},
		{"long nickname", edit(func(b []byte) []byte { b[12+helloFixedLen-1] = 65; return b }), "nickname"},
		{"nickname past end", edit(func(b []byte) []byte { b[12+helloFixedLen-1] = 50; return b }), "nickname"},
		{"bad utf8", edit(func(b []byte) []byte { b[len(b)-1] = 0xff; return b }), "UTF-8"},
		{"zero uid", edit(func(b []byte) []byte { clear(b[12+7 : 12+15]); return b }), "zero name or uid"},
		{"password without share", edit(func(b []byte) []byte { clear(b[12+65 : 12+97]); return b }), "disagree"},
		{"no identity key", edit(func(b []byte) []byte { clear(b[12+33 : 12+65]); return b }), "no identity key"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := decodeHello(tc.b)
			if !errors.Is(err, ErrProtocol) || !strings.Contains(err.Error(), tc.msg) {
				t.Fatalf("got %v, want ErrProtocol saying %q", err, tc.msg)
			}
		})
	}
}

func TestReadHelloBounds(t *testing.T) {
	b := append(helloMagic[:], 1, 1, 0xff, 0xff)
	if _, _, err := readHello(bytes.NewReader(b)); !errors.Is(err, ErrProtocol) {
		t.Fatalf("65535-byte hello body: %v, want ErrProtocol", err)
	}
}
