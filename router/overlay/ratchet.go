package overlay

import "github.com/weavelab/weave/mesh/handshake"

// defaultRatchet steps a data key to the next epoch. Both ends must use the
// same function; it is the handshake's one-way step.
func defaultRatchet(k [32]byte) [32]byte { return handshake.Ratchet(k) }
