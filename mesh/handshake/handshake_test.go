package handshake

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
	"time"
)

func TestHandshakeRoundTrip(t *testing.T) {
	for _, transport := range transports {
		for _, password := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/password=%v", transport, password), func(t *testing.T) {
				var psk *PSK
				if password {
					psk = pskSecret()
				}
				cs, ss := mustPair(t, transport, testConfig(1, psk), testConfig(2, psk))
				cr, sr := cs.Result(), ss.Result()
				if cr.Remote != testPeer(2) || sr.Remote != testPeer(1) {
					t.Fatalf("remotes: client saw %v, server saw %v", cr.Remote, sr.Remote)
				}
				if cr.RemoteUDPPort != 6782 || sr.RemoteUDPPort != 6781 {
					t.Fatalf("udp ports: client saw %d, server saw %d", cr.RemoteUDPPort, sr.RemoteUDPPort)
				}
				if cr.ConnID != sr.ConnID || cr.ConnID == 0 {
					t.Fatalf("conn ids differ or zero: %x %x", cr.ConnID, sr.ConnID)
				}
				if cr.Version != MaxVersion || sr.Version != MaxVersion {
					t.Fatalf("versions %d %d, want %d", cr.Version, sr.Version, MaxVersion)
				}
				if !password {
					if cr.DataKeys != nil || sr.DataKeys != nil {
						t.Fatal("data keys without a password")
					}
				} else {
					c, s := cr.DataKeys, sr.DataKeys
					if c == nil || s == nil || c.Send != s.Recv || c.Recv != s.Send || c.Send == c.Recv {
						t.Fatalf("data keys do not pair up: %+v %+v", c, s)
					}
				}
				msgs := [][]byte{[]byte("hello"), {}, bytes.Repeat([]byte{0xab}, 1<<20), []byte("bye")}
				roundTrip(t, cs, ss, msgs)
				roundTrip(t, ss, cs, msgs)
			})
		}
	}
}

// roundTrip sends msgs from a to b (concurrently with the reads, for
// net.Pipe) and checks that b receives them in order.
func roundTrip(tb testing.TB, a, b Session, msgs [][]byte) {
	tb.Helper()
	errc := make(chan error, 1)
	go func() {
		for _, m := range msgs {
			if err := a.Send(m); err != nil {
				errc <- err
				return
			}
		}
		errc <- nil
	}()
	for i, want := range msgs {
		got, err := b.Recv()
		if err != nil {
			tb.Fatalf("recv %d: %v (send: %v)", i, err, <-errc)
		}
		if !bytes.Equal(got, want) {
			tb.Fatalf("message %d: got %d bytes, want %d", i, len(got), len(want))
		}
	}
	if err := <-errc; err != nil {
		tb.Fatal(err)
	}
}

func TestHandshakeFailures(t *testing.T) {
	for _, tc := range []struct {
		name       string
		cpsk, spsk func() *PSK
		want       error
		cmsg, smsg string // substrings of the client's and server's errors
	}{
		{"wrong password", pskSecret, pskOther, ErrWrongPassword,
			"peer " + testPeer(2).String() + ": authentication failed: the password or the network salt differs",
			"peer " + testPeer(1).String() + ": authentication failed: the password or the network salt differs"},
		{"client only", pskSecret, nil, ErrPasswordMismatch,
			"we have a password and the peer has none", "the peer has a password and we have none"},
		{"server only", nil, pskSecret, ErrPasswordMismatch,
			"the peer has a password and we have none", "we have a password and the peer has none"},
	} {
		for _, transport := range transports {
			t.Run(tc.name+"/"+transport, func(t *testing.T) {
				get := func(f func() *PSK) *PSK {
					if f == nil {
						return nil
					}
					return f()
				}
				c, s := handshakePair(t, transport, testConfig(1, get(tc.cpsk)), testConfig(2, get(tc.spsk)))
				for _, side := range []struct {
					who string
					o   outcome
					msg string
				}{{"client", c, tc.cmsg}, {"server", s, tc.smsg}} {
					if side.o.s != nil || !errors.Is(side.o.err, tc.want) {
						t.Errorf("%s: got %v, want %v", side.who, side.o.err, tc.want)
					} else if !strings.Contains(side.o.err.Error(), side.msg) {
						t.Errorf("%s: error %q does not say %q", side.who, side.o.err, side.msg)
					}
				}
			})
		}
	}
}

// TestVersionMismatch plays a future peer that only speaks versions 5..7
// with a body layout we do not know.
func TestVersionMismatch(t *testing.T) {
	for _, transport := range transports {
		t.Run(transport, func(t *testing.T) {
			c, s := connPair(t, transport)
			future := append(helloMagic[:], 5, 7, 0, 3, 'x', 'y', 'z')
			errc := make(chan error, 1)
			go func() {
				_, err := Client(context.Background(), c, testConfig(1, nil))
				errc <- err
			}()
			got, _, err := readHello(s)
			if err != nil {
				t.Fatal(err)
			}
			if got.MinVersion != MinVersion || got.MaxVersion != MaxVersion || got.Peer != testPeer(1) {
				t.Fatalf("our hello decoded as %+v", got)
			}
			if _, err := s.Write(future); err != nil {
				t.Fatal(err)
			}
			err = <-errc
			if !errors.Is(err, ErrVersion) || !strings.Contains(err.Error(), fmt.Sprintf("we speak %d..%d, the peer 5..7", MinVersion, MaxVersion)) {
				t.Fatalf("got %v, want ErrVersion naming both ranges", err)
			}
		})
	}
}

func TestNegotiate(t *testing.T) {
	for _, tc := range []struct {
		a, b, c, d uint8
		want       uint8
		ok         bool
	}{
		{1, 1, 1, 1, 1, true},
		{1, 3, 2, 5, 3, true},
		{2, 5, 1, 3, 3, true},
		{1, 2, 3, 4, 0, false},
		{3, 4, 1, 2, 0, false},
	} {
		got, err := negotiate(tc.a, tc.b, tc.c, tc.d)
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("negotiate(%d..%d, %d..%d) = %d, %v; want %d ok=%v", tc.a, tc.b, tc.c, tc.d, got, err, tc.want, tc.ok)
		}
		if err != nil && !errors.Is(err, ErrVersion) {
			t.Errorf("error %v is not ErrVersion", err)
		}
	}
}

func TestNotAWeavePeer(t *testing.T) {
	c, s := connPair(t, "tcp")
	go func() {
		s.Write([]byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"))
		io.Copy(io.Discard, s)
	}()
	_, err := Client(context.Background(), c, testConfig(1, pskSecret()))
	if !errors.Is(err, ErrProtocol) || !strings.Contains(err.Error(), "bad magic") {
		t.Fatalf("got %v, want ErrProtocol about the magic", err)
	}
}

func TestHandshakeTimeoutAndCancel(t *testing.T) {
	for _, tc := range []struct {
		name string
		ctx  func() (context.Context, context.CancelFunc)
		want error
	}{
		{"deadline", func() (context.Context, context.CancelFunc) {
			return context.WithTimeout(context.Background(), 20*time.Millisecond)
		}, context.DeadlineExceeded},
		{"cancelled", func() (context.Context, context.CancelFunc) {
			ctx, cancel := context.WithCancel(context.Background())
			cancel()
			return ctx, cancel
		}, context.Canceled},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, _ := connPair(t, "pipe") // the other end never speaks
			ctx, cancel := tc.ctx()
			defer cancel()
			_, err := Server(ctx, c, testConfig(1, nil))
			if !errors.Is(err, tc.want) {
				t.Fatalf("got %v, want %v", err, tc.want)
			}
			var ne net.Error
			if !errors.As(err, &ne) || !ne.Timeout() {
				t.Fatalf("error %v does not carry the i/o timeout", err)
			}
		})
	}
}

func TestConfigValidation(t *testing.T) {
	for _, tc := range []struct {
		name string
		mod  func(*Config)
	}{
		{"no name", func(c *Config) { c.Local.Name = 0 }},
		{"no uid", func(c *Config) { c.Local.UID = 0 }},
		{"long nickname", func(c *Config) { c.Local.NickName = strings.Repeat("n", 65) }},
		{"bad utf8", func(c *Config) { c.Local.NickName = "\xff" }},
		{"bad port", func(c *Config) { c.UDPPort = 70000 }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, _ := connPair(t, "pipe")
			cfg := testConfig(1, nil)
			tc.mod(&cfg)
			if _, err := Client(context.Background(), c, cfg); err == nil {
				t.Fatal("accepted a bad config")
			}
		})
	}
}

func TestCloseUnblocksRecv(t *testing.T) {
	cs, ss := mustPair(t, "tcp", testConfig(1, pskSecret()), testConfig(2, pskSecret()))
	errc := make(chan error, 1)
	go func() {
		_, err := ss.Recv()
		errc <- err
	}()
	if err := cs.Close(); err != nil {
		t.Fatal(err)
	}
	if err := <-errc; !errors.Is(err, io.EOF) {
		t.Fatalf("server Recv after client Close: %v, want EOF", err)
	}
	if err := cs.Send([]byte("x")); err == nil {
		t.Fatal("Send after Close succeeded")
	}
	if err := cs.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}

func TestConnIDFreshPerConnection(t *testing.T) {
	seen := map[uint64]bool{}
	for range 20 {
		cs, _ := mustPair(t, "pipe", testConfig(1, nil), testConfig(2, nil))
		id := cs.Result().ConnID
		if seen[id] {
			t.Fatalf("conn id %x repeated", id)
		}
		seen[id] = true
	}
}
