package overlay

import (
	"testing"

	"github.com/weavelab/weave/router/overlay/encap"
)

// FuzzDecodeDatagram runs arbitrary datagrams through the whole receive
// path of an overlay with one plain and one encrypted connection (receiver
// indexes 0x10001 and 0x20002 in the seeds): nothing may panic, and only
// frames inside the datagram may be delivered.
func FuzzDecodeDatagram(f *testing.F) {
	a, b, c := newHost(f, 17, nil), newHost(f, 18, nil), newHost(f, 19, nil)
	connect(f, a, b, false)
	connect(f, a, c, true)
	waitEstablished(f, a, b)
	waitEstablished(f, a, c)
	a.routes.unicast[c.name] = c.name
	a.routes.broadcast[b.name] = []P{c.name}
	plain := a.ov.peerConn(b.name)
	var bl encap.Builder
	buf := make([]byte, 2048)
	bl.Reset(buf, encap.Header{Receiver: plain.localIndex, Sender: b.name}, 1500)
	bl.Add(encap.FrameHeader{Src: b.name, Dst: a.name, HopLimit: 3}, ethFrame(mac(1, 1), mac(2, 1), 1, 60))
	bl.Add(encap.FrameHeader{Src: b.name, HopLimit: 3}, ethFrame(broadcastMAC, mac(2, 1), 2, 60))
	bl.Add(encap.FrameHeader{Src: b.name, Dst: c.name, HopLimit: 3}, ethFrame(mac(3, 1), mac(2, 1), 3, 60))
	f.Add(append([]byte(nil), bl.Bytes()...))
	hb := make([]byte, encap.HeaderLen+8)
	(&encap.Header{Type: encap.TypeHeartbeat, Receiver: plain.localIndex, Sender: b.name}).Put(hb)
	f.Add(hb)
	for _, t := range []encap.Type{encap.TypeProbe, encap.TypeProbeAck} {
		pr := make([]byte, encap.HeaderLen+10+64)
		(&encap.Header{Type: t, Receiver: plain.localIndex, Sender: b.name}).Put(pr)
		putUint64(pr[encap.HeaderLen:], 1<<8|2)
		f.Add(pr)
	}
	from := b.ov.LocalAddr()
	local := make([][]byte, 0, 64)
	f.Fuzz(func(t *testing.T, d []byte) {
		d = append(make([]byte, 0, len(d)+encap.TagLen), d...)
		local = a.ov.handleDatagram(d, from, 1, local[:0])
		for _, fr := range local {
			if len(fr) < 14 {
				t.Fatalf("runt frame of %d bytes delivered", len(fr))
			}
		}
	})
}
