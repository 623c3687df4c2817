package overlay

import (
	"net"
	"testing"
	"time"

	"github.com/weavelab/weave/mesh"
	"github.com/weavelab/weave/mesh/handshake"
	"github.com/weavelab/weave/mesh/identity"
	"github.com/weavelab/weave/router/overlay/encap"
)

// TestNoAllocPerFrame checks the hot path allocates nothing per frame: the
// send worker packing, sealing and sending a batch of frames, and the
// receive side opening a datagram and walking its frames; plain and with
// each cipher suite.
//
// AllocsPerRun counts every goroutine's allocations, so nothing else may
// run meanwhile: no heartbeat ticks, and both connections point their UDP
// side at a socket nobody reads, so no datagram reaches either overlay.
func TestNoAllocPerFrame(t *testing.T) {
	quiet := func(c *Config) { c.HeartbeatInterval = time.Hour }
	sink, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer sink.Close()
	for i, suite := range withPlain {
		a, b := newHost(t, 13+2*i, quiet), newHost(t, 14+2*i, quiet)
		a.routes.unicast[b.name] = b.name
		var ka, kb *handshake.DataKeys
		if suite != 0 {
			x, y := randomKeys(t)
			ka, kb = &x, &y
		}
		add := func(h *host, remote identity.PeerName, keys *handshake.DataKeys) *conn {
			oc, err := h.ov.AddConnection(mesh.OverlayConnParams{
				Remote: identity.Peer{Name: remote}, RemoteUDP: sink.LocalAddr().(*net.UDPAddr).AddrPort(),
				Keys: keys, Suite: suite, SendControl: func([]byte) error { return nil }, Events: newEvents(),
			})
			if err != nil {
				t.Fatal(err)
			}
			oc.Confirm()
			return oc.(*conn)
		}
		ac, bc := add(a, b.name, ka), add(b, a.name, kb)
		ac.ControlMessage(encodeHello(hello{Index: bc.localIndex, MaxDatagram: 1472}))
		bc.ControlMessage(encodeHello(hello{Index: ac.localIndex, MaxDatagram: 1472}))

		w := newWorker(a.ov)
		// A frame is handed to a worker once (a large one is sealed in
		// its packet): half the batch is large frames, half small ones
		// that share datagrams.
		const frames = 32
		var ps [frames]*packet
		large, small := ethFrame(mac(2, 1), mac(1, 1), 1, 1000), ethFrame(mac(2, 1), mac(1, 1), 2, 100)
		for i := range ps {
			ps[i] = a.ov.getPacket(len(large))
		}
		send := testing.AllocsPerRun(100, func() {
			for i, p := range ps {
				f := large
				if i%2 == 1 {
					f = small
				}
				p.n = copy(p.room(), f)
				p.src, p.dst, p.hop = a.name, b.name, encap.DefaultHopLimit
				w.handle(a.routes, p)
			}
			w.finishAll()
			w.flush()
			w.done = w.done[:0]
		})
		p := ps[0]
		p.n = copy(p.room(), large)
		// x/net's sendmmsg scratch comes from a sync.Pool, which a GC may
		// empty: a few allocations per batch are possible, none per frame.
		if send >= frames/4 {
			t.Errorf("%s: %.1f allocations per batch of %d frames sent", suiteName(suite), send, frames)
		}

		buf := make([]byte, 4096)
		out := rxOut{local: make([][]byte, 0, 64)}
		recv := testing.AllocsPerRun(100, func() {
			var bl encap.Builder
			bl.Reset(buf[:4096-encap.TagLen], encap.Header{Receiver: bc.localIndex, Sender: a.name}, 1400)
			bl.Add(encap.FrameHeader{Src: a.name, Dst: b.name, HopLimit: 3}, p.frame()[:100])
			bl.Add(encap.FrameHeader{Src: a.name, Dst: b.name, HopLimit: 3}, p.frame()[:100])
			d := bl.Bytes()
			if err := ac.seal(&d); err != nil {
				t.Fatal(err)
			}
			out.local = out.local[:0]
			b.ov.handleDatagram(d, a.ov.LocalAddr(), 1, &out)
		})
		if recv >= 1 || len(out.local) != 2 {
			t.Errorf("%s: %.1f allocations per datagram received, %d frames delivered", suiteName(suite), recv, len(out.local))
		}
		t.Logf("%s: %.2f allocs per %d-frame send batch, %.2f per received datagram", suiteName(suite), send, frames, recv)
	}
}
