package overlay

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/netip"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/vishvananda/netns"
	"go.uber.org/goleak"

	"github.com/weavelab/weave/mesh"
	"github.com/weavelab/weave/mesh/handshake"
	"github.com/weavelab/weave/mesh/identity"
	"github.com/weavelab/weave/mesh/topology"
	"github.com/weavelab/weave/router/netdev/netdevtest"
	"github.com/weavelab/weave/router/overlay/bind"
	"github.com/weavelab/weave/router/overlay/bind/bindtest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// The hosts of a test talk over in-memory binds on testNet, or with
// -overlay.udp over real UDP sockets on loopback (each host its own
// 127.0.0.x); tests that need the kernel (path MTU probes, netns, socket
// options) ask for real sockets with realSocket.
var (
	realUDP = flag.Bool("overlay.udp", false, "run the overlay tests over UDP sockets on loopback instead of in-memory binds")
	testNet = bindtest.NewNet()
)

// realSocket makes a host use a real UDP socket.
func realSocket(c *Config) { c.Bind = nil }

// endpoint is a test's own UDP endpoint beside the hosts (a spoofer, a
// sender of hand-made datagrams), on the hosts' network.
type endpoint struct {
	b bind.Bind
}

func newEndpoint(t testing.TB, ip [4]byte) *endpoint {
	t.Helper()
	var b bind.Bind
	var err error
	addr := netip.AddrPortFrom(netip.AddrFrom4(ip), 0)
	if *realUDP {
		b, err = bind.Listen(addr, bind.Options{})
	} else {
		b, err = testNet.Listen(addr)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	return &endpoint{b: b}
}

func (e *endpoint) addr() netip.AddrPort { return e.b.LocalAddr() }

// send sends d to the host h.
func (e *endpoint) send(t testing.TB, d []byte, to netip.AddrPort) {
	t.Helper()
	if _, err := e.b.WriteBatch([]bind.Message{{Buffers: [][]byte{d}, Addr: to}}); err != nil {
		t.Fatal(err)
	}
}

// recv waits up to timeout for a datagram and returns its size; on timeout
// it closes the endpoint and returns an error.
func (e *endpoint) recv(timeout time.Duration) (int, error) {
	type result struct {
		n   int
		err error
	}
	ch := make(chan result, 1)
	go func() {
		msgs := []bind.Message{{Buffers: [][]byte{make([]byte, 65536)}}}
		n, err := e.b.ReadBatch(msgs)
		if n > 0 {
			ch <- result{msgs[0].N, nil}
			return
		}
		ch <- result{0, err}
	}()
	select {
	case r := <-ch:
		return r.n, r.err
	case <-time.After(timeout):
		e.b.Close()
		<-ch
		return 0, errors.New("nothing received")
	}
}

// safety bounds a wait for something that must happen; hitting it is a
// failure, not a timing measurement.
const safety = 10 * time.Second

// fakeRoutes is a static route table.
// fakeRoutes are routes a test sets; tests that change them while the
// overlay runs do so under mu (setUnicast).
type fakeRoutes struct {
	mu        sync.Mutex
	unicast   map[identity.PeerName]identity.PeerName
	broadcast map[identity.PeerName][]identity.PeerName
}

func (r *fakeRoutes) Unicast(dst identity.PeerName) (identity.PeerName, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	n, ok := r.unicast[dst]
	return n, ok
}

func (r *fakeRoutes) Broadcast(src identity.PeerName) []identity.PeerName {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.broadcast[src]
}

// setUnicast changes a route while the overlay may be reading routes.
func (r *fakeRoutes) setUnicast(dst, next identity.PeerName) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.unicast[dst] = next
}

// events records a connection's overlay events.
type events struct {
	established chan struct{}
	failed      chan error
	once        sync.Once
}

func newEvents() *events {
	return &events{established: make(chan struct{}), failed: make(chan error, 1)}
}

func (e *events) Established() { e.once.Do(func() { close(e.established) }) }
func (e *events) Failed(err error) {
	select {
	case e.failed <- err:
	default:
	}
}

// ctlLink delivers control messages to the far end's OverlayConn, queueing
// them until that end exists (as a TCP connection would buffer them).
type ctlLink struct {
	mu     sync.Mutex
	target mesh.OverlayConn
	queue  [][]byte
}

func (l *ctlLink) send(msg []byte) error {
	l.mu.Lock()
	t := l.target
	if t == nil {
		l.queue = append(l.queue, append([]byte(nil), msg...))
	}
	l.mu.Unlock()
	if t != nil {
		t.ControlMessage(msg)
	}
	return nil
}

func (l *ctlLink) set(c mesh.OverlayConn) {
	l.mu.Lock()
	l.target = c
	q := l.queue
	l.queue = nil
	l.mu.Unlock()
	for _, m := range q {
		c.ControlMessage(m)
	}
}

// host is one overlay under test with the test's end of its device.
type host struct {
	name   identity.PeerName
	ov     *Overlay
	dev    *netdevtest.Fake // the test's end
	bind   *bindtest.Fake   // nil over a real socket
	frames chan []byte      // frames the overlay wrote to the device
	routes *fakeRoutes
	events map[identity.PeerName]*events
}

func newHost(t testing.TB, i int, mod func(*Config)) *host {
	t.Helper()
	return newHostIn(t, i, nil, mod)
}

// newHostIn is newHost with the overlay's sockets made in the network
// namespace ns (nil: the test's own).
func newHostIn(t testing.TB, i int, ns *netns.NsHandle, mod func(*Config)) *host {
	t.Helper()
	name := identity.PeerName(0x0a0000000000 + uint64(i))
	ovEnd, testEnd := netdevtest.NewPair("h6-"+name.String(), 65535, 8)
	h := &host{
		name: name, dev: testEnd, frames: make(chan []byte, 1024),
		routes: &fakeRoutes{unicast: map[identity.PeerName]identity.PeerName{}, broadcast: map[identity.PeerName][]identity.PeerName{}},
		events: map[identity.PeerName]*events{},
	}
	cfg := DefaultConfig()
	cfg.Peer = name
	cfg.BindAddr = netip.AddrFrom4([4]byte{127, 0, 0, byte(i + 1)})
	cfg.UDPPort = 0
	cfg.Device = ovEnd
	cfg.Routes = func() RouteTable { return h.routes }
	cfg.HeartbeatInterval = 20 * time.Millisecond
	cfg.Workers = 2
	cfg.Openers = 2 // the receive pipeline, whatever the CPUs
	if ns == nil && !*realUDP {
		fb, err := testNet.Listen(netip.AddrPortFrom(cfg.BindAddr, 0))
		if err != nil {
			t.Fatal(err)
		}
		cfg.Bind, h.bind = fb, fb
	}
	if mod != nil {
		mod(&cfg)
	}
	if cfg.Bind == nil && h.bind != nil {
		h.bind.Close() // the test asked for a real socket
		h.bind = nil
	}
	ov, err := newIn(ns, cfg)
	if err != nil {
		t.Fatal(err)
	}
	h.ov = ov
	ctx, cancel := context.WithCancel(context.Background())
	if err := ov.Start(ctx); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	stop := make(chan struct{})
	wg.Add(1)
	go func() {
		defer wg.Done()
		bufs := [][]byte{make([]byte, 65536)}
		sizes := []int{0}
		for {
			n, err := testEnd.Read(bufs, sizes, 0)
			if err != nil {
				return
			}
			for i := range n {
				select {
				case h.frames <- append([]byte(nil), bufs[i][:sizes[i]]...):
				case <-stop:
					return
				}
			}
		}
	}()
	t.Cleanup(func() {
		close(stop)
		cancel()
		ov.Close()
		testEnd.Close()
		wg.Wait()
	})
	return h
}

// newIn calls New with the calling thread in namespace ns (nil: as is);
// sockets stay in the namespace they were made in.
func newIn(ns *netns.NsHandle, cfg Config) (*Overlay, error) {
	if ns == nil {
		return New(cfg)
	}
	runtime.LockOSThread()
	orig, err := netns.Get()
	if err != nil {
		runtime.UnlockOSThread()
		return nil, err
	}
	defer orig.Close()
	if err := netns.Set(*ns); err != nil {
		runtime.UnlockOSThread()
		return nil, err
	}
	ov, err := New(cfg)
	if serr := netns.Set(orig); serr != nil {
		// leave the thread locked: the runtime discards it with the goroutine
		if ov != nil {
			ov.Close()
		}
		return nil, fmt.Errorf("return to the original namespace: %w", serr)
	}
	runtime.UnlockOSThread()
	return ov, err
}

func randomKeys(t testing.TB) (ab, ba handshake.DataKeys) {
	t.Helper()
	var k1, k2 [32]byte
	rand.Read(k1[:])
	rand.Read(k2[:])
	return handshake.DataKeys{Send: k1, Recv: k2}, handshake.DataKeys{Send: k2, Recv: k1}
}

// suites are the data cipher suites every test with keys runs with.
var suites = []handshake.Suite{handshake.SuiteAESGCM, handshake.SuiteChaCha}

// withPlain is suites preceded by 0: no keys.
var withPlain = append([]handshake.Suite{0}, suites...)

// suiteName names a subtest for suite: "plain" for 0, else the suite's name.
func suiteName(suite handshake.Suite) string {
	if suite == 0 {
		return "plain"
	}
	return suite.String()
}

// connect makes a connection between a and b (a dialled) and confirms it
// on both ends; with a suite (0: plain), each direction gets its own
// random key.
func connect(t testing.TB, a, b *host, suite handshake.Suite) {
	t.Helper()
	var ka, kb *handshake.DataKeys
	if suite != 0 {
		x, y := randomKeys(t)
		ka, kb = &x, &y
	}
	connectKeys(t, a, b, suite, ka, kb)
}

// connectKeys connects a and b with the given suite and keys (0, nil: plain).
func connectKeys(t testing.TB, a, b *host, suite handshake.Suite, ka, kb *handshake.DataKeys) {
	t.Helper()
	var toB, toA ctlLink
	id := uint64(a.name<<8 ^ b.name)
	ea, eb := newEvents(), newEvents()
	a.events[b.name], b.events[a.name] = ea, eb
	ca, err := a.ov.AddConnection(mesh.OverlayConnParams{
		Local: identity.Peer{Name: a.name}, Remote: identity.Peer{Name: b.name}, ConnID: id, Outbound: true,
		RemoteUDP: b.ov.LocalAddr(), Keys: ka, Suite: suite, SendControl: toB.send, Events: ea,
	})
	if err != nil {
		t.Fatal(err)
	}
	cb, err := b.ov.AddConnection(mesh.OverlayConnParams{
		Local: identity.Peer{Name: b.name}, Remote: identity.Peer{Name: a.name}, ConnID: id,
		RemoteUDP: a.ov.LocalAddr(), Keys: kb, Suite: suite, SendControl: toA.send, Events: eb,
	})
	if err != nil {
		t.Fatal(err)
	}
	toB.set(cb)
	toA.set(ca)
	ca.Confirm()
	cb.Confirm()
}

func waitEstablished(t testing.TB, a, b *host) {
	t.Helper()
	for _, e := range []*events{a.events[b.name], b.events[a.name]} {
		select {
		case <-e.established:
		case err := <-e.failed:
			t.Fatalf("connection %s-%s failed: %v", a.name, b.name, err)
		case <-time.After(safety):
			t.Fatalf("connection %s-%s not established", a.name, b.name)
		}
	}
}

// mac returns a container MAC on host i.
func mac(host, n int) net.HardwareAddr {
	return net.HardwareAddr{0x02, 0x42, 0, 0, byte(host), byte(n)}
}

var broadcastMAC = net.HardwareAddr{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}

// ethFrame builds a frame with a recognisable payload tag.
func ethFrame(dst, src net.HardwareAddr, tag uint32, size int) []byte {
	f := make([]byte, size)
	copy(f[0:6], dst)
	copy(f[6:12], src)
	binary.BigEndian.PutUint16(f[12:14], 0x88b5) // local experimental ethertype
	binary.BigEndian.PutUint32(f[14:18], tag)
	for i := 18; i < size; i++ {
		f[i] = byte(i)
	}
	return f
}

func frameTag(f []byte) uint32 { return binary.BigEndian.Uint32(f[14:18]) }

// inject writes a frame into the host's device as a local container would.
func (h *host) inject(t testing.TB, f []byte) {
	t.Helper()
	if _, err := h.dev.Write([][]byte{f}, 0); err != nil {
		t.Fatal(err)
	}
}

// expect waits for the frame with tag on h's device, failing on any other
// frame first.
func (h *host) expect(t testing.TB, tag uint32) []byte {
	t.Helper()
	select {
	case f := <-h.frames:
		if frameTag(f) != tag {
			t.Fatalf("host %s: got frame tag %d, want %d", h.name, frameTag(f), tag)
		}
		return f
	case <-time.After(safety):
		t.Fatalf("host %s: frame %d never arrived", h.name, tag)
	}
	return nil
}

// expectNone checks that no frame is queued on h's device right now.
func (h *host) expectNone(t testing.TB) {
	t.Helper()
	select {
	case f := <-h.frames:
		t.Fatalf("host %s: unexpected frame tag %d", h.name, frameTag(f))
	default:
	}
}

var _ RouteTable = (*topology.Routes)(nil)

// waitFor polls cond until it holds; hitting the safety bound fails.
func waitFor(t testing.TB, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(safety)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition never held")
		}
		time.Sleep(2 * time.Millisecond)
	}
}
