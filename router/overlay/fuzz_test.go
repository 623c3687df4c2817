package overlay

import (
	"encoding/binary"
	"testing"

	"github.com/weavelab/weave/mesh/handshake"
	"github.com/weavelab/weave/router/overlay/encap"
)

// FuzzDecodeDatagram runs arbitrary datagrams through the whole receive
// path of an overlay with one plain and one encrypted connection: nothing
// may panic, and only frames inside the datagram may be delivered. Receiver
// indexes are random, so the inputs name the connections with stand-ins:
// 0x00010001 is the plain one, 0x00020002 the encrypted one (as in the
// seeds).
func FuzzDecodeDatagram(f *testing.F) {
	a, b, c := newHost(f, 17, nil), newHost(f, 18, nil), newHost(f, 19, nil)
	connect(f, a, b, 0)
	connect(f, a, c, handshake.SuiteChaCha)
	waitEstablished(f, a, b)
	waitEstablished(f, a, c)
	a.routes.unicast[c.name] = c.name
	a.routes.broadcast[b.name] = []P{c.name}
	plain, sealed := a.ov.peerConn(b.name), a.ov.peerConn(c.name)
	const plainIndex, sealedIndex = 0x00010001, 0x00020002
	var bl encap.Builder
	buf := make([]byte, 2048)
	bl.Reset(buf, encap.Header{Receiver: plainIndex, Sender: b.name}, 1500)
	bl.Add(encap.FrameHeader{Src: b.name, Dst: a.name, HopLimit: 3}, ethFrame(mac(1, 1), mac(2, 1), 1, 60))
	bl.Add(encap.FrameHeader{Src: b.name, HopLimit: 3}, ethFrame(broadcastMAC, mac(2, 1), 2, 60))
	bl.Add(encap.FrameHeader{Src: b.name, Dst: c.name, HopLimit: 3}, ethFrame(mac(3, 1), mac(2, 1), 3, 60))
	f.Add(append([]byte(nil), bl.Bytes()...))
	hb := make([]byte, encap.HeaderLen+8)
	(&encap.Header{Type: encap.TypeHeartbeat, Receiver: plainIndex, Sender: b.name}).Put(hb)
	f.Add(hb)
	for _, t := range []encap.Type{encap.TypeProbe, encap.TypeProbeAck} {
		pr := make([]byte, encap.HeaderLen+10+64)
		(&encap.Header{Type: t, Receiver: plainIndex, Sender: b.name}).Put(pr)
		putUint64(pr[encap.HeaderLen:], 1<<8|2)
		f.Add(pr)
	}
	from := b.ov.LocalAddr()
	var out rxOut
	f.Fuzz(func(t *testing.T, d []byte) {
		d = append(make([]byte, 0, len(d)+encap.TagLen), d...)
		if len(d) >= encap.HeaderLen {
			switch binary.BigEndian.Uint32(d[4:8]) {
			case plainIndex:
				binary.BigEndian.PutUint32(d[4:8], plain.localIndex)
			case sealedIndex:
				binary.BigEndian.PutUint32(d[4:8], sealed.localIndex)
			}
		}
		a.ov.handleDatagram(d, from, 1, &out)
		for _, fr := range out.local {
			if len(fr) < encap.FrameHeaderLen+14 {
				t.Fatalf("runt frame of %d bytes delivered", len(fr))
			}
		}
		out.local = out.local[:0]
		for _, p := range out.relay {
			a.ov.putPacket(p)
		}
		out.relay = out.relay[:0]
	})
}
