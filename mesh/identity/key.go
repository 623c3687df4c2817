package identity

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"sync"
)

// A router's name is bound to its long-term identity key: the name is a hash
// of the public key (NameOf), so whoever claims a name must sign with the key
// that hashes to it. Nobody hands out names, nothing is trusted on first use,
// and a key that leaks only lets its holder speak for that one name.
//
// Forging a name means finding another key that hashes to it: a second
// preimage on 46 bits (48 minus the locally-administered and multicast
// bits). A plain hash would make that about 2^46 cheap steps, which a
// determined attacker can afford, so the hash is iterated NameIterations
// times: each candidate key costs 2^12 SHA-256 compressions more, about
// 2^58 in all, and a router pays the same 2^12 only once per key it sees
// (results are cached). On top of that, a peer already in a router's
// topology keeps its key until it is forgotten (topology pinning), so a
// collision found later does not displace it.

// NameIterations is how many times NameOf iterates its hash. Part of the
// protocol: every router must derive the same name from a key.
const NameIterations = 1 << 12

// PublicKeySize and SignatureSize are the sizes on the wire.
const (
	PublicKeySize = ed25519.PublicKeySize
	SignatureSize = ed25519.SignatureSize
	SeedSize      = ed25519.SeedSize
)

// PublicKey is the public half of a router's identity key (Ed25519).
type PublicKey [PublicKeySize]byte

// Key is a router's long-term identity key. Keep it secret; the state dir
// stores its seed with mode 0600.
type Key struct {
	priv ed25519.PrivateKey
	pub  PublicKey
}

// GenerateKey draws a fresh identity key.
func GenerateKey() (*Key, error) {
	seed := make([]byte, SeedSize)
	if _, err := rand.Read(seed); err != nil {
		return nil, fmt.Errorf("identity key: %w", err)
	}
	return KeyFromSeed(seed)
}

// KeyFromSeed rebuilds a key from its 32-byte seed (see Key.Seed).
func KeyFromSeed(seed []byte) (*Key, error) {
	if len(seed) != SeedSize {
		return nil, fmt.Errorf("identity key: seed of %d bytes, want %d", len(seed), SeedSize)
	}
	priv := ed25519.NewKeyFromSeed(seed)
	return &Key{priv: priv, pub: PublicKey(priv.Public().(ed25519.PublicKey))}, nil
}

// Seed returns the 32 bytes from which KeyFromSeed rebuilds the key.
func (k *Key) Seed() []byte { return k.priv.Seed() }

// Public returns the public key.
func (k *Key) Public() PublicKey { return k.pub }

// Name returns the peer name bound to the key.
func (k *Key) Name() PeerName { return NameOf(k.pub) }

// Sign signs msg.
func (k *Key) Sign(msg []byte) [SignatureSize]byte {
	return [SignatureSize]byte(ed25519.Sign(k.priv, msg))
}

// Verify reports whether sig is p's signature of msg.
func (p PublicKey) Verify(msg, sig []byte) bool {
	return len(sig) == SignatureSize && ed25519.Verify(ed25519.PublicKey(p[:]), msg, sig)
}

// IsZero reports whether p is the zero key (no key).
func (p PublicKey) IsZero() bool { return p == PublicKey{} }

// ErrNameNotBound is returned (wrapped) when a peer claims a name that is
// not the name of its key.
var ErrNameNotBound = errors.New("peer name is not bound to its key")

// CheckBinding returns nil when name is NameOf(p), else an error wrapping
// ErrNameNotBound.
func CheckBinding(name PeerName, p PublicKey) error {
	if got := NameOf(p); got != name {
		return fmt.Errorf("%w: %s claims the key of %s", ErrNameNotBound, name, got)
	}
	return nil
}

// nameCache remembers NameOf results; bounded, cleared when full.
var nameCache struct {
	sync.Mutex
	m map[PublicKey]PeerName
}

const nameCacheMax = 1 << 16

// NameOf returns the peer name bound to public key p: the first six bytes
// of an iterated SHA-256 of the key, marked locally administered and
// unicast like a generated MAC address. Results are cached.
func NameOf(p PublicKey) PeerName {
	nameCache.Lock()
	n, ok := nameCache.m[p]
	nameCache.Unlock()
	if ok {
		return n
	}
	n = nameOf(p)
	nameCache.Lock()
	if nameCache.m == nil || len(nameCache.m) >= nameCacheMax {
		nameCache.m = make(map[PublicKey]PeerName)
	}
	nameCache.m[p] = n
	nameCache.Unlock()
	return n
}

func nameOf(p PublicKey) PeerName {
	const label = "weave peer name v1"
	var buf [len(label) + PublicKeySize + sha256.Size]byte
	copy(buf[:], label)
	copy(buf[len(label):], p[:])
	h := sha256.Sum256(buf[:len(label)+PublicKeySize])
	for range NameIterations - 1 {
		copy(buf[len(label)+PublicKeySize:], h[:])
		h = sha256.Sum256(buf[:])
	}
	b := h[:6]
	b[0] = (b[0] | 0x02) &^ 0x01 // locally administered, unicast
	return PeerNameFromMAC(b)
}
