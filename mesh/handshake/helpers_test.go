package handshake

import (
	"bytes"
	"context"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/weavelab/weave/mesh/identity"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// PSKs are slow to derive (that is the point), so tests share a few.
var (
	pskSecret = sync.OnceValue(func() *PSK { return DeriveKey([]byte("secret"), nil) })
	pskOther  = sync.OnceValue(func() *PSK { return DeriveKey([]byte("other"), nil) })
)

// testKey is peer n's identity key, the same in every run.
func testKey(n byte) *identity.Key {
	k, err := identity.KeyFromSeed(bytes.Repeat([]byte{n}, identity.SeedSize))
	if err != nil {
		panic(err)
	}
	return k
}

func testPeer(n byte) identity.Peer {
	return identity.Peer{
		Name:     testKey(n).Name(),
		NickName: "host" + string('0'+n),
		UID:      identity.UID(1000 + uint64(n)),
	}
}

func testConfig(n byte, psk *PSK) Config {
	return Config{Local: testPeer(n), Key: testKey(n), UDPPort: 6780 + int(n), PSK: psk}
}

// transports are the two ways tests connect the ends: an unbuffered
// in-memory pipe (which deadlocks if both ends write first without care)
// and real TCP on loopback.
var transports = []string{"pipe", "tcp"}

// connPair returns two connected conns over the named transport.
func connPair(tb testing.TB, transport string) (client, server net.Conn) {
	tb.Helper()
	switch transport {
	case "pipe":
		client, server = net.Pipe()
	case "tcp":
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			tb.Fatal(err)
		}
		defer l.Close()
		type res struct {
			c   net.Conn
			err error
		}
		ch := make(chan res, 1)
		go func() {
			c, err := l.Accept()
			ch <- res{c, err}
		}()
		client, err = net.Dial("tcp", l.Addr().String())
		if err != nil {
			tb.Fatal(err)
		}
		r := <-ch
		if r.err != nil {
			tb.Fatal(r.err)
		}
		server = r.c
	default:
		tb.Fatalf("unknown transport %q", transport)
	}
	tb.Cleanup(func() { client.Close(); server.Close() })
	return client, server
}

type outcome struct {
	s   Session
	err error
}

// handshakePair runs Client and Server at once and returns both outcomes.
func handshakePair(tb testing.TB, transport string, cc, sc Config) (client, server outcome) {
	tb.Helper()
	c, s := connPair(tb, transport)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	ch := make(chan outcome, 1)
	go func() {
		ss, err := Server(ctx, s, sc)
		ch <- outcome{ss, err}
	}()
	cs, err := Client(ctx, c, cc)
	client, server = outcome{cs, err}, <-ch
	for _, o := range []outcome{client, server} {
		if o.s != nil {
			tb.Cleanup(func() { o.s.Close() })
		}
	}
	return client, server
}

// mustPair is handshakePair for handshakes that must succeed.
func mustPair(tb testing.TB, transport string, cc, sc Config) (client, server Session) {
	tb.Helper()
	c, s := handshakePair(tb, transport, cc, sc)
	if c.err != nil || s.err != nil {
		tb.Fatalf("handshake failed: client: %v; server: %v", c.err, s.err)
	}
	return c.s, s.s
}

// bufConn is a net.Conn that reads from r and writes to w, for feeding
// hand-made byte streams to a session.
type bufConn struct {
	r io.Reader
	w bytes.Buffer
}

func (c *bufConn) Read(b []byte) (int, error)       { return c.r.Read(b) }
func (c *bufConn) Write(b []byte) (int, error)      { return c.w.Write(b) }
func (c *bufConn) Close() error                     { return nil }
func (c *bufConn) LocalAddr() net.Addr              { return &net.TCPAddr{} }
func (c *bufConn) RemoteAddr() net.Addr             { return &net.TCPAddr{} }
func (c *bufConn) SetDeadline(time.Time) error      { return nil }
func (c *bufConn) SetReadDeadline(time.Time) error  { return nil }
func (c *bufConn) SetWriteDeadline(time.Time) error { return nil }

var _ net.Conn = (*bufConn)(nil)

// fixedKeys is a key schedule for direct session tests.
func fixedKeys() sessionKeys {
	var th [32]byte
	dh := bytes.Repeat([]byte{7}, 32)
	return deriveKeys(&PSK{1, 2, 3}, dh, th)
}

// sessionOn builds a session directly on conn, sealed when sealed is set.
func sessionOn(conn net.Conn, sealed, isClient bool, cfg Config) *session {
	if err := validateConfig(&cfg); err != nil {
		panic(err)
	}
	s := newSession(conn, Result{Remote: testPeer(9)}, cfg, isClient)
	if sealed {
		s.setKeys(fixedKeys())
	}
	return s
}

// splitFrames cuts a byte stream written by a session into frames.
func splitFrames(tb testing.TB, b []byte) [][]byte {
	tb.Helper()
	var out [][]byte
	for len(b) > 0 {
		if len(b) < headerLen {
			tb.Fatalf("trailing %d bytes", len(b))
		}
		n := headerLen + (int(b[1])<<16 | int(b[2])<<8 | int(b[3]))
		out = append(out, b[:n:n])
		b = b[n:]
	}
	return out
}
