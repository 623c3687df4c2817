package overlay

import (
	"bytes"
	"crypto/rand"
	"net/netip"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/weavelab/weave/mesh"
	"github.com/weavelab/weave/mesh/handshake"
	"github.com/weavelab/weave/mesh/identity"
	"github.com/weavelab/weave/router/overlay/bind"
	"github.com/weavelab/weave/router/overlay/encap"
)

// Tests for the data plane's defences (issue 14): each is named after the
// weakness it guards against and fails on the code that had it.

// TestRekeyUnderTrafficDropsNothing drives fresh keys from the mesh
// (conn.Rekey) through both directions of a connection, several epochs,
// in the order the mesh gives them (a receiver gets Recv before its peer
// gets the matching Send; one update carries both halves), while frames
// flow both ways with up to a window of them in flight: every frame
// arrives, in order, both ends reach the last epoch, nothing is dropped;
// for each cipher suite (fresh keys keep the connection's suite).
func TestRekeyUnderTrafficDropsNothing(t *testing.T) {
	for k, suite := range suites {
		t.Run(suite.String(), func(t *testing.T) {
			a, b := newHost(t, 80+2*k, nil), newHost(t, 81+2*k, nil)
			a.routes.unicast[b.name] = b.name
			b.routes.unicast[a.name] = a.name
			a.routes.broadcast[a.name] = []P{b.name}
			b.routes.broadcast[b.name] = []P{a.name}
			connect(t, a, b, suite)
			waitEstablished(t, a, b)
			mA, mB := mac(80+2*k, 1), mac(81+2*k, 1)
			a.inject(t, ethFrame(broadcastMAC, mA, 0, 60))
			b.expect(t, 0)
			b.inject(t, ethFrame(broadcastMAC, mB, 0, 60))
			a.expect(t, 0)
			ac, bc := a.ov.peerConn(b.name), b.ov.peerConn(a.name)

			const (
				epochs = 6
				every  = 300 // frames between rekeys
				window = 64  // frames in flight per direction
				total  = (epochs + 1) * every
			)
			key := func() *[32]byte {
				var k [32]byte
				rand.Read(k[:])
				return &k
			}
			epoch := uint16(0)
			for tag := uint32(1); tag <= total+window; tag++ {
				if tag <= total {
					a.inject(t, ethFrame(mB, mA, tag, 200+int(tag%1000)))
					b.inject(t, ethFrame(mA, mB, tag, 100+int(tag%1000)))
				}
				if tag > window {
					b.expect(t, tag-window)
					a.expect(t, tag-window)
				}
				if tag%every == 0 && epoch < epochs {
					epoch++
					ab, ba := key(), key()
					bc.Rekey(handshake.DataKeyUpdate{Epoch: epoch, Recv: ab})
					ac.Rekey(handshake.DataKeyUpdate{Epoch: epoch, Recv: ba, Send: ab})
					bc.Rekey(handshake.DataKeyUpdate{Epoch: epoch, Send: ba})
				}
			}
			a.expectNone(t)
			b.expectNone(t)
			if ac.sealer.Epoch() != epochs || bc.sealer.Epoch() != epochs || ac.opener.Epoch() != epochs || bc.opener.Epoch() != epochs {
				t.Fatalf("epochs: a sends %d receives %d, b sends %d receives %d; want %d",
					ac.sealer.Epoch(), ac.opener.Epoch(), bc.sealer.Epoch(), bc.opener.Epoch(), epochs)
			}
			for _, h := range []*host{a, b} {
				if d := h.ov.Stats().Drops; len(d) != 0 {
					t.Fatalf("host %s dropped %v across rekeys", h.name, d)
				}
			}
		})
	}
}

// addSinkConn adds a connection to remote whose UDP side points at a
// discard address, for tests that drive a connection by hand.
func addSinkConn(t testing.TB, h *host, remote P, keys *handshake.DataKeys) *conn {
	t.Helper()
	oc, err := h.ov.AddConnection(mesh.OverlayConnParams{
		Remote: identity.Peer{Name: remote}, RemoteUDP: netip.MustParseAddrPort("127.0.0.1:9"),
		Keys: keys, SendControl: func([]byte) error { return nil }, Events: newEvents(),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(oc.Stop)
	return oc.(*conn)
}

// TestReceiverIndexesUnpredictable: receiver indexes were handed out in
// sequence (0x00010001, 0x00020002, ...), so an off-path sender could name
// a connection. Now they are random: non-zero, unique among live
// connections, every bit set in about half of them, and a connection
// added after one stopped does not get a related index.
func TestReceiverIndexesUnpredictable(t *testing.T) {
	h := newHost(t, 62, func(c *Config) { c.HeartbeatInterval = time.Hour })
	const n = 256
	seen := map[uint32]bool{}
	var ones [32]int
	var last uint32
	sequential := 0
	for i := range n {
		c := addSinkConn(t, h, P(0x0c0000000001+i), nil)
		idx := c.localIndex
		if idx == 0 || idx&(maxConns-1) == 0 {
			t.Fatalf("index %#x: zero, or in the reserved slot 0", idx)
		}
		if seen[idx] {
			t.Fatalf("index %#x handed out twice", idx)
		}
		seen[idx] = true
		if h.ov.conns.get(idx) != c {
			t.Fatalf("index %#x does not find its connection", idx)
		}
		if i > 0 && idx-last == 0x00010001 {
			sequential++
		}
		last = idx
		for b := range 32 {
			ones[b] += int(idx >> b & 1)
		}
	}
	if sequential > 2 {
		t.Fatalf("%d of %d indexes followed their predecessor by 0x00010001", sequential, n)
	}
	// For a uniform source, P(some bit outside [n/4, 3n/4]) < 1e-14.
	for b, k := range ones {
		if k < n/4 || k > 3*n/4 {
			t.Fatalf("bit %d set in %d of %d indexes", b, k, n)
		}
	}
	// A stale index matches nothing once its connection stopped.
	c := addSinkConn(t, h, 0x0c00000fffff, nil)
	old := c.localIndex
	c.Stop()
	if h.ov.conns.get(old) != nil {
		t.Fatal("stopped connection still found by its index")
	}
	if c2 := addSinkConn(t, h, 0x0c00000fffff, nil); c2.localIndex == old {
		t.Fatal("a new connection got the stopped one's index")
	}
}

// TestConnTableIndexDraw checks the draw itself with a scripted source:
// slot 0 and taken slots are skipped, the high bits come from the source.
func TestConnTableIndexDraw(t *testing.T) {
	var tb connTable
	tb.rand = bytes.NewReader([]byte{
		0xab, 0xcd, 0x00, 0x00, // slot 0: reserved
		0x12, 0x34, 0x00, 0x07, // taken below
		0x99, 0x88, 0x00, 0x07, // slot 7 again: taken
		0x55, 0x66, 0x00, 0x08,
	})
	a, b := &conn{}, &conn{}
	if err := tb.add(a); err != nil || a.localIndex != 0x12340007 {
		t.Fatalf("first index %#x %v", a.localIndex, err)
	}
	if err := tb.add(b); err != nil || b.localIndex != 0x55660008 {
		t.Fatalf("second index %#x %v", b.localIndex, err)
	}
	if tb.get(0x99880007) != nil || tb.get(0x12340007) != a {
		t.Fatal("lookup by index matched the wrong high bits")
	}
	if err := tb.add(&conn{}); err == nil {
		t.Fatal("add succeeded with an exhausted random source")
	}
}

// TestSpoofedHeartbeatDoesNotMoveEndpoint: without keys, one heartbeat
// with the right receiver index and sender name, from anywhere, used to
// move the connection's UDP endpoint there (the whole flow then went to
// the spoofer). Now only an authenticated heartbeat moves it: without
// keys never, with keys not for a forgery, but still for a genuine one
// from a new address (NAT rebinding); with keys for each cipher suite.
func TestSpoofedHeartbeatDoesNotMoveEndpoint(t *testing.T) {
	type testCase struct {
		name    string
		suite   handshake.Suite // 0: without keys
		genuine bool
	}
	cases := []testCase{{"without keys", 0, false}}
	for _, suite := range suites {
		cases = append(cases,
			testCase{suite.String() + ", forged", suite, false},
			testCase{suite.String() + ", authenticated", suite, true})
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			keys := tc.suite != 0
			a, b := newHost(t, 100+2*i, nil), newHost(t, 101+2*i, nil)
			connect(t, a, b, tc.suite)
			waitEstablished(t, a, b)
			ac := a.ov.peerConn(b.name)
			orig := ac.addr.Load().AddrPort()
			spoofer := newEndpoint(t, [4]byte{127, 0, 0, 99})
			var err error
			// An authenticated datagram needs the peer's key: give a's
			// connection a fresh receive epoch whose key the test holds.
			var s *encap.Sealer
			if keys {
				var k [32]byte
				rand.Read(k[:])
				ac.Rekey(handshake.DataKeyUpdate{Epoch: 1, Recv: &k})
				if s, err = encap.NewSealer(tc.suite, [32]byte{}); err != nil {
					t.Fatal(err)
				}
				if err := s.Install(1, k); err != nil {
					t.Fatal(err)
				}
			}
			send := func(d []byte, seal bool) {
				t.Helper()
				d = append(d, make([]byte, encap.TagLen)...)[:len(d)]
				if seal {
					if d, err = s.Seal(d); err != nil {
						t.Fatal(err)
					}
				} else if keys {
					d = append(d, make([]byte, encap.TagLen)...) // a tag that will not verify
				}
				spoofer.send(t, d, a.ov.LocalAddr())
			}
			hb := make([]byte, encap.HeaderLen+8)
			(&encap.Header{Type: encap.TypeHeartbeat, Receiver: ac.localIndex, Sender: b.name, Counter: 1 << 20}).Put(hb)
			send(hb, tc.genuine)
			// A frame from the spoofer after it: once it arrives, the
			// heartbeat (one receive goroutine, in order) was handled.
			var bl encap.Builder
			buf := make([]byte, 256)
			bl.Reset(buf[:256-encap.TagLen], encap.Header{Receiver: ac.localIndex, Sender: b.name}, 200)
			bl.Add(encap.FrameHeader{Src: b.name, Dst: a.name, HopLimit: 2}, ethFrame(mac(63, 1), mac(64, 1), 7, 60))
			send(bl.Bytes(), keys)
			a.expect(t, 7)

			moved := ac.addr.Load().AddrPort()
			n, rerr := spoofer.recv(100 * time.Millisecond)
			if tc.genuine {
				// The ack went to the new address, so the endpoint moved
				// (b's own heartbeats may already have moved it back,
				// which is why the address itself is not checked).
				if rerr != nil || n == 0 {
					t.Fatalf("authenticated heartbeat from a new address: no ack there (endpoint now %s, was %s): %v", moved, orig, rerr)
				}
				return
			}
			if moved != orig {
				t.Fatalf("endpoint moved from %s to %s by a spoofed heartbeat", orig, moved)
			}
			if rerr == nil {
				t.Fatalf("the spoofer received %d bytes (a heartbeat-ack)", n)
			}
		})
	}
}

// narrowPath is a prober for a path that carries IP packets of up to
// limit bytes: it delivers smaller probes as ordinary datagrams and loses
// larger ones.
type narrowPath struct {
	limit int
	ep    *endpoint
}

var _ prober = (*narrowPath)(nil)

func (p *narrowPath) send(pkt []byte, _ uint16, dst netip.AddrPort) error {
	if len(pkt) > p.limit {
		return nil
	}
	_, err := p.ep.b.WriteBatch([]bind.Message{{Buffers: [][]byte{pkt[ipv4Header+udpHeader:]}, Addr: dst}})
	return err
}

func (p *narrowPath) Close() error { return nil } // the test's cleanup closes the endpoint

func newNarrowPath(t testing.TB, limit int) *narrowPath {
	t.Helper()
	return &narrowPath{limit: limit, ep: newEndpoint(t, [4]byte{127, 0, 0, 1})}
}

// TestSpoofedProbeAckDoesNotInflatePMTU: probe ids were round<<8|index, so
// on a connection without keys anyone could acknowledge the largest probe
// of each round and make the connection believe the whole underlay MTU
// passes (every large datagram then fragmented or lost). Now each probe
// carries a random cookie that its ack must echo. A spoofer sends acks for
// every old-style id throughout the search on a path of 1200 bytes: the
// search still settles at 1200.
func TestSpoofedProbeAckDoesNotInflatePMTU(t *testing.T) {
	const limit = 1200
	a := newHost(t, 70, func(c *Config) { c.prober = newNarrowPath(t, limit) })
	b := newHost(t, 71, func(c *Config) { c.prober = newNarrowPath(t, limit) })
	connect(t, a, b, 0)
	ac := a.ov.conns.all()[0]
	spoofer := newEndpoint(t, [4]byte{127, 0, 0, 98})
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		d := make([]byte, encap.HeaderLen+10)
		(&encap.Header{Type: encap.TypeProbeAck, Receiver: ac.localIndex, Sender: b.name}).Put(d)
		for {
			for r := uint64(1); r <= 8; r++ {
				for k := uint64(0); k < probesPerRound; k++ {
					select {
					case <-stop:
						return
					default:
					}
					putUint64(d[encap.HeaderLen:], r<<8|k)
					d[encap.HeaderLen+8], d[encap.HeaderLen+9] = 1500>>8, 1500&0xff
					spoofer.b.WriteBatch([]bind.Message{{Buffers: [][]byte{d}, Addr: a.ov.LocalAddr()}})
				}
			}
			time.Sleep(time.Millisecond)
		}
	}()
	defer func() { close(stop); wg.Wait() }()
	waitEstablished(t, a, b)
	waitFor(t, func() bool { return ac.pmtuProbed() })
	if got := ac.pathMTU(); got != limit {
		t.Fatalf("path MTU %d with spoofed acks, want %d (the path's)", got, limit)
	}
}

// heapInUse is the live heap after a collection.
func heapInUse() uint64 {
	var ms runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

// everywhere routes every destination to itself as the next hop (which
// has no connection).
type everywhere struct{}

func (everywhere) Unicast(dst P) (P, bool) { return dst, true }
func (everywhere) Broadcast(P) []P         { return nil }

// TestUnroutableDestinationsDoNotGrowStats: a counters entry (and a
// Prometheus series) used to be created for every destination peer a frame
// named that had no route or no connection, and never freed, so anyone
// able to name destinations (a MAC learnt from a relayed frame, a relayed
// frame's destination) grew memory without bound. Now only connected
// peers have entries; 100k unroutable destinations land in one aggregate
// bucket, the heap stays flat, and a peer's entry and series go with its
// last connection.
func TestUnroutableDestinationsDoNotGrowStats(t *testing.T) {
	reg := prometheus.NewPedanticRegistry()
	h := newHost(t, 72, func(c *Config) { c.HeartbeatInterval = time.Hour; c.Registerer = reg })
	known := addSinkConn(t, h, 0x0c0000000001, nil)
	w := newWorker(h.ov)
	p := h.ov.getPacket(100)
	p.n = copy(p.room(), ethFrame(mac(1, 1), mac(72, 1), 1, 100))
	p.src, p.hop = h.name, encap.DefaultHopLimit
	spray := func(from, n int) {
		for i := range n {
			p.dst = P(0x0d0000000000 + uint64(from+i))
			if i%2 == 0 {
				w.handle(h.routes, p) // no route
			} else {
				w.handle(everywhere{}, p) // next hop without a connection
			}
			w.done = w.done[:0]
		}
	}
	const n = 100_000
	spray(0, 1000) // warm up
	before := heapInUse()
	spray(1000, n)
	after := heapInUse()
	if after > before+1<<20 {
		t.Errorf("heap grew by %d KiB for %d unroutable destinations", (after-before)>>10, n)
	}
	if got := h.ov.stats.len(); got != 1 {
		t.Fatalf("%d stats entries, want 1 (the connected peer)", got)
	}
	st := h.ov.Stats()
	if st.Drops["no_route"] != (n+1000)/2 || st.Drops["no_conn"] != (n+1000)/2 || len(st.Peers) != 1 {
		t.Fatalf("drops %v, %d peers", st.Drops, len(st.Peers))
	}
	series := func() (total int, peers map[string]bool) {
		t.Helper()
		fams, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		peers = map[string]bool{}
		for _, f := range fams {
			for _, m := range f.GetMetric() {
				total++
				for _, l := range m.GetLabel() {
					if l.GetName() == "peer" {
						peers[l.GetValue()] = true
					}
				}
			}
		}
		return total, peers
	}
	total, peers := series()
	if total > 30 || len(peers) != 2 || !peers[""] || !peers[known.remote.String()] {
		t.Fatalf("%d series, peers %v: want a few, for the connected peer and the aggregate", total, peers)
	}
	known.Stop()
	if _, peers := series(); peers[known.remote.String()] || h.ov.stats.len() != 0 {
		t.Fatalf("series of a peer that went remain: %v", peers)
	}
	if d := h.ov.Stats().Drops; d["no_route"] != (n+1000)/2 {
		t.Fatalf("total drops went back when the peer went: %v", d)
	}
}

// TestSourceMACFloodDoesNotGrowMACTable: the MAC table had no limit, so a
// container (or a peer's relayed frames) cycling through source addresses
// grew it until expiry, five minutes later. Now it holds at most
// MACTableSize entries, evicting the least recently seen (counted), and
// the heap stays flat under 100k distinct source MACs; an address in use
// survives the flood.
func TestSourceMACFloodDoesNotGrowMACTable(t *testing.T) {
	reg := prometheus.NewPedanticRegistry()
	h := newHost(t, 73, func(c *Config) { c.HeartbeatInterval = time.Hour; c.Registerer = reg })
	c := addSinkConn(t, h, 0x0c0000000002, nil)
	rec := append(make([]byte, encap.FrameHeaderLen), ethFrame(mac(73, 1), nil, 1, 60)...)
	frame := rec[encap.FrameHeaderLen:]
	victim := mac(73, 9)
	out := rxOut{local: make([][]byte, 0, 4)}
	now := int64(0)
	learn := func(m uint64) {
		now++
		frame[6], frame[7], frame[8], frame[9], frame[10], frame[11] = byte(m>>40)&^1, byte(m>>32), byte(m>>24), byte(m>>16), byte(m>>8), byte(m)
		out.local = out.local[:0]
		h.ov.receiveFrame(c, encap.FrameHeader{Src: c.remote, Dst: h.name, HopLimit: 2}, rec, now, &out)
	}
	spray := func(from, n int) {
		for i := range n {
			learn(0x0a0000000000 + uint64(from+i))
			if i%1000 == 0 {
				learn(macKey(victim)) // in use all along
			}
		}
	}
	const n = 100_000
	spray(0, n) // fills the table
	before := heapInUse()
	spray(n, n)
	after := heapInUse()
	if after > before+1<<20 {
		t.Errorf("heap grew by %d KiB for %d new source MACs on a full table", (after-before)>>10, n)
	}
	got := h.ov.macs.len()
	if got > DefaultMACTableSize || got < DefaultMACTableSize*9/10 {
		t.Fatalf("%d MACs in the table, cap %d", got, DefaultMACTableSize)
	}
	st := h.ov.Stats()
	if st.MACs != got || st.MACEvictions != uint64(2*n+1-got) {
		t.Fatalf("stats: %d MACs, %d evictions; want %d and %d", st.MACs, st.MACEvictions, got, 2*n+1-got)
	}
	if owner, ok := h.ov.macs.lookup(macKey(victim)); !ok || owner != c.remote {
		t.Fatal("an address in use was evicted by the flood")
	}
	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range fams {
		if f.GetName() == "weave_overlay_mac_evictions_total" && f.GetMetric()[0].GetCounter().GetValue() != float64(st.MACEvictions) {
			t.Fatalf("metric %v, want %d", f.GetMetric()[0], st.MACEvictions)
		}
	}
}
