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
	ErrWrongPassword = errors.New("authentication failed: the password or the network salt differs")
	// ErrPasswordMismatch: one end has a password and the other has none.
	ErrPasswordMismatch = errors.New("password mismatch")
	// ErrSelf: the remote proved to be this very peer (same name, key
	// and UID): a connection to ourselves.
	ErrSelf = errors.New("connection to ourselves")
	// ErrVersion: the two ends have no protocol version in common.
	ErrVersion = errors.New("no common protocol version")
	// ErrProtocol: the remote sent bytes that are not a valid hello or frame
	// (bad magic, bad field, tampered, replayed, reordered or dropped frame).
	ErrProtocol = errors.New("protocol error")
	// ErrTooLarge: a message or frame exceeds MaxMessageSize.
	ErrTooLarge = errors.New("message too large")
	// ErrIdentity: the remote's name is not bound to the identity key it
	// sent, or it could not prove that it holds that key.
	ErrIdentity = errors.New("identity proof failed")
	// ErrCipher: with a password, the two ends accept no data-plane cipher
	// suite in common (see Config.Cipher).
	ErrCipher = errors.New("no data cipher in common")
)

// Protocol versions this package speaks. Both ends use the highest version
// that both support. The version covers the messages the mesh sends over
// the session too: version 3 changed topology gossip (stamps announced and
// entries pulled, bucketed anti-entropy; see mesh/envelope.go), so a
// version 2 peer is refused at the handshake, with ErrVersion, rather than
// failing on the first summary.
const (
	MinVersion uint8 = 3
	MaxVersion uint8 = 3
)

// MaxMessageSize bounds the payload of one Send/Recv message.
const MaxMessageSize = 8 << 20

// Defaults for the zero values in Config.
const (
	DefaultTimeout       = 10 * time.Second
	DefaultRekeyMessages = 1 << 16
	DefaultRekeyInterval = 10 * time.Minute
	// DefaultKeyExchangeInterval is how often a sealed session runs a fresh
	// ephemeral key exchange (see Config.KeyExchangeInterval).
	DefaultKeyExchangeInterval = 2 * time.Minute
)

// Config describes our side of a handshake.
type Config struct {
	Local identity.Peer
	// Key is our identity key; Local.Name must be its name. Required.
	Key     *identity.Key
	UDPPort int  // our UDP data port, announced to the remote (0 = none)
	PSK     *PSK // nil when the network has no password; see DeriveKey
	// Cipher says which data-plane suites we accept and prefer (with a
	// password); "" means CipherAuto.
	Cipher CipherPolicy
	// Timeout bounds the whole handshake when ctx has an earlier deadline
	// or none; 0 means DefaultTimeout.
	Timeout time.Duration
	// A sealed session ratchets its send key after RekeyMessages messages or
	// RekeyInterval since the last key change, whichever comes first
	// (0 means DefaultRekeyMessages / DefaultRekeyInterval).
	RekeyMessages uint64
	RekeyInterval time.Duration
	// On a sealed session the client starts a fresh ephemeral key exchange
	// every KeyExchangeInterval (0 means DefaultKeyExchangeInterval): new
	// control keys for both directions and new data keys, delivered to the
	// handler set with Session.OnDataKeys. A key that leaks stops being
	// useful at the next exchange (post-compromise security).
	KeyExchangeInterval time.Duration
	// Now is the clock used for RekeyInterval; nil means time.Now.
	Now func() time.Time
}

// Result is what a completed handshake learnt about the remote.
type Result struct {
	Remote        identity.Peer
	RemoteKey     identity.PublicKey // the remote's identity key; Remote.Name is bound to it
	RemoteUDPPort int
	ConnID        uint64 // the same value on both ends
	Version       uint8  // negotiated protocol version
	// DataKeys are the UDP data-plane keys, nil without a password.
	DataKeys *DataKeys
	// Suite is the data-plane cipher suite both ends settled on (0 without
	// a password). It is bound into the transcript, so it cannot be
	// downgraded.
	Suite Suite
}

// DataKeyUpdate hands the data plane fresh keys from an in-band ephemeral
// key exchange on a live connection (see docs/handshake.md, "Fresh keys on
// live connections"). Each exchange produces one epoch; the two halves of it
// arrive in an order that never lets a sender use a key before the receiver
// has it:
//
//   - Recv != nil: from now on, datagrams from the peer that carry Epoch open
//     with *Recv (install it beside the current key; switch to it when the
//     first datagram of that epoch authenticates).
//   - Send != nil: seal from now on at Epoch with *Send (the peer already
//     holds the matching receive key).
//
// One update may carry both halves. Epoch counts exchanges (1, 2, ... and
// wraps at 2^16); epoch 0 is the handshake's own Result.DataKeys.
type DataKeyUpdate struct {
	Epoch uint16
	Recv  *[32]byte
	Send  *[32]byte
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
	// OnDataKeys sets the function that receives fresh data keys from the
	// in-band key exchanges (only on sealed sessions). It is called from
	// the Recv goroutine, in order, and must not block. Updates that arrive
	// before a handler is set are kept and handed to it when it is set.
	OnDataKeys(f func(DataKeyUpdate))
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
