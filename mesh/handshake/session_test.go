package handshake

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"
)

// recordFrames has a sealed (or plain) client session send msgs and returns
// the frames it wrote.
func recordFrames(tb testing.TB, sealed bool, cfg Config, msgs ...string) [][]byte {
	tb.Helper()
	conn := &bufConn{}
	s := sessionOn(conn, sealed, true, cfg)
	for _, m := range msgs {
		if err := s.Send([]byte(m)); err != nil {
			tb.Fatal(err)
		}
	}
	return splitFrames(tb, conn.w.Bytes())
}

// receive feeds frames to a server session and returns what it got until
// the first error.
func receive(sealed bool, cfg Config, frames ...[]byte) ([]string, error) {
	conn := &bufConn{r: bytes.NewReader(bytes.Join(frames, nil))}
	s := sessionOn(conn, sealed, false, cfg)
	var got []string
	for {
		m, err := s.Recv()
		if err != nil {
			return got, err
		}
		got = append(got, string(m))
	}
}

func TestStreamAttacks(t *testing.T) {
	cfg := testConfig(1, nil)
	flip := func(f []byte, i int) []byte {
		f = slices.Clone(f)
		f[i] ^= 1
		return f
	}
	for _, tc := range []struct {
		name   string
		sealed bool
		edit   func(f [][]byte) [][]byte
		want   []string // received before the error
		err    error    // nil: clean EOF after want
	}{
		{"intact", true, func(f [][]byte) [][]byte { return f }, []string{"a", "b", "c"}, nil},
		{"tampered ciphertext", true, func(f [][]byte) [][]byte { f[1] = flip(f[1], headerLen); return f }, []string{"a"}, ErrProtocol},
		{"tampered tag", true, func(f [][]byte) [][]byte { f[1] = flip(f[1], len(f[1])-1); return f }, []string{"a"}, ErrProtocol},
		{"tampered rekey flag", true, func(f [][]byte) [][]byte { f[1] = flip(f[1], 0); return f }, []string{"a"}, ErrProtocol},
		{"tampered length", true, func(f [][]byte) [][]byte { f[0] = flip(f[0], 3); return f }, nil, ErrProtocol},
		{"replayed", true, func(f [][]byte) [][]byte { return [][]byte{f[0], f[1], f[1], f[2]} }, []string{"a", "b"}, ErrProtocol},
		{"reordered", true, func(f [][]byte) [][]byte { return [][]byte{f[0], f[2], f[1]} }, []string{"a"}, ErrProtocol},
		{"dropped", true, func(f [][]byte) [][]byte { return [][]byte{f[0], f[2]} }, []string{"a"}, ErrProtocol},
		{"counter rewritten", true, func(f [][]byte) [][]byte {
			f[2] = slices.Clone(f[2])
			binary.BigEndian.PutUint64(f[2][4:], 1)
			return [][]byte{f[0], f[2]}
		}, []string{"a"}, ErrProtocol},
		{"plain replayed", false, func(f [][]byte) [][]byte { return [][]byte{f[0], f[0]} }, []string{"a"}, ErrProtocol},
		{"plain with flags", false, func(f [][]byte) [][]byte { f[0] = flip(f[0], 0); return f }, nil, ErrProtocol},
	} {
		t.Run(tc.name, func(t *testing.T) {
			frames := tc.edit(recordFrames(t, tc.sealed, cfg, "a", "b", "c"))
			got, err := receive(tc.sealed, cfg, frames...)
			if !slices.Equal(got, tc.want) {
				t.Errorf("received %q, want %q", got, tc.want)
			}
			if tc.err == nil {
				if err == nil || !bytes.Contains([]byte(err.Error()), []byte("EOF")) {
					t.Errorf("got %v, want clean EOF", err)
				}
			} else if !errors.Is(err, tc.err) {
				t.Errorf("got %v, want %v", err, tc.err)
			}
		})
	}
}

func TestErrorIsSticky(t *testing.T) {
	cfg := testConfig(1, nil)
	f := recordFrames(t, true, cfg, "a", "b")
	conn := &bufConn{r: bytes.NewReader(bytes.Join([][]byte{f[1], f[0], f[1]}, nil))}
	s := sessionOn(conn, true, false, cfg)
	_, err1 := s.Recv()
	_, err2 := s.Recv()
	if err1 == nil || err1 != err2 {
		t.Fatalf("errors %v then %v, want the same error twice", err1, err2)
	}
}

func TestOversize(t *testing.T) {
	for _, sealed := range []bool{false, true} {
		t.Run(fmt.Sprintf("sealed=%v", sealed), func(t *testing.T) {
			cfg := testConfig(1, nil)
			s := sessionOn(&bufConn{}, sealed, true, cfg)
			if err := s.Send(make([]byte, MaxMessageSize+1)); !errors.Is(err, ErrTooLarge) {
				t.Fatalf("Send of MaxMessageSize+1: %v, want ErrTooLarge", err)
			}
			// The session is still usable after a refused Send.
			f := recordFrames(t, sealed, cfg, "x")
			h := slices.Clone(f[0][:headerLen])
			n := MaxMessageSize + 1
			if sealed {
				n += tagLen
			}
			h[1], h[2], h[3] = byte(n>>16), byte(n>>8), byte(n)
			if _, err := receive(sealed, cfg, h); !errors.Is(err, ErrTooLarge) {
				t.Fatalf("Recv of an oversize header: %v, want ErrTooLarge", err)
			}
		})
	}
	t.Run("max size round trip", func(t *testing.T) {
		cs, ss := mustPair(t, "tcp", testConfig(1, pskSecret()), testConfig(2, pskSecret()))
		roundTrip(t, cs, ss, [][]byte{bytes.Repeat([]byte{1}, MaxMessageSize)})
	})
}

func TestRekeyByMessages(t *testing.T) {
	for _, transport := range transports {
		t.Run(transport, func(t *testing.T) {
			cc, sc := testConfig(1, pskSecret()), testConfig(2, pskSecret())
			cc.RekeyMessages, sc.RekeyMessages = 7, 3
			cs, ss := mustPair(t, transport, cc, sc)
			k0c, k0s := cs.(*session).send.key, ss.(*session).send.key
			var msgs [][]byte
			for i := range 1000 {
				msgs = append(msgs, fmt.Appendf(nil, "message %d", i))
			}
			roundTrip(t, cs, ss, msgs)
			roundTrip(t, ss, cs, msgs)
			// 1000 messages with a rekey every 7 (3) means 142 (333) ratchets.
			want := func(k [32]byte, n int) [32]byte {
				for range n {
					k = Ratchet(k)
				}
				return k
			}
			if got := cs.(*session).send.key; got != want(k0c, 142) {
				t.Errorf("client send key is not 142 ratchets on")
			}
			if got := ss.(*session).send.key; got != want(k0s, 333) {
				t.Errorf("server send key is not 333 ratchets on")
			}
			if cs.(*session).send.key != ss.(*session).recv.key || ss.(*session).send.key != cs.(*session).recv.key {
				t.Error("keys of the two ends do not match after rekeying")
			}
		})
	}
}

func TestRekeyByTime(t *testing.T) {
	now := time.Unix(1000, 0)
	cfg := testConfig(1, nil)
	cfg.RekeyInterval = time.Minute
	cfg.Now = func() time.Time { return now }
	conn := &bufConn{}
	s := sessionOn(conn, true, true, cfg)
	send := func(m string) {
		if err := s.Send([]byte(m)); err != nil {
			t.Fatal(err)
		}
	}
	send("a")
	now = now.Add(59 * time.Second)
	send("b")
	now = now.Add(time.Second)
	send("c") // a minute since the key was set: rekey
	send("d")
	now = now.Add(2 * time.Minute)
	send("e")
	frames := splitFrames(t, conn.w.Bytes())
	var flags []byte
	for _, f := range frames {
		flags = append(flags, f[0])
	}
	if want := []byte{0, 0, flagRekey, 0, flagRekey}; !bytes.Equal(flags, want) {
		t.Fatalf("rekey flags %v, want %v", flags, want)
	}
	got, err := receive(true, cfg, frames...)
	if !slices.Equal(got, []string{"a", "b", "c", "d", "e"}) {
		t.Fatalf("received %q, err %v", got, err)
	}
}

func TestConcurrentSend(t *testing.T) {
	const senders, each = 8, 300
	cs, ss := mustPair(t, "tcp", testConfig(1, pskSecret()), testConfig(2, pskSecret()))
	var wg sync.WaitGroup
	errc := make(chan error, senders)
	for g := range senders {
		wg.Go(func() {
			for i := range each {
				msg := binary.BigEndian.AppendUint32([]byte{byte(g)}, uint32(i))
				msg = append(msg, bytes.Repeat([]byte{byte(i)}, i)...)
				if err := cs.Send(msg); err != nil {
					errc <- err
					return
				}
			}
		})
	}
	next := make([]uint32, senders)
	for range senders * each {
		m, err := ss.Recv()
		if err != nil {
			t.Fatal(err)
		}
		g, i := m[0], binary.BigEndian.Uint32(m[1:5])
		if i != next[g] || len(m) != 5+int(i) {
			t.Fatalf("sender %d: got message %d (%d bytes), want %d", g, i, len(m), next[g])
		}
		next[g]++
	}
	wg.Wait()
	close(errc)
	for err := range errc {
		t.Fatal(err)
	}
}
