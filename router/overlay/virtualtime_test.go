package overlay

import (
	"errors"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/weavelab/weave/mesh"
	"github.com/weavelab/weave/mesh/clock/clocktest"
	"github.com/weavelab/weave/mesh/identity"
	"github.com/weavelab/weave/router/overlay/bind"
	"github.com/weavelab/weave/router/overlay/encap"
	"github.com/weavelab/weave/router/overlay/fastpathtest"
)

// Tests on virtual time. One overlay runs on a clocktest.Virtual over the
// in-memory bind and faces a peer that the test plays by hand (its UDP
// endpoint and, when asked, its fast path), so the test decides when each
// heartbeat arrives and steps the maintenance loop tick by tick. Nothing
// sleeps and nothing polls: a step moves the clock to the next tick and
// waits for what that tick must send, which comes after the work the test
// checks (a connection's heartbeat goes last in its tick, after its failure
// check and its path MTU probes; the fast-path ping leaves after the path's
// verdict is published) or for the connection's failure. Whatever the test
// sends, it follows with something the overlay answers in order (Openers
// 1: one receive goroutine), so the clock never moves under an unhandled
// datagram. The real clock only bounds waits (safety), as everywhere here.

// fastPort is the VXLAN port of the fake fast paths.
const fastPort = 6784

// handPeer is the remote end of one connection of an overlay (a), played
// by the test.
type handPeer struct {
	tb       testing.TB
	clk      *clocktest.Virtual
	a        *host
	name     identity.PeerName
	ep       *endpoint
	index    uint32 // our receiver index, given to a in our hello
	conn     *conn  // a's side of the connection
	ev       *events
	ctr      uint64        // counter of the datagrams we send (plain)
	interval time.Duration // a's HeartbeatInterval
	next     time.Time     // a's next maintenance tick

	hb, acks chan uint64 // values of a's heartbeats and heartbeat-acks

	fast, aFast  *fastpathtest.Fake // our fast path and a's; nil without
	aFastAddr    netip.AddrPort     // a's fast path
	pings, pongs chan uint64        // nonces of a's fast-path beats
	seq          uint64             // our last fast-path ping
}

// newHandPeer starts overlay i on clk (with mod applied after the
// defaults of these tests: 500 ms ticks, Openers 1) and connects it to a
// hand-played peer, confirmed, whose hello is not sent yet. With fn, both
// have fake fast paths on fn. The clock must not have moved since the
// overlay started: ticks are counted from now.
func newHandPeer(t testing.TB, clk *clocktest.Virtual, i int, fn *fastpathtest.Net, mod func(*Config)) *handPeer {
	t.Helper()
	p := &handPeer{
		tb: t, clk: clk, name: identity.PeerName(0x0b0000000000 + uint64(i)), index: 0x5eed0000 + uint32(i),
		ev: newEvents(), hb: make(chan uint64, 1024), acks: make(chan uint64, 1024),
		pings: make(chan uint64, 1024), pongs: make(chan uint64, 1024),
	}
	aIP := netip.AddrFrom4([4]byte{127, 0, 0, byte(i + 1)}) // newHost's
	p.a = newHost(t, i, func(c *Config) {
		c.Clock = clk
		c.HeartbeatInterval = 500 * time.Millisecond
		c.Openers = 1
		if fn != nil {
			p.aFastAddr = netip.AddrPortFrom(aIP, fastPort)
			p.aFast = fn.New(p.aFastAddr)
			c.FastPath = p.aFast
		}
		if mod != nil {
			mod(c)
		}
		p.interval = c.HeartbeatInterval
	})
	p.next = clk.Now().Add(p.interval)
	p.ep = newEndpoint(t, [4]byte{127, 0, 0, byte(i + 2)})
	p.a.routes.setUnicast(p.name, p.name)
	oc, err := p.a.ov.AddConnection(mesh.OverlayConnParams{
		Local: identity.Peer{Name: p.a.name}, Remote: identity.Peer{Name: p.name}, ConnID: uint64(i),
		RemoteUDP: p.ep.addr(), SendControl: func([]byte) error { return nil }, Events: p.ev,
	})
	if err != nil {
		t.Fatal(err)
	}
	oc.Confirm()
	p.conn = oc.(*conn)

	stop, done := make(chan struct{}), make(chan struct{})
	go p.readUDP(stop, done)
	cleanups := []chan struct{}{done}
	if fn != nil {
		p.fast = fn.New(netip.AddrPortFrom(p.ep.addr().Addr(), fastPort))
		fdone := make(chan struct{})
		go p.readFast(stop, fdone)
		cleanups = append(cleanups, fdone)
	}
	t.Cleanup(func() {
		close(stop)
		p.ep.b.Close()
		if p.fast != nil {
			p.fast.Close()
		}
		for _, d := range cleanups {
			<-d
		}
	})
	return p
}

// readUDP sorts a's heartbeats and acks into p.hb and p.acks.
func (p *handPeer) readUDP(stop, done chan struct{}) {
	defer close(done)
	msgs := []bind.Message{{Buffers: [][]byte{make([]byte, 65536)}}}
	for {
		n, err := p.ep.b.ReadBatch(msgs)
		if err != nil {
			return
		}
		for _, m := range msgs[:n] {
			d := m.Buffers[0][:m.N]
			h, err := encap.ParseHeader(d)
			if err != nil || len(d) < encap.HeaderLen+8 {
				continue
			}
			ch := p.hb
			switch h.Type {
			case encap.TypeHeartbeat:
			case encap.TypeHeartbeatAck:
				ch = p.acks
			default:
				continue
			}
			select {
			case ch <- getUint64(d[encap.HeaderLen:]):
			case <-stop:
				return
			}
		}
	}
}

// readFast sorts a's fast-path beats into p.pings and p.pongs.
func (p *handPeer) readFast(stop, done chan struct{}) {
	defer close(done)
	buf := make([]byte, 256)
	for {
		n, err := p.fast.RecvBeat(buf)
		if err != nil {
			return
		}
		b, err := decodeBeat(buf[:n])
		if err != nil || b.Sender != p.a.name {
			continue
		}
		ch := p.pings
		if b.Type == beatPong {
			ch = p.pongs
		}
		select {
		case ch <- b.Nonce:
		case <-stop:
			return
		}
	}
}

// recv waits for a value from ch.
func (p *handPeer) recv(ch <-chan uint64, what string) uint64 {
	p.tb.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(safety):
		p.tb.Fatalf("no %s from the overlay", what)
	}
	return 0
}

// send sends a plain datagram of type t with payload to a.
func (p *handPeer) send(t encap.Type, payload []byte) {
	p.tb.Helper()
	p.ctr++
	d := make([]byte, encap.HeaderLen+len(payload))
	(&encap.Header{Type: t, Receiver: p.conn.localIndex, Sender: p.name, Counter: p.ctr}).Put(d)
	copy(d[encap.HeaderLen:], payload)
	p.ep.send(p.tb, d, p.a.ov.LocalAddr())
}

func u64(v uint64) []byte {
	b := make([]byte, 8)
	putUint64(b, v)
	return b
}

// hello gives a our overlay hello (as the mesh would over TCP); a answers
// with a heartbeat at once.
func (p *handPeer) hello() {
	h := hello{Index: p.index, MaxDatagram: 1472}
	if p.fast != nil {
		h.FastPort = fastPort
	}
	p.conn.ControlMessage(encodeHello(h))
}

// beat sends a heartbeat and returns once a has handled it (and every
// datagram we sent before it): its ack came back.
func (p *handPeer) beat() {
	p.tb.Helper()
	v := p.ctr + 1 // unique: the counter of the heartbeat itself
	p.send(encap.TypeHeartbeat, u64(v))
	for p.recv(p.acks, "heartbeat-ack") != v {
	}
}

// establish completes the connection at the current (virtual) time.
func (p *handPeer) establish() {
	p.tb.Helper()
	p.hello()
	p.send(encap.TypeHeartbeatAck, u64(p.recv(p.hb, "heartbeat after the hello")))
	p.beat()
	select {
	case <-p.ev.established:
	case err := <-p.ev.failed:
		p.tb.Fatalf("connection failed: %v", err)
	case <-time.After(safety):
		p.tb.Fatal("connection not established")
	}
}

// step moves the clock to a's next maintenance tick and waits until that
// tick is done with the connection: it returns the tick's time and nil if
// the connection's heartbeat came (stamped with that time), or the error
// the connection failed with at this tick.
func (p *handPeer) step() (time.Time, error) {
	p.tb.Helper()
	at := p.next
	p.clk.RunUntil(at)
	p.next = at.Add(p.interval)
	select {
	case v := <-p.hb:
		if got := time.Unix(0, int64(v)); !got.Equal(at) {
			p.tb.Fatalf("heartbeat of the tick at %s stamped %s", p.since(at), p.since(got))
		}
		return at, nil
	case err := <-p.ev.failed:
		return at, err
	case <-time.After(safety):
		p.tb.Fatalf("the tick at %s neither sent a heartbeat nor failed the connection", p.since(at))
	}
	return at, nil
}

// mustStep is step for a connection that must stay up.
func (p *handPeer) mustStep() time.Time {
	p.tb.Helper()
	at, err := p.step()
	if err != nil {
		p.tb.Fatalf("connection failed at %s: %v", p.since(at), err)
	}
	return at
}

// since formats t as virtual time since the clock's epoch.
func (p *handPeer) since(t time.Time) string { return "+" + t.Sub(clocktest.Epoch).String() }

// fastStep is mustStep that also waits for the tick's fast-path ping, and
// returns its nonce and the path the connection takes after the tick.
func (p *handPeer) fastStep() (at time.Time, nonce uint64, path, reason string) {
	p.tb.Helper()
	at = p.mustStep()
	nonce = p.recv(p.pings, "fast-path ping")
	path, reason = p.conn.fastStatus()
	return at, nonce, path, reason
}

// answerFast answers a's ping with a pong and a ping of ours, and returns
// once a has handled both: its pong to our ping came back.
func (p *handPeer) answerFast(nonce uint64) {
	p.tb.Helper()
	p.seq++
	beats := [][]byte{
		encodeBeatFrame(fastBeat{Type: beatPong, Receiver: p.conn.localIndex, Sender: p.name, Nonce: nonce}),
		encodeBeatFrame(fastBeat{Type: beatPing, Receiver: p.conn.localIndex, Sender: p.name, Nonce: p.seq}),
	}
	for _, b := range beats {
		if err := p.fast.SendBeat(p.aFastAddr, b); err != nil {
			p.tb.Fatal(err)
		}
	}
	for p.recv(p.pongs, "fast-path pong") != p.seq {
	}
}

// sendFrame sends a an Ethernet frame from a container behind us.
func (p *handPeer) sendFrame(f []byte) {
	p.tb.Helper()
	var b encap.Builder
	buf := make([]byte, 2048)
	p.ctr++
	b.Reset(buf[:len(buf)-encap.TagLen], encap.Header{Receiver: p.conn.localIndex, Sender: p.name, Counter: p.ctr}, 1400)
	if !b.Add(encap.FrameHeader{Src: p.name, Dst: p.a.name, HopLimit: 2}, f) {
		p.tb.Fatal("frame does not fit")
	}
	p.ep.send(p.tb, b.Bytes(), p.a.ov.LocalAddr())
}

// TestVirtualHeartbeatTimeout: a connection fails at the first
// maintenance tick more than FailTimeout after it last heard from the
// peer (or, never established, after it was added): alive at every tick
// up to the timeout, failed at the first one after it, with the reason.
// The last heartbeat arrives between ticks, so the bound is seen from
// both sides.
func TestVirtualHeartbeatTimeout(t *testing.T) {
	const interval, timeout = 500 * time.Millisecond, 10 * time.Second
	for i, tc := range []struct {
		name string
		// setup returns when a last heard from the peer, or added the
		// connection.
		setup  func(p *handPeer) time.Time
		reason string
	}{
		{"peer stops answering", func(p *handPeer) time.Time {
			p.establish()
			for range 6 {
				p.mustStep()
				p.beat()
			}
			p.clk.Advance(interval * 2 / 5) // between ticks
			p.beat()
			return p.clk.Now()
		}, "no UDP heartbeats from 127.0.0.152:"},
		{"no heartbeat ever", func(p *handPeer) time.Time {
			added := p.clk.Now()
			p.clk.Advance(interval / 5)
			p.hello()
			p.recv(p.hb, "heartbeat after the hello")
			return added
		}, "no UDP heartbeats from 127.0.0.154:"},
		{"heartbeats never acknowledged", func(p *handPeer) time.Time {
			added := p.clk.Now()
			p.hello()
			p.recv(p.hb, "heartbeat after the hello")
			for range 3 {
				p.mustStep()
				p.beat()
			}
			return added
		}, "it never acknowledged our heartbeats"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			clk := clocktest.New(time.Time{})
			p := newHandPeer(t, clk, 150+2*i, nil, func(c *Config) { c.FailTimeout = timeout })
			since := tc.setup(p)
			for {
				at, err := p.step()
				silent := at.Sub(since)
				if err == nil {
					if silent > timeout {
						t.Fatalf("still up at %s, %s after it last heard (timeout %s)", p.since(at), silent, timeout)
					}
					continue
				}
				if silent <= timeout {
					t.Fatalf("failed at %s, only %s after it last heard (timeout %s): %v", p.since(at), silent, timeout, err)
				}
				if silent > timeout+interval {
					t.Fatalf("failed at %s, %s after it last heard: later than the first tick after the timeout", p.since(at), silent)
				}
				if !strings.Contains(err.Error(), tc.reason) {
					t.Fatalf("reason %q, want it to contain %q", err, tc.reason)
				}
				if st, _ := p.conn.state(); st != "failed" {
					t.Fatalf("state %q after the failure", st)
				}
				t.Logf("failed at %s, %s after it last heard: %v", p.since(at), silent, err)
				return
			}
		})
	}
}

// TestVirtualFastPathFallback: the fast path comes up at the first tick
// after heartbeats went both ways; when they stop it stays up while the
// last one is at most FastPathTimeout old and falls back to the sleeve at
// the first tick after that, its forwarding entries removed in that tick;
// when they resume it returns at the next tick, entries restored.
func TestVirtualFastPathFallback(t *testing.T) {
	const interval, timeout = 500 * time.Millisecond, DefaultFastPathTimeout
	clk := clocktest.New(time.Time{})
	p := newHandPeer(t, clk, 160, fastpathtest.NewNet(), func(c *Config) {
		c.FastPathTimeout = timeout
		c.FailTimeout = time.Hour // UDP heartbeats go unanswered here
	})
	p.establish()
	// a learns a container behind the peer, as from an ARP; its entry
	// follows the fast path
	remoteMAC := mac(161, 1)
	p.sendFrame(ethFrame(broadcastMAC, remoteMAC, 1, 60))
	p.a.expect(t, 1)
	hasEntry := func() bool {
		return p.aFast.Entries()[[6]byte(remoteMAC)] == p.ep.addr().Addr()
	}

	// Up: at the first tick after heartbeats went both ways.
	at, nonce, path, reason := p.fastStep()
	if path != PathSleeve || !strings.Contains(reason, "not yet confirmed") {
		t.Fatalf("at %s before any heartbeat: path %s (%q)", p.since(at), path, reason)
	}
	p.answerFast(nonce)
	if at, nonce, path, _ = p.fastStep(); path != PathFastDP {
		t.Fatalf("at %s, one tick after heartbeats went both ways: path %s", p.since(at), path)
	}
	for range 4 {
		p.answerFast(nonce)
		if at, nonce, path, _ = p.fastStep(); path != PathFastDP || !hasEntry() {
			t.Fatalf("at %s: path %s, entry %v", p.since(at), path, hasEntry())
		}
	}

	// fallBack steps on without answering, the last heartbeats having
	// arrived at last, until the path falls back; it checks the bound and
	// that the entry went in that tick (gone when the next one ends).
	fallBack := func(last time.Time) {
		t.Helper()
		for {
			at, _, path, reason := p.fastStep()
			silent := at.Sub(last)
			switch {
			case path == PathFastDP && silent > timeout:
				t.Fatalf("still on the fast path at %s, %s after the last heartbeat (timeout %s)", p.since(at), silent, timeout)
			case path == PathFastDP:
				if !hasEntry() {
					t.Fatalf("at %s: on the fast path without the entry", p.since(at))
				}
				continue
			case silent <= timeout:
				t.Fatalf("fell back at %s, only %s after the last heartbeat (timeout %s): %s", p.since(at), silent, timeout, reason)
			case silent > timeout+interval:
				t.Fatalf("fell back at %s, %s after the last heartbeat: later than the first tick after the timeout", p.since(at), silent)
			case !strings.Contains(reason, "no VXLAN heartbeats either way for 3s"):
				t.Fatalf("fell back with reason %q", reason)
			}
			t.Logf("fell back at %s, %s after the last heartbeat at %s: %s", p.since(at), silent, p.since(last), reason)
			break
		}
		at, _, path, _ := p.fastStep()
		if path != PathSleeve || hasEntry() {
			t.Fatalf("at %s, a tick after falling back: path %s, entry %v", p.since(at), path, hasEntry())
		}
		if p.a.ov.peerConn(p.name) != p.conn {
			t.Fatal("the connection is no longer the peer's") // frames still flow over the sleeve
		}
	}

	// Down: the last heartbeats arrive between ticks, then none.
	clk.Advance(interval * 2 / 5)
	p.answerFast(nonce)
	fallBack(clk.Now())

	// Back: heartbeats resume at a tick; the path returns at the next.
	at, nonce, _, _ = p.fastStep()
	p.answerFast(nonce)
	if _, nonce, path, _ = p.fastStep(); path != PathFastDP {
		t.Fatalf("one tick after heartbeats resumed at %s: path %s", p.since(at), path)
	}
	p.answerFast(nonce)
	last := clk.Now()
	if at, _, path, _ = p.fastStep(); path != PathFastDP || !hasEntry() {
		t.Fatalf("at %s: path %s, entry %v after the return", p.since(at), path, hasEntry())
	}

	// Down again, the last heartbeats at a tick: still up at the tick
	// exactly FastPathTimeout later.
	fallBack(last)
}

// probeRecorder is a prober that hands every probe to the test.
type probeRecorder struct {
	probes chan sentProbe
}

type sentProbe struct {
	size int    // IP packet bytes
	id   uint64 // cookie to echo
}

var _ prober = (*probeRecorder)(nil)

func (r *probeRecorder) send(pkt []byte, _ uint16, _ netip.AddrPort) error {
	d := pkt[ipv4Header+udpHeader:]
	select {
	case r.probes <- sentProbe{size: len(pkt), id: getUint64(d[encap.HeaderLen:])}:
		return nil
	default:
		return errors.New("probe recorder full")
	}
}

func (r *probeRecorder) Close() error { return nil }

// answerProbes acknowledges a's queued probes whose size passes, then
// returns once a has handled the acks (so the next round, if they decided
// the current one, is queued) and answers that round too, until no probe
// is left. It returns how many probes there were.
func (p *handPeer) answerProbes(r *probeRecorder, passes func(size int) bool) int {
	p.tb.Helper()
	total := 0
	for {
		n := len(r.probes)
		if n == 0 {
			return total
		}
		total += n
		for range n {
			pr := <-r.probes
			if passes(pr.size) {
				ack := make([]byte, 10)
				putUint64(ack, pr.id)
				ack[8], ack[9] = byte(pr.size>>8), byte(pr.size)
				p.send(encap.TypeProbeAck, ack)
			}
		}
		p.beat()
	}
}

// pmtuState returns whether a search is under way, when the next one is
// due and the path MTU in use.
func (p *handPeer) pmtuState() (active bool, next time.Time, pmtu int) {
	p.conn.pmtuMu.Lock()
	defer p.conn.pmtuMu.Unlock()
	return p.conn.probe.active, p.conn.probe.next, p.conn.pathMTU()
}

// TestVirtualPMTUSchedule: the first path MTU search starts at the first
// tick after establishment; one that erred low (both probes of the largest
// size lost) is checked again 30 s after it settled, and a search that
// found the whole underlay MTU is repeated exactly PMTUInterval after it
// settled; no probe goes out in between.
func TestVirtualPMTUSchedule(t *testing.T) {
	const pmtuInterval = 10 * time.Minute
	clk := clocktest.New(time.Time{})
	rec := &probeRecorder{probes: make(chan sentProbe, 256)}
	p := newHandPeer(t, clk, 170, nil, func(c *Config) {
		c.prober = rec
		c.PMTUInterval = pmtuInterval
		c.FailTimeout = time.Hour // the peer speaks only to answer probes
	})
	p.establish()

	// search runs a search from the tick at start until it settles and
	// returns when it settled (all at ticks or while answering).
	search := func(start time.Time, passes func(int) bool) time.Time {
		t.Helper()
		for rounds := 0; ; rounds++ {
			at := p.mustStep()
			n := p.answerProbes(rec, passes)
			if at.Equal(start) && n == 0 {
				t.Fatalf("no probes at %s", p.since(at))
			}
			if active, _, _ := p.pmtuState(); !active {
				return clk.Now()
			}
			if rounds > 20 {
				t.Fatal("search does not settle")
			}
		}
	}
	// quiet steps to the tick before due, checking that no probe leaves.
	quiet := func(due time.Time) {
		t.Helper()
		for p.next.Before(due) {
			at := p.mustStep()
			if n := len(rec.probes); n > 0 {
				t.Fatalf("%d probes at %s; the next search is due at %s", n, p.since(at), p.since(due))
			}
		}
		if !p.next.Equal(due) {
			t.Fatalf("no tick at %s (ticks every %s)", p.since(due), p.interval)
		}
	}
	check := func(step string, settled time.Time, wantPMTU int, wantIn time.Duration) time.Time {
		t.Helper()
		_, next, pmtu := p.pmtuState()
		if pmtu != wantPMTU || next.Sub(settled) != wantIn {
			t.Fatalf("%s: settled at %s with path MTU %d, next search %s later; want %d, %s later",
				step, p.since(settled), pmtu, next.Sub(settled), wantPMTU, wantIn)
		}
		t.Logf("%s: settled at %s with path MTU %d, next search at %s", step, p.since(settled), pmtu, p.since(next))
		return next
	}

	lossy := func(size int) bool { return size < 1500 } // both 1500-byte probes lost
	clean := func(int) bool { return true }

	settled := search(p.next, lossy)
	due := check("first search, 1500 lost", settled, 1499, 30*time.Second)
	quiet(due)
	settled = search(due, clean)
	due = check("search 30 s later", settled, 1500, pmtuInterval)
	quiet(due)
	settled = search(due, clean)
	check("search PMTUInterval later", settled, 1500, pmtuInterval)
}
