package handshake

import (
	"runtime/debug"

	"golang.org/x/crypto/argon2"
)

// PSK is the key stretched from the network password (see DeriveKey).
type PSK [32]byte

// DefaultSalt is the Argon2id salt used when the network has no salt of its
// own. A per-network salt (any random string shared by all routers of the
// network) stops an attacker from precomputing one dictionary for every
// weave network at once.
const DefaultSalt = "weave-network-password-v1"

// Argon2id parameters: the second recommended option of RFC 9106 section 4
// (3 passes over 64 MiB, 4 lanes). Every router of a network must use the
// same ones, so they are part of the protocol version.
const (
	argonTime    = 3
	argonMemory  = 64 * 1024 // KiB
	argonThreads = 4
)

// DeriveKey stretches password with Argon2id under salt (nil or empty means
// DefaultSalt). It is slow (about a hundred milliseconds and 64 MiB) by
// design: call it once at startup and keep the PSK.
//
// Before it returns, DeriveKey hands the 64 MiB work area back to the
// operating system (a full garbage collection and scavenge, a few
// milliseconds). Left to the runtime, a router that derives its key at
// startup and then sits idle would keep it resident until the next forced
// collection and the background scavenger got to it, minutes later: 64 MiB
// of an idle router's 80.
func DeriveKey(password, salt []byte) *PSK {
	if len(salt) == 0 {
		salt = []byte(DefaultSalt)
	}
	var k PSK
	copy(k[:], argon2.IDKey(password, salt, argonTime, argonMemory, argonThreads, uint32(len(k))))
	debug.FreeOSMemory()
	return &k
}
