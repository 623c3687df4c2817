package handshake

import (
	"crypto/rand"
	"crypto/sha512"
	"encoding/binary"
	"fmt"

	"github.com/gtank/ristretto255"
)

// CPace (a balanced PAKE, draft-irtf-cfrg-cpace) on the ristretto255 group:
//
//	g  = ristretto255.FromUniformBytes(SHA-512(lv("weave cpace v2 generator") ||
//	                                          lv(PSK) || lv(channel id)))
//	each end draws a secret scalar y and sends Y = y·g in its hello
//	K  = y·Y_peer (refused if Y_peer does not decode or either is the identity)
//
// where lv(x) is x prefixed by its 4-byte length. The generator depends on
// the password, so the shares are uniformly random group elements to anyone
// who does not know it: a passive observer learns nothing about the
// password, and an active attacker who sends Y' = y'·g' for the generator
// g' of one guess can check only that guess (computing K for any other
// password from what it saw is the computational Diffie-Hellman problem).
// K then feeds the key schedule (deriveKeys), and key confirmation tells
// both ends whether the passwords matched.

// cpaceChannel binds the generator to this protocol version.
const cpaceChannel = "weave mesh v2"

// cpaceGenerator derives the password-dependent generator.
func cpaceGenerator(psk *PSK) *ristretto255.Element {
	h := sha512.New()
	for _, part := range [][]byte{[]byte("weave cpace v2 generator"), psk[:], []byte(cpaceChannel)} {
		h.Write(binary.BigEndian.AppendUint32(nil, uint32(len(part))))
		h.Write(part)
	}
	return ristretto255.NewElement().FromUniformBytes(h.Sum(nil))
}

// cpaceShare draws a secret scalar and returns it with its public share
// y·g (encoded).
func cpaceShare(g *ristretto255.Element) (*ristretto255.Scalar, [32]byte, error) {
	var seed [64]byte
	if _, err := rand.Read(seed[:]); err != nil {
		return nil, [32]byte{}, fmt.Errorf("cpace scalar: %w", err)
	}
	y := ristretto255.NewScalar().FromUniformBytes(seed[:])
	clear(seed[:])
	var share [32]byte
	ristretto255.NewElement().ScalarMult(y, g).Encode(share[:0])
	return y, share, nil
}

// cpaceSecret returns K = y·theirs, encoded. A share that is not a valid
// encoding or is the identity (which would make K independent of y) is
// refused.
func cpaceSecret(y *ristretto255.Scalar, theirs [32]byte) ([]byte, error) {
	var Y ristretto255.Element
	if err := Y.Decode(theirs[:]); err != nil {
		return nil, fmt.Errorf("%w: bad CPace share: %w", ErrProtocol, err)
	}
	id := ristretto255.NewElement()
	if Y.Equal(id) == 1 {
		return nil, fmt.Errorf("%w: bad CPace share: the identity element", ErrProtocol)
	}
	K := ristretto255.NewElement().ScalarMult(y, &Y)
	if K.Equal(id) == 1 {
		return nil, fmt.Errorf("%w: bad CPace share: shared secret is the identity", ErrProtocol)
	}
	return K.Encode(nil), nil
}
