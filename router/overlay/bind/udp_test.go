package bind_test

import (
	"bytes"
	"errors"
	"net"
	"net/netip"
	"testing"

	"github.com/weavelab/weave/router/overlay/bind"
	"github.com/weavelab/weave/router/overlay/bind/bindtest"
)

// pair returns two connected binds: real UDP sockets on loopback, or fakes.
func pair(t *testing.T, real bool) (a, b bind.Bind) {
	t.Helper()
	var err error
	if real {
		if a, err = bind.Listen(netip.MustParseAddrPort("127.0.0.1:0"), bind.Options{SocketBuffer: 4 << 20}); err != nil {
			t.Fatal(err)
		}
		if b, err = bind.Listen(netip.MustParseAddrPort("127.0.0.1:0"), bind.Options{SocketBuffer: 4 << 20}); err != nil {
			t.Fatal(err)
		}
	} else {
		n := bindtest.NewNet()
		if a, err = n.Listen(netip.MustParseAddrPort("10.0.0.1:0")); err != nil {
			t.Fatal(err)
		}
		if b, err = n.Listen(netip.MustParseAddrPort("10.0.0.2:0")); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() { a.Close(); b.Close() })
	return a, b
}

// TestBatches sends a batch with a single datagram and, where the bind has
// GSO, an offloaded run of unequal last size; the receiver gets every
// datagram, in order, from the sender's address (a run in one buffer with
// its segment size where it has GRO). Closing unblocks a read with
// net.ErrClosed. Over the kernel and over the fake.
func TestBatches(t *testing.T) {
	for _, real := range []bool{false, true} {
		name := map[bool]string{false: "fake", true: "udp"}[real]
		t.Run(name, func(t *testing.T) {
			a, b := pair(t, real)
			single := bytes.Repeat([]byte{1}, 100)
			want := [][]byte{single}
			msgs := []bind.Message{{Buffers: [][]byte{single}, Addr: b.LocalAddr()}}
			if a.Caps().GSO {
				run := [][]byte{bytes.Repeat([]byte{2}, 1000), bytes.Repeat([]byte{3}, 1000), bytes.Repeat([]byte{4}, 300)}
				msgs = append(msgs, bind.Message{Buffers: run, Addr: b.LocalAddr()})
				want = append(want, run...)
			} else if real {
				t.Log("no UDP_SEGMENT on this kernel")
			}
			if n, err := a.WriteBatch(msgs); n != len(msgs) || err != nil {
				t.Fatalf("WriteBatch: %d of %d, %v", n, len(msgs), err)
			}
			rd := make([]bind.Message, 8)
			for i := range rd {
				rd[i].Buffers = [][]byte{make([]byte, 65536)}
			}
			var got [][]byte
			runs := 0
			for len(got) < len(want) {
				n, err := b.ReadBatch(rd)
				if err != nil {
					t.Fatal(err)
				}
				for _, m := range rd[:n] {
					if m.Addr != a.LocalAddr() {
						t.Fatalf("source %s, want %s", m.Addr, a.LocalAddr())
					}
					d, seg := m.Buffers[0][:m.N], m.Segment
					if seg == 0 {
						seg = len(d)
					} else {
						runs++
					}
					for off := 0; off < len(d); off += seg {
						got = append(got, d[off:min(off+seg, len(d))])
					}
				}
			}
			for i := range want {
				if !bytes.Equal(got[i], want[i]) {
					t.Fatalf("datagram %d: %d bytes of %d, want %d of %d", i, len(got[i]), got[i][0], len(want[i]), want[i][0])
				}
			}
			if a.Caps().GSO && b.Caps().GRO && runs == 0 {
				t.Error("the offloaded run was not received as one buffer with GRO")
			}
			done := make(chan error, 1)
			go func() { _, err := b.ReadBatch(rd); done <- err }()
			b.Close()
			if err := <-done; !errors.Is(err, net.ErrClosed) {
				t.Fatalf("read after close: %v, want net.ErrClosed", err)
			}
		})
	}
}

// TestFakeRefusesGSO: a refused run is reported with ErrGSORefused and
// nothing of it is delivered.
func TestFakeRefusesGSO(t *testing.T) {
	n := bindtest.NewNet()
	a, _ := n.Listen(netip.MustParseAddrPort("10.0.0.1:1"))
	b, _ := n.Listen(netip.MustParseAddrPort("10.0.0.2:1"))
	defer a.Close()
	defer b.Close()
	a.RefuseGSO(true)
	sent, err := a.WriteBatch([]bind.Message{
		{Buffers: [][]byte{{1}}, Addr: b.LocalAddr()},
		{Buffers: [][]byte{{2, 2}, {3}}, Addr: b.LocalAddr()},
	})
	if sent != 1 || !errors.Is(err, bind.ErrGSORefused) {
		t.Fatalf("sent %d, err %v; want 1 and ErrGSORefused", sent, err)
	}
}
