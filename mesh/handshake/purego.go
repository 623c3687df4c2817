//go:build purego

package handshake

// purego: the standard library is built without its assembly (the purego
// build tag), so its AES is the table implementation on every CPU.
const purego = true
