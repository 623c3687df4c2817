// Package handshake owns the first exchange on a new TCP connection between
// two routers (protocol version, identities, encryption keys) and the framed,
// optionally sealed, message stream that follows it. See docs/handshake.md.
//
// Both ends send their hello at once, so neither waits for the other to
// speak first; with a password both ends then send a key confirmation. After
// that a Session carries length-prefixed messages, sealed with
// ChaCha20-Poly1305 under per-direction keys when there is a password.
package handshake

import (
	"context"
	"errors"
	"net"
	"time"

	"github.com/weavelab/weave/mesh/identity"
)

// Errors that callers tell apart with errors.Is. The returned errors wrap
// them with the remote peer and the details.
var (
	// ErrWrongPassword: key confirmation failed, so the two ends derived
	// different keys: the passwords (or the network salts) differ, or the
	// handshake was altered in transit.
	ErrWrongPassword = errors.New("authentication failed: the password differs")
	// ErrPasswordMismatch: one end has a password and the other has none.
	ErrPasswordMismatch = errors.New("password mismatch")
	// ErrVersion: the two ends have no protocol version in common.
	ErrVersion = errors.New("no common protocol version")
	// ErrProtocol: the remote sent bytes that are not a valid hello or frame
	// (bad magic, bad field, tampered, replayed, reordered or dropped frame).
	ErrProtocol = errors.New("protocol error")
	// ErrTooLarge: a message or frame exceeds MaxMessageSize.
	ErrTooLarge = errors.New("message too large")
)

// Protocol versions this package speaks. Both ends use the highest version
// that both support.
const (
	MinVersion uint8 = 1
	MaxVersion uint8 = 1
)

// MaxMessageSize bounds the payload of one Send/Recv message.
const MaxMessageSize = 8 << 20

// Defaults for the zero values in Config.
const (
	DefaultTimeout       = 10 * time.Second
	DefaultRekeyMessages = 1 << 16
	DefaultRekeyInterval = 10 * time.Minute
)

// Config describes our side of a handshake.
type Config struct {
	Local   identity.Peer
	UDPPort int  // our UDP data port, announced to the remote (0 = none)
	PSK     *PSK // nil when the network has no password; see DeriveKey
	// Timeout bounds the whole handshake when ctx has an earlier deadline
	// or none; 0 means DefaultTimeout.
	Timeout time.Duration
	// A sealed session ratchets its send key after RekeyMessages messages or
	// RekeyInterval since the last key change, whichever comes first
	// (0 means DefaultRekeyMessages / DefaultRekeyInterval).
	RekeyMessages uint64
	RekeyInterval time.Duration
	// Now is the clock used for RekeyInterval; nil means time.Now.
	Now func() time.Time
}

// Result is what a completed handshake learnt about the remote.
type Result struct {
	Remote        identity.Peer
	RemoteUDPPort int
	ConnID        uint64 // the same value on both ends
	Version       uint8  // negotiated protocol version
	// DataKeys are the UDP data-plane keys, nil without a password.
	DataKeys *DataKeys
}

// Session is the message stream on an authenticated connection.
// Send is safe for concurrent use; Recv must be called from one goroutine.
// Close closes the connection, which unblocks Send and Recv.
// After any error from Send or Recv the stream is unusable: later calls
// return the same error, and the caller should Close the session.
type Session interface {
	Result() Result
	Send(msg []byte) error
	Recv() ([]byte, error)
	Close() error
}

// Client runs the initiator side (the end that dialled) on conn.
// On error conn is closed.
func Client(ctx context.Context, conn net.Conn, cfg Config) (Session, error) {
	return run(ctx, conn, cfg, true)
}

// Server runs the responder side (the end that accepted) on conn.
// On error conn is closed.
func Server(ctx context.Context, conn net.Conn, cfg Config) (Session, error) {
	return run(ctx, conn, cfg, false)
}
