package handshake

import (
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
)

// DataKeys are the per-direction keys that the UDP data plane uses for one
// connection, at epoch 0. The data plane advances both with Ratchet.
// The client's Send equals the server's Recv and vice versa.
type DataKeys struct {
	Send [32]byte
	Recv [32]byte
}

// Ratchet is the one-way key step used for rekeying: knowing the result
// tells nothing about k, so erasing k after a step keeps earlier traffic
// safe if the new key leaks. Both the sealed control stream and the data
// plane use it.
func Ratchet(k [32]byte) [32]byte {
	return expand(k[:], "ratchet", nil)
}

// transcriptHash binds everything both hellos said, in role order
// (client's first), so that a change to either is caught by key
// confirmation.
func transcriptHash(clientHello, serverHello []byte) [32]byte {
	h := sha256.New()
	h.Write([]byte("weave handshake transcript v1"))
	for _, m := range [][]byte{clientHello, serverHello} {
		h.Write(binary.BigEndian.AppendUint32(nil, uint32(len(m))))
		h.Write(m)
	}
	return [32]byte(h.Sum(nil))
}

// connID is the connection's public identifier, from both sides' nonces
// (which the transcript contains), so it is the same on both ends.
func connID(th [32]byte) uint64 {
	sum := sha256.Sum256(append([]byte("weave connid "), th[:]...))
	return binary.BigEndian.Uint64(sum[:8])
}

// sessionKeys is everything the key schedule produces for one connection.
// Names say which direction a key protects: c2s is sent by the client.
type sessionKeys struct {
	chain                  [32]byte // input to the next in-band key exchange
	confirmC2S, confirmS2C [32]byte
	controlC2S, controlS2C [32]byte
	dataC2S, dataS2C       [32]byte
}

// deriveKeys is the key schedule:
//
//	prk = HKDF-Extract(salt = PSK, ikm = X25519(ephemeral, remote ephemeral))
//	key(label) = HKDF-Expand(prk, "weave v1 " + label + transcript hash, 32)
//
// Without the PSK no key can be computed; without an ephemeral private key
// (erased after the handshake) neither.
func deriveKeys(psk *PSK, dh []byte, th [32]byte) sessionKeys {
	prk, err := hkdf.Extract(sha256.New, dh, psk[:])
	if err != nil {
		panic("handshake: hkdf extract: " + err.Error()) // cannot fail for SHA-256
	}
	return sessionKeys{
		chain:      expand(prk, "chain", th[:]),
		confirmC2S: expand(prk, "confirm c2s", th[:]),
		confirmS2C: expand(prk, "confirm s2c", th[:]),
		controlC2S: expand(prk, "control c2s", th[:]),
		controlS2C: expand(prk, "control s2c", th[:]),
		dataC2S:    expand(prk, "data c2s", th[:]),
		dataS2C:    expand(prk, "data s2c", th[:]),
	}
}

// exchangeKeys is the key schedule of in-band key exchange number n (see
// session.go):
//
//	prk_n = HKDF-Extract(salt = chain_{n-1}, ikm = X25519(ephemerals of exchange n))
//	key(label) = HKDF-Expand(prk_n, "weave v1 " + label + "kx" + n, 32)
//
// chain_0 comes from the handshake's key schedule. Every key of exchange n
// needs both the previous chain (which only the two ends have) and a fresh
// Diffie-Hellman secret (which a passive holder of the old keys cannot
// compute).
func exchangeKeys(chain [32]byte, dh []byte, n uint16) sessionKeys {
	prk, err := hkdf.Extract(sha256.New, dh, chain[:])
	if err != nil {
		panic("handshake: hkdf extract: " + err.Error())
	}
	ctx := []byte{'k', 'x', byte(n >> 8), byte(n)}
	return sessionKeys{
		chain:      expand(prk, "chain", ctx),
		controlC2S: expand(prk, "control c2s", ctx),
		controlS2C: expand(prk, "control s2c", ctx),
		dataC2S:    expand(prk, "data c2s", ctx),
		dataS2C:    expand(prk, "data s2c", ctx),
	}
}

// expand is HKDF-Expand-SHA256 to 32 bytes with info "weave v1 label" + ctx.
func expand(prk []byte, label string, ctx []byte) [32]byte {
	k, err := hkdf.Expand(sha256.New, prk, "weave v1 "+label+string(ctx), 32)
	if err != nil {
		panic("handshake: hkdf expand: " + err.Error()) // cannot fail for 32 bytes
	}
	return [32]byte(k)
}

// confirmMAC is the key confirmation one side sends: a MAC of the
// transcript under its confirm key.
func confirmMAC(key [32]byte, th [32]byte) [32]byte {
	m := hmac.New(sha256.New, key[:])
	m.Write(th[:])
	return [32]byte(m.Sum(nil))
}
