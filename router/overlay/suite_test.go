package overlay

import (
	"crypto/rand"
	"errors"
	"net/netip"
	"testing"
	"time"

	"github.com/weavelab/weave/mesh"
	"github.com/weavelab/weave/mesh/handshake"
	"github.com/weavelab/weave/mesh/identity"
	"github.com/weavelab/weave/router/overlay/encap"
)

// TestAddConnectionSuite: keys need a suite the data plane knows, and a
// suite needs keys; anything else is refused by AddConnection (never a
// connection sealing with some other cipher, or plain), and a refused
// connection leaves nothing behind.
func TestAddConnectionSuite(t *testing.T) {
	h := newHost(t, 120, func(c *Config) { c.HeartbeatInterval = time.Hour })
	keys, _ := randomKeys(t)
	for _, tc := range []struct {
		name  string
		keys  *handshake.DataKeys
		suite handshake.Suite
		want  error // nil: any error
	}{
		{"keys without suite", &keys, 0, encap.ErrSuite},
		{"keys with unknown suite", &keys, 9, encap.ErrSuite},
		{"suite without keys", nil, handshake.SuiteChaCha, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sent := 0
			oc, err := h.ov.AddConnection(mesh.OverlayConnParams{
				Remote: identity.Peer{Name: 0x0c0000000100}, RemoteUDP: netip.MustParseAddrPort("127.0.0.1:9"),
				Keys: tc.keys, Suite: tc.suite, Events: newEvents(),
				SendControl: func([]byte) error { sent++; return nil },
			})
			if err == nil {
				oc.Stop()
				t.Fatal("connection accepted")
			}
			if tc.want != nil && !errors.Is(err, tc.want) {
				t.Fatalf("error %v, want %v", err, tc.want)
			}
			if n := len(h.ov.conns.all()); n != 0 || h.ov.stats.len() != 0 || sent != 0 {
				t.Fatalf("refused connection left %d connections, %d stats entries, sent %d hellos", n, h.ov.stats.len(), sent)
			}
		})
	}
	for _, suite := range withPlain {
		var k *handshake.DataKeys
		if suite != 0 {
			k = &keys
		}
		want := ""
		if suite != 0 {
			want = suite.String()
		}
		c := addSinkConnSuite(t, h, 0x0c0000000101, suite, k)
		if c.cipher() != want {
			t.Errorf("%s: connection cipher %q, want %q", suiteName(suite), c.cipher(), want)
		}
		c.Stop()
	}
}

// addSinkConnSuite is addSinkConn with a cipher suite.
func addSinkConnSuite(t testing.TB, h *host, remote P, suite handshake.Suite, keys *handshake.DataKeys) *conn {
	t.Helper()
	oc, err := h.ov.AddConnection(mesh.OverlayConnParams{
		Remote: identity.Peer{Name: remote}, RemoteUDP: netip.MustParseAddrPort("127.0.0.1:9"),
		Keys: keys, Suite: suite, SendControl: func([]byte) error { return nil }, Events: newEvents(),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(oc.Stop)
	return oc.(*conn)
}

// TestOtherSuiteCountsAsAuthDrop: on a connection of one suite, a datagram
// sealed with the other suite under the right key (epoch, index, sender
// and counter all valid) fails authentication: dropped, counted as auth,
// nothing delivered; the same datagram sealed with the connection's suite
// then arrives.
func TestOtherSuiteCountsAsAuthDrop(t *testing.T) {
	for k, suite := range suites {
		other := suites[(k+1)%len(suites)]
		t.Run(suite.String()+"-conn-gets-"+other.String(), func(t *testing.T) {
			a, b := newHost(t, 122+2*k, nil), newHost(t, 123+2*k, nil)
			a.routes.unicast[b.name] = b.name
			b.routes.unicast[a.name] = a.name
			connect(t, a, b, suite)
			waitEstablished(t, a, b)
			bc := b.ov.peerConn(a.name)
			// The test needs the key: give b's connection a receive epoch
			// whose key it holds (as the mesh's key exchange would), and
			// seal at that epoch with both suites, counter 0 each.
			var key [32]byte
			rand.Read(key[:])
			bc.Rekey(handshake.DataKeyUpdate{Epoch: 1, Recv: &key})
			sealer := func(s handshake.Suite) *encap.Sealer {
				t.Helper()
				sl, err := encap.NewSealer(s, [32]byte{})
				if err != nil {
					t.Fatal(err)
				}
				if err := sl.Install(1, key); err != nil {
					t.Fatal(err)
				}
				return sl
			}
			datagram := func(sl *encap.Sealer, tag uint32) []byte {
				t.Helper()
				var bl encap.Builder
				buf := make([]byte, 512)
				bl.Reset(buf[:512-encap.TagLen], encap.Header{Receiver: bc.localIndex, Sender: a.name}, 400)
				bl.Add(encap.FrameHeader{Src: a.name, Dst: b.name, HopLimit: 2}, ethFrame(mac(123+2*k, 1), mac(122+2*k, 1), tag, 60))
				d, err := sl.Seal(bl.Bytes())
				if err != nil {
					t.Fatal(err)
				}
				return d
			}
			ep := newEndpoint(t, [4]byte{127, 0, 0, 96})
			ep.send(t, datagram(sealer(other), 1), b.ov.LocalAddr())
			waitFor(t, func() bool { return b.ov.Stats().Drops["auth"] == 1 })
			b.expectNone(t)
			if bc.opener.Epoch() != 0 {
				t.Fatalf("a datagram of the other suite moved the receive epoch to %d", bc.opener.Epoch())
			}
			ep.send(t, datagram(sealer(suite), 2), b.ov.LocalAddr())
			b.expect(t, 2)
			if d := b.ov.Stats().Drops; len(d) != 1 || d["auth"] != 1 {
				t.Fatalf("drops %v, want auth 1 only", d)
			}
		})
	}
}
