package encap

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"errors"
	"testing"

	"golang.org/x/crypto/chacha20poly1305"

	"github.com/weavelab/weave/mesh/handshake"
)

// TestUnknownSuiteRefused: a suite this package does not know (or none) is
// an error at construction, never a silent fallback to some other AEAD.
func TestUnknownSuiteRefused(t *testing.T) {
	for _, suite := range []handshake.Suite{0, 3, 0xff} {
		t.Run(suite.String(), func(t *testing.T) {
			if s, err := NewSealer(suite, epochKey(0)); !errors.Is(err, ErrSuite) || s != nil {
				t.Errorf("NewSealer: %v, sealer %v", err, s)
			}
			if o, err := NewOpener(suite, epochKey(0), nil); !errors.Is(err, ErrSuite) || o != nil {
				t.Errorf("NewOpener: %v, opener %v", err, o)
			}
		})
	}
}

// reference builds suite's AEAD straight from the standard library or
// x/crypto, independent of newAEAD.
func reference(t testing.TB, suite handshake.Suite, key [32]byte) cipher.AEAD {
	t.Helper()
	switch suite {
	case handshake.SuiteAESGCM:
		block, err := aes.NewCipher(key[:])
		if err != nil {
			t.Fatal(err)
		}
		gcm, err := cipher.NewGCM(block)
		if err != nil {
			t.Fatal(err)
		}
		return gcm
	case handshake.SuiteChaCha:
		aead, err := chacha20poly1305.New(key[:])
		if err != nil {
			t.Fatal(err)
		}
		return aead
	}
	t.Fatalf("no reference AEAD for %s", suite)
	return nil
}

// TestSuiteIsTheNamedAEAD: a datagram sealed with a suite opens with that
// suite's reference AEAD (nonce = header bytes 12..23, header as
// associated data), at epoch 0 and for a key installed later, which must
// use the same suite; and the sealer and opener report their suite.
func TestSuiteIsTheNamedAEAD(t *testing.T) {
	forEachSuite(t, func(t *testing.T, suite handshake.Suite) {
		s, o := pair(t, suite)
		if s.Suite() != suite || o.Suite() != suite {
			t.Fatalf("sealer reports %s, opener %s", s.Suite(), o.Suite())
		}
		for _, e := range []uint16{0, 1} {
			if e != 0 {
				rekey(t, s, o, e)
			}
			d := sealed(t, s, 0x5a)
			p, err := reference(t, suite, epochKey(e)).Open(nil, d[HeaderLen-12:HeaderLen], d[HeaderLen:], d[:HeaderLen])
			if err != nil {
				t.Fatalf("epoch %d: the reference %s does not open the datagram: %v", e, suite, err)
			}
			fr := NewFrames(p)
			if _, f, ok := fr.Next(); !ok || !bytes.Equal(f, frame(64, 0x5a)) {
				t.Fatalf("epoch %d: frame not recovered by the reference AEAD", e)
			}
		}
	})
}

// TestSuitesDoNotCrossOpen: with the same key, a datagram sealed with one
// suite fails authentication with the other (ErrAuth), at epoch 0 and
// after a rekey, and leaves the opener as it was: its epoch does not move
// and the genuine datagram of its own suite still opens.
func TestSuitesDoNotCrossOpen(t *testing.T) {
	for _, sealWith := range suites {
		for _, openWith := range suites {
			if sealWith == openWith {
				continue
			}
			t.Run(sealWith.String()+"-to-"+openWith.String(), func(t *testing.T) {
				foreign, _ := pair(t, sealWith)
				own, o := pair(t, openWith)
				for _, e := range []uint16{0, 1} {
					if e != 0 {
						rekey(t, foreign, o, e)
						if err := own.Install(e, epochKey(e)); err != nil {
							t.Fatal(err)
						}
					}
					d := sealed(t, foreign, 1)
					if _, err := open(o, d); !errors.Is(err, ErrAuth) {
						t.Fatalf("epoch %d: %s datagram opened with %s: %v, want ErrAuth", e, sealWith, openWith, err)
					}
					if o.Epoch() != 0 {
						t.Fatalf("a datagram of the other suite moved the opener to epoch %d", o.Epoch())
					}
					if _, err := open(o, sealed(t, own, 2)); err != nil {
						t.Fatalf("epoch %d: genuine %s datagram after the foreign one: %v", e, openWith, err)
					}
				}
			})
		}
	}
}
