package encap

import (
	"crypto/aes"
	"crypto/cipher"
	"errors"
	"fmt"

	"golang.org/x/crypto/chacha20poly1305"

	"github.com/weavelab/weave/mesh/handshake"
)

// ErrSuite: a Sealer or Opener was asked for a cipher suite this package
// does not know (or none). There is no fallback: a connection whose
// handshake settled on a suite uses exactly that suite or none at all.
var ErrSuite = errors.New("unknown data cipher suite")

// checkSuite returns nil for the suites newAEAD can build.
func checkSuite(s handshake.Suite) error {
	switch s {
	case handshake.SuiteAESGCM, handshake.SuiteChaCha:
		return nil
	}
	return fmt.Errorf("%w: %s", ErrSuite, s)
}

// newAEAD builds the AEAD of suite s for one key. It is the only place a
// key becomes a cipher; a variable so that tests can count constructions
// (a forged datagram must never cause one). Every suite has a 32-byte key,
// a 12-byte nonce and a TagLen tag, so the datagram format, the counter
// nonces and the replay window do not depend on the suite.
var newAEAD = func(s handshake.Suite, key *[32]byte) (cipher.AEAD, error) {
	switch s {
	case handshake.SuiteAESGCM:
		block, err := aes.NewCipher(key[:])
		if err != nil {
			return nil, fmt.Errorf("aes: %w", err)
		}
		aead, err := cipher.NewGCM(block)
		if err != nil {
			return nil, fmt.Errorf("gcm: %w", err)
		}
		return aead, nil
	case handshake.SuiteChaCha:
		aead, err := chacha20poly1305.New(key[:])
		if err != nil {
			return nil, fmt.Errorf("chacha20-poly1305: %w", err)
		}
		return aead, nil
	}
	return nil, checkSuite(s)
}
