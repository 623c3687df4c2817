//go:build !purego

package handshake

// purego: see purego.go.
const purego = false
