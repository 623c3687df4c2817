// Package handshake owns the first exchange on a new TCP connection between
// two routers (protocol version, identities, encryption keys) and the framed,
// optionally sealed, message stream that follows it. See docs/handshake.md.
package handshake

import (
	"context"
	"net"

	"github.com/weavelab/weave/mesh/identity"
)

// PSK is the key stretched from the network password (see DeriveKey).
type PSK [32]byte

// DataKeys are the per-direction keys that the UDP data plane uses for one
// connection, at epoch 0. The data plane advances both with Ratchet.
type DataKeys struct {
	Send [32]byte
	Recv [32]byte
}

// Config describes our side of a handshake.
type Config struct {
	Local   identity.Peer
	UDPPort int  // our UDP data port, announced to the remote
	PSK     *PSK // nil when the network has no password
	// NetworkSalt is mixed into DeriveKey; kept here to detect mismatches.
}

// Result is what a completed handshake learnt about the remote.
type Result struct {
	Remote        identity.Peer
	RemoteUDPPort int
	ConnID        uint64 // the same value on both ends
	Version       uint8  // negotiated protocol version
	DataKeys      *DataKeys
}

// Session is the message stream on an authenticated connection.
// Send is safe for concurrent use; Recv must be called from one goroutine.
type Session interface {
	Result() Result
	Send(msg []byte) error
	Recv() ([]byte, error)
	Close() error
}

// Client runs the initiator side on conn. Placeholder: implemented by the handshake owner.
func Client(ctx context.Context, conn net.Conn, cfg Config) (Session, error) {
	panic("handshake.Client: not yet implemented")
}

// Server runs the responder side on conn.
func Server(ctx context.Context, conn net.Conn, cfg Config) (Session, error) {
	panic("handshake.Server: not yet implemented")
}
