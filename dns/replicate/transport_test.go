package replicate_test

import (
	"bytes"
	"crypto/rand"
	"errors"
	"io"
	"net"
	"os"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"

	"github.com/weavelab/weave/dns/replicate"
	"github.com/weavelab/weave/dns/replicate/replicatetest"
	"github.com/weavelab/weave/mesh/identity"
)

func peer(i int) identity.PeerName { return identity.PeerName(0x020000000001 + i) }

// testTransportConfig is the default, whose timeouts are long enough that
// a loaded test machine does not trip them.
func testTransportConfig() replicate.TransportConfig {
	return replicate.DefaultTransportConfig()
}

// shortTimeouts makes streams give up quickly, for tests of giving up.
func shortTimeouts(c *replicate.TransportConfig) {
	c.KeepaliveInterval = 50 * time.Millisecond
	c.IdleTimeout = 500 * time.Millisecond
	c.ReorderTimeout = 300 * time.Millisecond
}

// newTransports returns n Transports on one fabric, shut down at cleanup.
func newTransports(tb testing.TB, opts replicatetest.Options, n int, tweaks ...func(*replicate.TransportConfig)) (*replicatetest.Fabric, []*replicate.Transport) {
	tb.Helper()
	f := replicatetest.New(opts)
	tb.Cleanup(f.Close)
	ts := make([]*replicate.Transport, n)
	for i := range ts {
		ep := f.Endpoint(peer(i))
		cfg := testTransportConfig()
		for _, tweak := range tweaks {
			tweak(&cfg)
		}
		cfg.Self, cfg.Sender = peer(i), ep
		t, err := replicate.NewTransport(cfg)
		if err != nil {
			tb.Fatal(err)
		}
		ep.Bind(t.Deliver)
		tb.Cleanup(func() { _ = t.Shutdown() })
		ts[i] = t
	}
	return f, ts
}

// dial opens a stream from a to b and returns both ends.
func dial(tb testing.TB, a *replicate.Transport, b *replicate.Transport, to identity.PeerName) (net.Conn, net.Conn) {
	tb.Helper()
	c, err := a.DialTimeout(replicate.PeerAddr(to), 2*time.Second)
	if err != nil {
		tb.Fatalf("dial: %v", err)
	}
	tb.Cleanup(func() { _ = c.Close() })
	select {
	case s := <-b.StreamCh():
		tb.Cleanup(func() { _ = s.Close() })
		return c, s
	case <-time.After(2 * time.Second):
		tb.Fatal("no stream accepted")
	}
	return nil, nil
}

func TestPackets(t *testing.T) {
	_, ts := newTransports(t, replicatetest.Options{}, 2)
	if _, err := ts[0].WriteToAddress([]byte("ping"), memberlist.Address{Addr: replicate.PeerAddr(peer(1)), Name: peer(1).String()}); err != nil {
		t.Fatal(err)
	}
	select {
	case p := <-ts[1].PacketCh():
		if string(p.Buf) != "ping" || p.From.String() != replicate.PeerAddr(peer(0)) {
			t.Fatalf("got %q from %s", p.Buf, p.From)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("no packet")
	}
	for _, a := range []memberlist.Address{
		{Addr: "10.0.0.1:7946"},
		{Addr: replicate.PeerAddr(peer(1)), Name: peer(0).String()}, // name and address disagree
	} {
		if _, err := ts[0].WriteToAddress([]byte("x"), a); !errors.Is(err, replicate.ErrBadAddr) {
			t.Errorf("WriteToAddress(%v) = %v, want ErrBadAddr", a, err)
		}
	}
}

// TestStreamPayloads moves 1 MiB each way at once through streams over
// fabrics that delay and reorder.
func TestStreamPayloads(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts replicatetest.Options
	}{
		{"in order", replicatetest.Options{}},
		{"delayed", replicatetest.Options{Delay: 2 * time.Millisecond}},
		{"reordered", replicatetest.Options{Jitter: 3 * time.Millisecond, Seed: 1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, ts := newTransports(t, tc.opts, 2)
			c, s := dial(t, ts[0], ts[1], peer(1))
			up, down := make([]byte, 1<<20), make([]byte, 1<<20)
			rand.Read(up)
			rand.Read(down)
			start := time.Now()
			errc := make(chan error, 2)
			go func() {
				_, err := c.Write(up)
				errc <- err
			}()
			go func() {
				_, err := s.Write(down)
				errc <- err
			}()
			gotUp, gotDown := make([]byte, len(up)), make([]byte, len(down))
			if _, err := io.ReadFull(s, gotUp); err != nil {
				t.Fatalf("acceptor read: %v", err)
			}
			if _, err := io.ReadFull(c, gotDown); err != nil {
				t.Fatalf("dialler read: %v", err)
			}
			for range 2 {
				if err := <-errc; err != nil {
					t.Fatalf("write: %v", err)
				}
			}
			if !bytes.Equal(gotUp, up) || !bytes.Equal(gotDown, down) {
				t.Fatal("payload corrupted")
			}
			t.Logf("2 MiB in %v", time.Since(start))
			// Close is a FIN after the data: the other side reads EOF.
			if err := c.Close(); err != nil {
				t.Fatal(err)
			}
			if n, err := s.Read(make([]byte, 1)); n != 0 || err != io.EOF {
				t.Fatalf("read after FIN = %d, %v; want EOF", n, err)
			}
		})
	}
}

func TestStreamDeadlines(t *testing.T) {
	_, ts := newTransports(t, replicatetest.Options{}, 2)
	c, s := dial(t, ts[0], ts[1], peer(1))

	// An idle read times out as a net.Error, and the stream survives.
	c.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
	start := time.Now()
	_, err := c.Read(make([]byte, 1))
	var ne net.Error
	if !errors.Is(err, os.ErrDeadlineExceeded) || !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("read error %v, want a timeout", err)
	}
	if d := time.Since(start); d < 40*time.Millisecond || d > 5*time.Second {
		t.Fatalf("read timed out after %v, want about 50ms", d)
	}
	// A deadline in the past fails at once; clearing it lets data through.
	c.SetReadDeadline(time.Now().Add(-time.Second))
	if _, err := c.Read(make([]byte, 1)); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("read with past deadline: %v", err)
	}
	c.SetReadDeadline(time.Time{})
	go s.Write([]byte("late"))
	buf := make([]byte, 4)
	if _, err := io.ReadFull(c, buf); err != nil || string(buf) != "late" {
		t.Fatalf("read %q, %v", buf, err)
	}

	// On a fresh stream, a peer that never reads lets us write one window
	// and no more: the next write blocks until the deadline.
	_, s = dial(t, ts[0], ts[1], peer(1))
	window := replicate.DefaultTransportConfig().Window
	if n, err := s.Write(make([]byte, window)); n != window || err != nil {
		t.Fatalf("write of one window = %d, %v", n, err)
	}
	s.SetWriteDeadline(time.Now().Add(100 * time.Millisecond))
	n, err := s.Write(make([]byte, 1))
	if n != 0 || !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("write past the window = %d, %v; want 0 and a timeout", n, err)
	}
	// Extending a deadline while blocked takes effect.
	s.SetWriteDeadline(time.Now().Add(time.Hour))
	go func() {
		time.Sleep(50 * time.Millisecond)
		s.SetWriteDeadline(time.Now())
	}()
	if _, err := s.Write(make([]byte, 1)); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("write error %v after shortening the deadline", err)
	}

	// Close wakes a blocked reader with net.ErrClosed.
	go func() {
		time.Sleep(20 * time.Millisecond)
		s.Close()
	}()
	if _, err := io.ReadAll(s); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("read after Close: %v", err)
	}
}

// TestStreamPeerSilent cuts the fabric under an open stream: with no
// keepalives arriving, both ends give up after IdleTimeout.
func TestStreamPeerSilent(t *testing.T) {
	f, ts := newTransports(t, replicatetest.Options{}, 2, shortTimeouts)
	c, s := dial(t, ts[0], ts[1], peer(1))
	f.Partition([]identity.PeerName{peer(0)}, []identity.PeerName{peer(1)})
	start := time.Now()
	for _, conn := range []net.Conn{c, s} {
		if _, err := conn.Read(make([]byte, 1)); !errors.Is(err, replicate.ErrPeerSilent) {
			t.Fatalf("read error %v, want ErrPeerSilent", err)
		}
	}
	var cfg replicate.TransportConfig
	shortTimeouts(&cfg)
	if d := time.Since(start); d < cfg.IdleTimeout || d > 10*cfg.IdleTimeout {
		t.Fatalf("gave up after %v, want about %v", d, cfg.IdleTimeout)
	}
	t.Logf("silence noticed after %v (IdleTimeout %v)", time.Since(start), cfg.IdleTimeout)
	if _, err := c.Write([]byte("x")); !errors.Is(err, replicate.ErrPeerSilent) {
		t.Fatalf("write error %v, want ErrPeerSilent", err)
	}
}

// TestStreamIdleButAlive: keepalives keep a quiet stream open past
// IdleTimeout.
func TestStreamIdleButAlive(t *testing.T) {
	_, ts := newTransports(t, replicatetest.Options{}, 2, shortTimeouts)
	c, s := dial(t, ts[0], ts[1], peer(1))
	var cfg replicate.TransportConfig
	shortTimeouts(&cfg)
	c.SetReadDeadline(time.Now().Add(3 * cfg.IdleTimeout))
	if _, err := c.Read(make([]byte, 1)); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("read error %v, want the deadline (not silence)", err)
	}
	if _, err := s.Write([]byte("still here")); err != nil {
		t.Fatal(err)
	}
}

// TestStreamLoss: over a lossy fabric a stream may fail, but only with an
// error, promptly, and never with wrong data.
func TestStreamLoss(t *testing.T) {
	_, ts := newTransports(t, replicatetest.Options{Loss: 0.02, Seed: 7}, 2, shortTimeouts)
	payload := make([]byte, 256<<10)
	rand.Read(payload)
	var ok, failed int
	for range 10 {
		c, err := ts[0].DialTimeout(replicate.PeerAddr(peer(1)), 200*time.Millisecond)
		if err != nil {
			failed++ // SYN or ACCEPT lost
			continue
		}
		var s net.Conn
		select {
		case s = <-ts[1].StreamCh():
		case <-time.After(time.Second):
			t.Fatal("dial succeeded but nothing was accepted")
		}
		go func() {
			c.Write(payload)
			c.Close()
		}()
		s.SetReadDeadline(time.Now().Add(10 * time.Second))
		got, err := io.ReadAll(s)
		s.Close()
		if !bytes.Equal(got, payload[:len(got)]) {
			t.Fatal("received bytes that were not sent")
		}
		switch {
		case err == nil && len(got) == len(payload):
			ok++
		case errors.Is(err, replicate.ErrFramesLost), errors.Is(err, replicate.ErrReset), errors.Is(err, replicate.ErrPeerSilent):
			failed++
		default:
			t.Fatalf("stream ended with %d of %d bytes and %v", len(got), len(payload), err)
		}
	}
	t.Logf("%d streams intact, %d failed cleanly", ok, failed)
}

func TestDialTimeoutAndReset(t *testing.T) {
	f, ts := newTransports(t, replicatetest.Options{}, 2)

	// A peer whose endpoint delivers nowhere never accepts.
	f.Endpoint(peer(9))
	start := time.Now()
	_, err := ts[0].DialTimeout(replicate.PeerAddr(peer(9)), 100*time.Millisecond)
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("dial error %v, want a timeout", err)
	}
	if d := time.Since(start); d < 100*time.Millisecond || d > 5*time.Second {
		t.Fatalf("dial gave up after %v", d)
	}
	// A peer with no route fails at once.
	if _, err := ts[0].DialTimeout(replicate.PeerAddr(peer(8)), time.Second); err == nil {
		t.Fatal("dial to an unknown peer succeeded")
	}

	// Shutdown resets the streams of the peer that shuts down.
	c, s := dial(t, ts[0], ts[1], peer(1))
	if err := ts[1].Shutdown(); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Read(make([]byte, 1)); !errors.Is(err, replicate.ErrReset) {
		t.Fatalf("read error %v, want ErrReset", err)
	}
	if _, err := s.Read(make([]byte, 1)); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("read error on the shut down side %v, want net.ErrClosed", err)
	}
	if _, err := ts[1].DialTimeout(replicate.PeerAddr(peer(0)), time.Second); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("dial after Shutdown: %v", err)
	}
}

// TestWriteAfterPeerClosed: data for a stream the peer closed gets a
// RESET back.
func TestWriteAfterPeerClosed(t *testing.T) {
	_, ts := newTransports(t, replicatetest.Options{}, 2)
	c, s := dial(t, ts[0], ts[1], peer(1))
	s.Close()
	if _, err := c.Read(make([]byte, 1)); err != io.EOF {
		t.Fatalf("read after peer Close: %v, want EOF", err)
	}
	deadline := time.Now().Add(2 * time.Second)
	for {
		_, err := c.Write([]byte("x"))
		if errors.Is(err, replicate.ErrReset) {
			return
		}
		if err != nil || time.Now().After(deadline) {
			t.Fatalf("write after peer Close: %v, want ErrReset", err)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
