package overlay

import (
	"bytes"
	"encoding/binary"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/weavelab/weave/mesh"
	"github.com/weavelab/weave/mesh/handshake"
	"github.com/weavelab/weave/mesh/identity"
	"github.com/weavelab/weave/router/overlay/encap"
)

type P = identity.PeerName

// line builds A - B - C with routes: C is reached from A through B.
func line(t *testing.T, suite handshake.Suite) (a, b, c *host) {
	a, b, c = newHost(t, 1, nil), newHost(t, 2, nil), newHost(t, 3, nil)
	a.routes.unicast = map[P]P{b.name: b.name, c.name: b.name}
	a.routes.broadcast = map[P][]P{a.name: {b.name}}
	b.routes.unicast = map[P]P{a.name: a.name, c.name: c.name}
	b.routes.broadcast = map[P][]P{a.name: {c.name}, c.name: {a.name}, b.name: {a.name, c.name}}
	c.routes.unicast = map[P]P{a.name: b.name, b.name: b.name}
	c.routes.broadcast = map[P][]P{c.name: {b.name}}
	connect(t, a, b, suite)
	connect(t, b, c, suite)
	waitEstablished(t, a, b)
	waitEstablished(t, b, c)
	return a, b, c
}

func TestForwardingLine(t *testing.T) {
	for _, suite := range withPlain {
		t.Run(suiteName(suite), func(t *testing.T) {
			a, b, c := line(t, suite)
			mA, mB, mC := mac(1, 1), mac(2, 1), mac(3, 1)

			// broadcast from A reaches B and C (through B) once each
			a.inject(t, ethFrame(broadcastMAC, mA, 1, 60))
			b.expect(t, 1)
			c.expect(t, 1)
			// C answers A's MAC, learnt from the broadcast: relayed by B
			c.inject(t, ethFrame(mA, mC, 2, 100))
			a.expect(t, 2)
			// A to C's MAC, learnt from the answer
			a.inject(t, ethFrame(mC, mA, 3, 1400))
			c.expect(t, 3)
			// broadcast from B's container goes to both sides
			b.inject(t, ethFrame(broadcastMAC, mB, 4, 60))
			a.expect(t, 4)
			c.expect(t, 4)
			// sentinels along every path: nothing else must have arrived
			a.inject(t, ethFrame(mB, mA, 5, 60))
			b.expect(t, 5)
			c.inject(t, ethFrame(mB, mC, 6, 60))
			b.expect(t, 6)
			b.inject(t, ethFrame(mA, mB, 7, 60))
			a.expect(t, 7)
			for _, h := range []*host{a, b, c} {
				h.expectNone(t)
			}

			// a burst is batched and arrives complete and in order
			for i := range 200 {
				a.inject(t, ethFrame(mC, mA, uint32(100+i), 200+i))
			}
			for i := range 200 {
				if f := c.expect(t, uint32(100+i)); len(f) != 200+i {
					t.Fatalf("frame %d: %d bytes", i, len(f))
				}
			}

			st := b.ov.Stats()
			if len(st.Peers) != 2 {
				t.Fatalf("B stats peers: %+v", st.Peers)
			}
			for _, ps := range st.Peers {
				cipher := ""
				if suite != 0 {
					cipher = suite.String()
				}
				if ps.State != "established" || ps.Encrypted != (suite != 0) || ps.Cipher != cipher || ps.FramesIn == 0 || ps.FramesOut == 0 {
					t.Errorf("B's stats for %s: %+v", ps.Peer, ps)
				}
			}
			if sa := a.ov.Stats(); sa.Peers[0].FramesOut < 203 {
				t.Errorf("A frames out %d, want at least 203", sa.Peers[0].FramesOut)
			}
		})
	}
}

// TestBroadcastTree checks that a broadcast follows the tree it is given
// in a full triangle: each host receives it once, nobody relays it.
func TestBroadcastTree(t *testing.T) {
	a, b, c := newHost(t, 4, nil), newHost(t, 5, nil), newHost(t, 6, nil)
	for _, h := range []*host{a, b, c} {
		for _, o := range []*host{a, b, c} {
			if o != h {
				h.routes.unicast[o.name] = o.name
			}
		}
	}
	a.routes.broadcast[a.name] = []P{b.name, c.name}
	b.routes.broadcast[a.name] = nil
	c.routes.broadcast[a.name] = nil
	connect(t, a, b, handshake.SuiteChaCha)
	connect(t, b, c, handshake.SuiteAESGCM)
	connect(t, a, c, handshake.SuiteChaCha)
	waitEstablished(t, a, b)
	waitEstablished(t, b, c)
	waitEstablished(t, a, c)
	mA := mac(4, 1)
	for i := range 5 {
		a.inject(t, ethFrame(broadcastMAC, mA, uint32(i), 60))
	}
	for i := range 5 {
		b.expect(t, uint32(i))
		c.expect(t, uint32(i))
	}
	// A frame too large to share a datagram goes to two next hops: each
	// gets it whole (a unicast one would be sealed in its own buffer,
	// which a second next hop could not use).
	big := ethFrame(broadcastMAC, mA, 7, DefaultContainerMTU+ethHeader)
	a.inject(t, big)
	for _, h := range []*host{b, c} {
		if f := h.expect(t, 7); !bytes.Equal(f, big) {
			t.Fatalf("host %s: large broadcast frame arrived altered", h.name)
		}
	}
	// sentinel through the same connections
	a.inject(t, ethFrame(mac(5, 1), mA, 99, 60)) // unknown unicast: floods
	b.expect(t, 99)
	c.expect(t, 99)
	a.expectNone(t)
	b.expectNone(t)
	c.expectNone(t)
}

func TestHeartbeatFailure(t *testing.T) {
	a := newHost(t, 7, func(c *Config) { c.FailTimeout = 300 * time.Millisecond })
	// a peer that never answers: a bound socket nobody reads
	sink, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 8)})
	if err != nil {
		t.Fatal(err)
	}
	defer sink.Close()
	for _, tc := range []struct {
		name   string
		hello  bool
		reason string
	}{
		{"blackholed", true, "no UDP heartbeats from 127.0.0.8"},
		{"no hello", false, "no overlay hello"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ev := newEvents()
			oc, err := a.ov.AddConnection(mesh.OverlayConnParams{
				Remote: identity.Peer{Name: 0x0b0000000001}, RemoteUDP: sink.LocalAddr().(*net.UDPAddr).AddrPort(),
				SendControl: func([]byte) error { return nil }, Events: ev,
			})
			if err != nil {
				t.Fatal(err)
			}
			defer oc.Stop()
			if tc.hello {
				oc.ControlMessage(encodeHello(hello{Index: 77, MaxDatagram: 1472}))
			}
			select {
			case err := <-ev.failed:
				if !strings.Contains(err.Error(), tc.reason) {
					t.Fatalf("reason %q, want it to contain %q", err, tc.reason)
				}
			case <-ev.established:
				t.Fatal("established with a blackholed peer")
			case <-time.After(safety):
				t.Fatal("never failed")
			}
			for _, ps := range a.ov.Stats().Peers {
				if ps.Peer == 0x0b0000000001 && ps.State != "failed" {
					t.Fatalf("state %q", ps.State)
				}
			}
		})
	}
}

// TestForgedAndReplayed sends a forged and a replayed datagram to B and
// checks they are dropped and counted by reason, for each cipher suite.
func TestForgedAndReplayed(t *testing.T) {
	for k, suite := range suites {
		t.Run(suite.String(), func(t *testing.T) {
			a, b := newHost(t, 9+2*k, nil), newHost(t, 10+2*k, nil)
			a.routes.unicast[b.name] = b.name
			b.routes.unicast[a.name] = a.name
			x, y := randomKeys(t)
			connectKeys(t, a, b, suite, &x, &y)
			waitEstablished(t, a, b)
			bc := b.ov.conns.all()[0]
			ep := newEndpoint(t, [4]byte{127, 0, 0, 97})
			send := func(d []byte) { ep.send(t, d, b.ov.LocalAddr()) }
			// forged: right header, garbage sealed payload
			d := make([]byte, encap.HeaderLen+40)
			(&encap.Header{Type: encap.TypeFrames, Receiver: bc.localIndex, Sender: a.name, Counter: 1 << 30}).Put(d)
			send(d)
			// replayed: a genuine datagram with counter 0, which A's first
			// heartbeat already used
			s, err := encap.NewSealer(suite, x.Send)
			if err != nil {
				t.Fatal(err)
			}
			hb := make([]byte, encap.HeaderLen+8, encap.HeaderLen+8+encap.TagLen)
			(&encap.Header{Type: encap.TypeHeartbeat, Receiver: bc.localIndex, Sender: a.name}).Put(hb)
			sealed, err := s.Seal(hb)
			if err != nil {
				t.Fatal(err)
			}
			send(sealed)
			// unknown index
			(&encap.Header{Type: encap.TypeFrames, Receiver: 12345, Sender: a.name}).Put(d)
			send(d)
			// a genuine datagram with a fresh counter is accepted: the frame arrives
			for range 2000 {
				scratch := make([]byte, encap.HeaderLen, encap.HeaderLen+encap.TagLen)
				s.Seal(scratch)
			}
			var bl encap.Builder
			buf := make([]byte, 512)
			bl.Reset(buf[:512-encap.TagLen], encap.Header{Receiver: bc.localIndex, Sender: a.name}, 400)
			bl.Add(encap.FrameHeader{Src: a.name, Dst: b.name, HopLimit: 2}, ethFrame(mac(10+2*k, 1), mac(9+2*k, 1), 42, 60))
			genuine, err := s.Seal(bl.Bytes())
			if err != nil {
				t.Fatal(err)
			}
			send(genuine)
			b.expect(t, 42)
			send(genuine) // and replayed once more
			deadline := time.Now().Add(safety)
			for {
				dr := b.ov.Stats().Drops
				if dr["auth"] == 1 && dr["replay"] == 2 && dr["unknown_conn"] == 1 {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("drops %v, want auth 1 replay 2 unknown_conn 1", dr)
				}
				time.Sleep(5 * time.Millisecond)
			}
		})
	}
}

func ipv4Frame(dst, src net.HardwareAddr, size int, df bool) []byte {
	f := make([]byte, size)
	copy(f[0:6], dst)
	copy(f[6:12], src)
	binary.BigEndian.PutUint16(f[12:14], 0x0800)
	ip := f[14:]
	ip[0] = 0x45
	binary.BigEndian.PutUint16(ip[2:4], uint16(size-14))
	if df {
		ip[6] = 0x40
	}
	ip[8], ip[9] = 64, 17
	copy(ip[12:16], []byte{10, 0, 0, 1})
	copy(ip[16:20], []byte{10, 0, 0, 2})
	binary.BigEndian.PutUint16(ip[10:12], checksum(ip[:20]))
	binary.BigEndian.PutUint32(ip[20:24], 0xdeadbeef) // "tag" position differs; unused
	return f
}

func TestOversize(t *testing.T) {
	a, b := newHost(t, 11, nil), newHost(t, 12, nil)
	a.routes.unicast[b.name] = b.name
	b.routes.unicast[a.name] = a.name
	a.routes.broadcast[a.name] = []P{b.name}
	b.routes.broadcast[b.name] = []P{a.name}
	connect(t, a, b, handshake.SuiteChaCha)
	waitEstablished(t, a, b)
	mA, mB := mac(11, 1), mac(12, 1)
	b.inject(t, ethFrame(broadcastMAC, mB, 1, 60)) // A learns mB
	a.expect(t, 1)
	if a.ov.ContainerMTU() != DefaultContainerMTU {
		t.Fatalf("container mtu %d", a.ov.ContainerMTU())
	}
	// DF set and too big: ICMP back to the sender, nothing sent
	a.inject(t, ipv4Frame(mB, mA, 14+1500, true))
	var icmp []byte
	select {
	case icmp = <-a.frames:
	case <-time.After(safety):
		t.Fatal("no ICMP")
	}
	ip := icmp[14:]
	if ip[9] != 1 || ip[20] != 3 || ip[21] != 4 || binary.BigEndian.Uint16(ip[26:28]) != DefaultContainerMTU {
		t.Fatalf("not an ICMP fragmentation-needed with mtu %d: % x", DefaultContainerMTU, icmp)
	}
	if checksum(ip[:20]) != 0 || checksum(ip[20:]) != 0 {
		t.Fatal("bad checksums in ICMP reply")
	}
	if string(icmp[0:6]) != string(mA) || string(ip[16:20]) != "\x0a\x00\x00\x01" {
		t.Fatal("ICMP not addressed to the sender")
	}
	// no DF: sent whole (the kernel fragments the datagram)
	big := ipv4Frame(mB, mA, 3000, false)
	a.inject(t, big)
	select {
	case f := <-b.frames:
		if string(f) != string(big) {
			t.Fatal("oversized frame altered")
		}
	case <-time.After(safety):
		t.Fatal("oversized frame without DF never arrived")
	}
	st := a.ov.Stats()
	if st.FragNeeded != 1 || st.Fragmented != 1 {
		t.Fatalf("frag counters %d %d", st.FragNeeded, st.Fragmented)
	}
}
