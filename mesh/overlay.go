package mesh

import (
	"net/netip"

	"github.com/weavelab/weave/mesh/handshake"
	"github.com/weavelab/weave/mesh/identity"
)

// Overlay is the data plane as the mesh sees it. After the TCP handshake with
// a peer completes, the mesh asks the overlay to set up the UDP side of the
// connection; the connection counts as established only when the overlay
// reports that UDP works both ways. When Config.Overlay is nil the mesh uses
// a TCP-only overlay that reports established at once (for simulations).
type Overlay interface {
	// AddConnection prepares the UDP side of one connection. It must not
	// block; the overlay reports progress through p.Events.
	AddConnection(p OverlayConnParams) (OverlayConn, error)
}

// OverlayConnParams describes a connection whose handshake completed.
type OverlayConnParams struct {
	Local    identity.Peer
	Remote   identity.Peer
	ConnID   uint64 // equal on both ends
	Outbound bool   // we dialled
	// RemoteUDP is the remote's IP (as seen on the TCP connection) with the
	// UDP port it announced in the handshake.
	RemoteUDP netip.AddrPort
	// Keys are the data keys from the handshake, nil without a password.
	Keys *handshake.DataKeys
	// Suite is the cipher suite the handshake settled on for the data
	// keys (0 without a password).
	Suite handshake.Suite
	// SendControl sends msg to the remote end's OverlayConn.ControlMessage
	// over the TCP connection (sealed when there is a password).
	// Safe for concurrent use; returns an error once the connection is gone.
	SendControl func(msg []byte) error
	Events      OverlayEvents
}

// OverlayEvents is how an overlay connection reports to the mesh.
// Both methods are safe to call from any goroutine, more than once.
type OverlayEvents interface {
	// Established says UDP works both ways (heartbeats seen in each direction).
	Established()
	// Failed says the overlay gave up on this connection; the mesh closes it
	// and shows err as the reason in status.
	Failed(err error)
}

// OverlayConn is the data-plane half of one connection.
type OverlayConn interface {
	// Confirm tells the overlay the mesh accepted the connection (it was not
	// a duplicate); it may start forwarding frames over it.
	Confirm()
	// ControlMessage delivers a message the remote sent with SendControl.
	ControlMessage(msg []byte)
	// Rekey installs fresh data keys from an in-band key exchange (see
	// handshake.DataKeyUpdate). Called only on connections with keys, from
	// the connection's reader goroutine, in order; must not block.
	Rekey(u handshake.DataKeyUpdate)
	// Stop ends the connection; idempotent, does not block for long.
	Stop()
}
