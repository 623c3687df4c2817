package replicate

import (
	"errors"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/weavelab/weave/mesh/identity"
)

// recorder is a Sender that keeps what it is given.
type recorder struct {
	mu     sync.Mutex
	frames []frame
}

func (r *recorder) Unicast(_ identity.PeerName, msg []byte) error {
	f, err := decodeFrame(msg)
	if err != nil {
		return err
	}
	f.payload = append([]byte(nil), f.payload...)
	r.mu.Lock()
	r.frames = append(r.frames, f)
	r.mu.Unlock()
	return nil
}

// waitKind waits for a frame of the given kind and returns it.
func (r *recorder) waitKind(tb testing.TB, kind byte) frame {
	tb.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		r.mu.Lock()
		for _, f := range r.frames {
			if f.kind == kind {
				r.mu.Unlock()
				return f
			}
		}
		r.mu.Unlock()
		time.Sleep(time.Millisecond)
	}
	tb.Fatalf("no %s frame sent", kindName(kind))
	return frame{}
}

// last returns the last frame of the given kind sent (zero if none).
func (r *recorder) last(kind byte) frame {
	r.mu.Lock()
	defer r.mu.Unlock()
	for i := len(r.frames) - 1; i >= 0; i-- {
		if r.frames[i].kind == kind {
			return r.frames[i]
		}
	}
	return frame{}
}

const remote = identity.PeerName(0x020000000002)

// acceptedStream returns a Transport fed by hand and the stream a SYN from
// remote opened on it.
func acceptedStream(tb testing.TB, tweak func(*TransportConfig)) (*Transport, *recorder, net.Conn) {
	tb.Helper()
	rec := new(recorder)
	cfg := DefaultTransportConfig()
	cfg.Self, cfg.Sender = 0x020000000001, rec
	cfg.Segment, cfg.Window, cfg.ReorderWindow = 4, 16, 4
	cfg.ReorderTimeout, cfg.KeepaliveInterval, cfg.IdleTimeout = 100*time.Millisecond, 50*time.Millisecond, time.Second
	if tweak != nil {
		tweak(&cfg)
	}
	tr, err := NewTransport(cfg)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = tr.Shutdown() })
	deliver(tb, tr, frame{kind: kindSYN, stream: 9, seqLimit: 4, byteLimit: 16})
	select {
	case c := <-tr.StreamCh():
		tb.Cleanup(func() { _ = c.Close() })
		rec.waitKind(tb, kindAccept)
		return tr, rec, c
	case <-time.After(5 * time.Second):
		tb.Fatal("SYN opened no stream")
	}
	return nil, nil, nil
}

func deliver(tb testing.TB, tr *Transport, f frame) {
	tb.Helper()
	if err := tr.Deliver(remote, f.encode()); err != nil {
		tb.Fatalf("deliver %s: %v", kindName(f.kind), err)
	}
}

func data(seq uint32, s string) frame {
	return frame{kind: kindData, stream: 9, seq: seq, payload: []byte(s)}
}

func TestStreamReassemblesOutOfOrder(t *testing.T) {
	tr, _, c := acceptedStream(t, nil)
	deliver(t, tr, data(2, "cc"))
	deliver(t, tr, frame{kind: kindFIN, stream: 9, seq: 3})
	deliver(t, tr, data(1, "bb"))
	deliver(t, tr, data(1, "XX")) // a duplicate of a held frame is ignored
	deliver(t, tr, data(0, "aa"))
	deliver(t, tr, data(0, "YY")) // a duplicate of a delivered frame too
	got, err := io.ReadAll(c)
	if err != nil || string(got) != "aabbcc" {
		t.Fatalf("read %q, %v; want aabbcc, nil", got, err)
	}
}

func TestStreamResetsOnViolations(t *testing.T) {
	for _, tc := range []struct {
		name   string
		frames []frame
	}{
		{"seq beyond the window", []frame{data(4, "x")}},
		{"more bytes than granted", []frame{data(0, "1234"), data(1, "1234"), data(2, "1234"), data(3, "12345")}},
		{"held bytes beyond the grant", []frame{data(3, "12345678"), data(2, "123456789")}},
		{"data after FIN", []frame{{kind: kindFIN, stream: 9, seq: 0}, data(1, "x")}},
		{"frames held past FIN", []frame{data(2, "x"), {kind: kindFIN, stream: 9, seq: 0}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tr, rec, c := acceptedStream(t, nil)
			for _, f := range tc.frames {
				deliver(t, tr, f)
			}
			rst := rec.waitKind(t, kindReset)
			if rst.reason != resetProtocol || !rst.fromAcceptor || rst.stream != 9 {
				t.Fatalf("sent %+v, want a protocol RESET for stream 9", rst)
			}
			for {
				if _, err := c.Read(make([]byte, 64)); err != nil {
					if !errors.Is(err, ErrProtocol) && !errors.Is(err, io.EOF) {
						t.Fatalf("read error %v, want ErrProtocol", err)
					}
					break
				}
			}
		})
	}
}

func TestStreamGivesUpOnMissingFrame(t *testing.T) {
	tr, rec, c := acceptedStream(t, nil)
	deliver(t, tr, data(1, "b")) // seq 0 never comes
	start := time.Now()
	_, err := c.Read(make([]byte, 8))
	if !errors.Is(err, ErrFramesLost) {
		t.Fatalf("read error %v, want ErrFramesLost", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("gave up after %v, want about ReorderTimeout", d)
	}
	if rst := rec.waitKind(t, kindReset); rst.reason != resetLost {
		t.Fatalf("sent %+v, want RESET for lost frames", rst)
	}
}

func TestStreamGrantsCreditAsItReads(t *testing.T) {
	tr, rec, c := acceptedStream(t, nil)
	for i, s := range []string{"1234", "5678", "9abc", "defg"} {
		deliver(t, tr, data(uint32(i), s))
	}
	// Two frames in, the reassembly freed half the reorder window.
	if w := rec.waitKind(t, kindWindow); w.seqLimit != 6 || w.byteLimit != 16 {
		t.Fatalf("window %d/%d, want seq 6 and bytes 16 (nothing read yet)", w.seqLimit, w.byteLimit)
	}
	buf := make([]byte, 16)
	if _, err := io.ReadFull(c, buf); err != nil {
		t.Fatal(err)
	}
	if w := rec.last(kindWindow); w.seqLimit != 8 || w.byteLimit != 32 {
		t.Fatalf("window %d/%d after reading 16 bytes, want 8/32", w.seqLimit, w.byteLimit)
	}
	deliver(t, tr, data(4, "hijk")) // within the new grant
	if _, err := io.ReadFull(c, buf[:4]); err != nil || string(buf[:4]) != "hijk" {
		t.Fatalf("read %q, %v", buf[:4], err)
	}
}

func TestStreamWritesWithinCredit(t *testing.T) {
	tr, rec, c := acceptedStream(t, nil) // the SYN granted 4 frames, 16 bytes
	done := make(chan error, 1)
	go func() {
		_, err := c.Write([]byte("0123456789abcdefXYZ"))
		done <- err
	}()
	time.Sleep(20 * time.Millisecond)
	select {
	case err := <-done:
		t.Fatalf("write of 19 bytes returned (%v) with 16 granted", err)
	default:
	}
	deliver(t, tr, frame{kind: kindWindow, stream: 9, seqLimit: 8, byteLimit: 32})
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	rec.mu.Lock()
	defer rec.mu.Unlock()
	var got []byte
	for _, f := range rec.frames {
		if f.kind == kindData {
			if len(f.payload) > 4 {
				t.Fatalf("segment of %d bytes, want at most 4", len(f.payload))
			}
			got = append(got, f.payload...)
		}
	}
	if string(got) != "0123456789abcdefXYZ" {
		t.Fatalf("sent %q", got)
	}
}

func TestStreamReplyToUnknownStream(t *testing.T) {
	tr, rec, _ := acceptedStream(t, nil)
	deliver(t, tr, frame{kind: kindData, stream: 10, seq: 0, payload: []byte("x")})
	if rst := rec.waitKind(t, kindReset); rst.stream != 10 || rst.reason != resetUnknown || !rst.fromAcceptor {
		t.Fatalf("sent %+v, want RESET(no such stream) for 10", rst)
	}
}
