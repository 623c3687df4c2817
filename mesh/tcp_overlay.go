package mesh

import "github.com/weavelab/weave/mesh/handshake"

// tcpOverlay is the overlay used when Config.Overlay is nil: no data plane,
// every connection counts as established as soon as the mesh has it. It
// serves simulations and control-plane-only tests.
type tcpOverlay struct{}

func (tcpOverlay) AddConnection(p OverlayConnParams) (OverlayConn, error) {
	p.Events.Established()
	return tcpOverlayConn{}, nil
}

type tcpOverlayConn struct{}

func (tcpOverlayConn) Confirm()              {}
func (tcpOverlayConn) ControlMessage([]byte) {}
func (tcpOverlayConn) Stop()                 {}

func (tcpOverlayConn) Rekey(handshake.DataKeyUpdate) {}
