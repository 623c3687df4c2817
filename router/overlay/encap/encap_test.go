package encap

import (
	"bytes"
	"crypto/cipher"
	"crypto/sha256"
	"errors"
	"testing"
	"time"

	"github.com/weavelab/weave/mesh/clock"
	"github.com/weavelab/weave/mesh/clock/clocktest"
	"github.com/weavelab/weave/mesh/handshake"
	"github.com/weavelab/weave/mesh/identity"
)

// epochKey is the test's key for epoch e (the mesh would hand it over in a
// DataKeyUpdate).
func epochKey(e uint16) [32]byte {
	return sha256.Sum256([]byte{'k', 'e', 'y', byte(e >> 8), byte(e)})
}

func TestHeaderRoundTrip(t *testing.T) {
	for _, h := range []Header{
		{Type: TypeFrames, Epoch: 7, Receiver: 0x01020304, Sender: 0x0a0b0c0d0e0f, Counter: 1<<63 + 5},
		{Type: TypeHeartbeat, Sender: 1},
		{Type: TypeProbeAck, Epoch: 0xffff, Receiver: 0xffffffff, Sender: 0xffffffffffff, Counter: 0},
	} {
		b := make([]byte, HeaderLen)
		h.Put(b)
		got, err := ParseHeader(b)
		if err != nil {
			t.Fatalf("parse %+v: %v", h, err)
		}
		if got != h {
			t.Errorf("round trip: got %+v want %+v", got, h)
		}
	}
}

func TestParseHeaderErrors(t *testing.T) {
	good := make([]byte, HeaderLen)
	(&Header{Type: TypeFrames, Sender: 1}).Put(good)
	cases := []struct {
		name string
		b    []byte
		want error
	}{
		{"short", good[:HeaderLen-1], ErrShort},
		{"version", append([]byte{2}, good[1:]...), ErrVersion},
		{"type zero", append([]byte{1, 0}, good[2:]...), ErrType},
		{"type high", append([]byte{1, 6}, good[2:]...), ErrType},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := ParseHeader(tc.b); !errors.Is(err, tc.want) {
				t.Fatalf("got %v want %v", err, tc.want)
			}
		})
	}
}

func frame(n int, fill byte) []byte {
	f := bytes.Repeat([]byte{fill}, n)
	return f
}

func TestBuilderAndFrames(t *testing.T) {
	var b Builder
	buf := make([]byte, 4096)
	b.Reset(buf, Header{Receiver: 9, Sender: 3}, 250)
	f1, f2, f3 := frame(60, 1), frame(100, 2), frame(60, 3)
	if !b.Add(FrameHeader{Src: 3, Dst: 4, HopLimit: 5}, f1) {
		t.Fatal("first frame refused")
	}
	if !b.Add(FrameHeader{Src: 3, Dst: 0, HopLimit: 5}, f2) {
		t.Fatal("second frame refused")
	}
	// 24 + 76 + 116 = 216; a third record (76) would make 292 > 250
	if b.Add(FrameHeader{Src: 3, Dst: 4}, f3) {
		t.Fatal("frame over the limit accepted")
	}
	d := b.Bytes()
	h, err := ParseHeader(d)
	if err != nil || h.Type != TypeFrames || h.Receiver != 9 || h.Sender != 3 {
		t.Fatalf("header %+v %v", h, err)
	}
	fr := NewFrames(d[HeaderLen:])
	var got [][]byte
	var hdrs []FrameHeader
	for {
		fh, f, ok := fr.Next()
		if !ok {
			break
		}
		got = append(got, f)
		hdrs = append(hdrs, fh)
	}
	if fr.Err() != nil {
		t.Fatal(fr.Err())
	}
	if len(got) != 2 || !bytes.Equal(got[0], f1) || !bytes.Equal(got[1], f2) {
		t.Fatalf("frames: %d", len(got))
	}
	if hdrs[0].Dst != 4 || hdrs[1].Dst != 0 || hdrs[0].HopLimit != 5 || hdrs[0].Len != 60 {
		t.Fatalf("frame headers %+v", hdrs)
	}
	// An empty datagram takes a frame over the limit (it travels alone).
	b.Reset(buf, Header{Sender: 3}, 200)
	if !b.Add(FrameHeader{Src: 3}, frame(1000, 7)) {
		t.Fatal("oversized frame refused by an empty datagram")
	}
	// ...but never more than the buffer.
	b.Reset(buf[:100], Header{Sender: 3}, 200)
	if b.Add(FrameHeader{Src: 3}, frame(1000, 7)) {
		t.Fatal("frame larger than the buffer accepted")
	}
}

// TestPutSingle: a datagram made around a frame in place is the one a
// Builder makes holding only that frame.
func TestPutSingle(t *testing.T) {
	f := frame(1390, 9)
	h := Header{Receiver: 7, Sender: 3}
	fh := FrameHeader{Src: 3, Dst: 4, HopLimit: 6}
	var b Builder
	b.Reset(make([]byte, 2048), h, 1500)
	if !b.Add(fh, f) {
		t.Fatal("frame refused")
	}
	buf := make([]byte, 2048)
	copy(buf[SingleOffset:], f)
	for i := range SingleOffset {
		buf[i] = 0xee // whatever was there before
	}
	if d := PutSingle(buf, h, fh, len(f)); !bytes.Equal(d, b.Bytes()) {
		t.Fatal("PutSingle differs from a Builder with one frame")
	}
}
func TestFramesMalformed(t *testing.T) {
	rec := make([]byte, FrameHeaderLen+20)
	PutFrameHeader(rec, FrameHeader{Src: 1, Len: 20})
	for _, tc := range []struct {
		name string
		p    []byte
	}{
		{"trailing", append(append([]byte{}, rec...), 1, 2, 3)},
		{"truncated", rec[:FrameHeaderLen+10]},
		{"runt", func() []byte {
			r := make([]byte, FrameHeaderLen+5)
			PutFrameHeader(r, FrameHeader{Src: 1, Len: 5})
			return r
		}()},
		{"zero source", func() []byte { r := make([]byte, FrameHeaderLen+20); PutFrameHeader(r, FrameHeader{Len: 20}); return r }()},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fr := NewFrames(tc.p)
			for {
				if _, _, ok := fr.Next(); !ok {
					break
				}
			}
			if !errors.Is(fr.Err(), ErrFrame) {
				t.Fatalf("err %v", fr.Err())
			}
		})
	}
}

// suites are the cipher suites every sealing test runs with.
var suites = []handshake.Suite{handshake.SuiteAESGCM, handshake.SuiteChaCha}

// forEachSuite runs test as a subtest per cipher suite.
func forEachSuite(t *testing.T, test func(t *testing.T, suite handshake.Suite)) {
	t.Helper()
	for _, suite := range suites {
		t.Run(suite.String(), func(t *testing.T) { test(t, suite) })
	}
}

// pair returns a sealer and the matching opener of suite at epoch 0.
func pair(t testing.TB, suite handshake.Suite) (*Sealer, *Opener) {
	t.Helper()
	return pairOn(t, suite, nil)
}

// pairOn is pair with the opener on clk (nil: the real clock).
func pairOn(t testing.TB, suite handshake.Suite, clk clock.Clock) (*Sealer, *Opener) {
	t.Helper()
	s, err := NewSealer(suite, epochKey(0))
	if err != nil {
		t.Fatal(err)
	}
	o, err := NewOpener(suite, epochKey(0), clk)
	if err != nil {
		t.Fatal(err)
	}
	return s, o
}

// rekey moves the pair to epoch e in the mesh's order: the receiver
// installs the key first, then the sender starts using it.
func rekey(t testing.TB, s *Sealer, o *Opener, e uint16) {
	t.Helper()
	if err := o.Install(e, epochKey(e)); err != nil {
		t.Fatal(err)
	}
	if err := s.Install(e, epochKey(e)); err != nil {
		t.Fatal(err)
	}
}

// sealed builds and seals a one-frame datagram.
func sealed(t testing.TB, s *Sealer, payload byte) []byte {
	t.Helper()
	buf := make([]byte, 2048)
	var b Builder
	b.Reset(buf[:2048-TagLen], Header{Receiver: 1, Sender: 2}, 1500)
	b.Add(FrameHeader{Src: 2, Dst: 1, HopLimit: 3}, frame(64, payload))
	d, err := s.Seal(b.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func open(o *Opener, d []byte) ([]byte, error) {
	d = append([]byte(nil), d...) // Open works in place
	h, err := ParseHeader(d)
	if err != nil {
		return nil, err
	}
	return o.Open(&h, d)
}

func TestSealOpen(t *testing.T) {
	forEachSuite(t, func(t *testing.T, suite handshake.Suite) {
		s, o := pair(t, suite)
		d := sealed(t, s, 0xAB)
		if bytes.Contains(d, frame(16, 0xAB)) {
			t.Fatal("payload visible in sealed datagram")
		}
		p, err := open(o, d)
		if err != nil {
			t.Fatal(err)
		}
		fr := NewFrames(p)
		_, f, ok := fr.Next()
		if !ok || !bytes.Equal(f, frame(64, 0xAB)) {
			t.Fatal("frame not recovered")
		}
	})
}

func TestOpenRejects(t *testing.T) {
	forEachSuite(t, func(t *testing.T, suite handshake.Suite) {
		s, o := pair(t, suite)
		d := sealed(t, s, 1)
		flip := func(i int) []byte { c := append([]byte(nil), d...); c[i] ^= 1; return c }
		for _, tc := range []struct {
			name string
			d    []byte
			want error
		}{
			{"payload bit", flip(HeaderLen + 3), ErrAuth},
			{"tag bit", flip(len(d) - 1), ErrAuth},
			{"receiver in header", flip(5), ErrAuth},
			{"sender in header", flip(10), ErrAuth},
			{"counter in header", flip(23), ErrAuth},
			{"epoch far ahead", flip(2), ErrEpoch},
			{"truncated", d[:HeaderLen+TagLen-1], ErrShort},
		} {
			t.Run(tc.name, func(t *testing.T) {
				if _, err := open(o, tc.d); !errors.Is(err, tc.want) {
					t.Fatalf("got %v want %v", err, tc.want)
				}
			})
		}
		// the genuine one still opens after the forgeries
		if _, err := open(o, d); err != nil {
			t.Fatal(err)
		}
		if _, err := open(o, d); !errors.Is(err, ErrReplay) {
			t.Fatalf("replay: got %v", err)
		}
	})
}

func TestOpenReorderAndTooOld(t *testing.T) {
	forEachSuite(t, func(t *testing.T, suite handshake.Suite) {
		s, o := pair(t, suite)
		var ds [][]byte
		for i := range WindowSize + 10 {
			ds = append(ds, sealed(t, s, byte(i)))
		}
		// newest first, then older ones within the window, in reverse
		last := len(ds) - 1
		if _, err := open(o, ds[last]); err != nil {
			t.Fatal(err)
		}
		for i := last - 1; i > last-WindowSize; i-- {
			if _, err := open(o, ds[i]); err != nil {
				t.Fatalf("datagram %d within the window: %v", i, err)
			}
		}
		if _, err := open(o, ds[last-WindowSize]); !errors.Is(err, ErrTooOld) {
			t.Fatalf("datagram just outside the window: %v", err)
		}
		if _, err := open(o, ds[0]); !errors.Is(err, ErrTooOld) {
			t.Fatalf("oldest: %v", err)
		}
		if _, err := open(o, ds[last-5]); !errors.Is(err, ErrReplay) {
			t.Fatalf("replay within window: %v", err)
		}
	})
}

func TestEpochs(t *testing.T) {
	forEachSuite(t, func(t *testing.T, suite handshake.Suite) {
		clk := clocktest.New(time.Time{})
		s, o := pairOn(t, suite, clk)
		old := sealed(t, s, 1)
		oldLate := sealed(t, s, 2)
		oldLatest := sealed(t, s, 6)
		if _, err := open(o, old); err != nil {
			t.Fatal(err)
		}
		rekey(t, s, o, 1)
		if s.Epoch() != 1 || o.Epoch() != 0 {
			t.Fatalf("after install: sender epoch %d, receiver %d (switches on the first datagram)", s.Epoch(), o.Epoch())
		}
		e1 := sealed(t, s, 3)
		if h, _ := ParseHeader(e1); h.Epoch != 1 || h.Counter != 0 {
			t.Fatalf("after rekey: epoch %d counter %d", h.Epoch, h.Counter)
		}
		// a forged datagram claiming the installed next epoch does not move
		// the opener
		forged := append([]byte(nil), e1...)
		forged[HeaderLen] ^= 1
		if _, err := open(o, forged); !errors.Is(err, ErrAuth) {
			t.Fatalf("forged next epoch: %v", err)
		}
		if o.Epoch() != 0 {
			t.Fatal("forged datagram advanced the epoch")
		}
		if _, err := open(o, e1); err != nil {
			t.Fatalf("next epoch: %v", err)
		}
		if o.Epoch() != 1 {
			t.Fatalf("opener epoch %d", o.Epoch())
		}
		// in-flight datagram of the previous epoch: accepted during the grace
		if _, err := open(o, oldLate); err != nil {
			t.Fatalf("previous epoch within grace: %v", err)
		}
		if _, err := open(o, old); !errors.Is(err, ErrReplay) {
			t.Fatalf("previous epoch replay: %v", err)
		}
		// epochs nobody installed are refused, however close
		for _, e := range []uint16{2, 3, 9, 0xffff} {
			d := sealed(t, s, 4)
			SetCounter(d, e, 1<<20)
			if _, err := open(o, d); !errors.Is(err, ErrEpoch) {
				t.Fatalf("uninstalled epoch %d: %v", e, err)
			}
		}
		// a sender with a key the receiver never installed: refused
		rogue, _ := NewSealer(suite, epochKey(2))
		rogue.Install(2, epochKey(2))
		if _, err := open(o, sealed(t, rogue, 5)); !errors.Is(err, ErrEpoch) || o.Epoch() != 1 {
			t.Fatalf("epoch 2 before install: %v, epoch %d", err, o.Epoch())
		}
		// the previous epoch stays open for exactly the grace after the
		// switch (virtual time), then closes
		clk.Advance(PrevEpochGrace)
		if _, err := open(o, oldLatest); err != nil {
			t.Fatalf("previous epoch at the end of the grace: %v", err)
		}
		clk.Advance(time.Nanosecond)
		e0 := append([]byte(nil), oldLate...)
		SetCounter(e0, 0, 1<<30) // unseen counter, so only the epoch decides
		if _, err := open(o, e0); !errors.Is(err, ErrEpoch) {
			t.Fatalf("expired previous epoch: %v", err)
		}
		// reinstalling the current epoch would reuse nonces: refused
		if err := o.Install(1, epochKey(9)); !errors.Is(err, ErrEpochInUse) {
			t.Fatalf("reinstall current receive epoch: %v", err)
		}
		if err := s.Install(1, epochKey(9)); !errors.Is(err, ErrEpochInUse) {
			t.Fatalf("reinstall current send epoch: %v", err)
		}
	})
}

// TestEpochWrap: epochs wrap at 2^16 (0xffff is followed by 0, then 1),
// as the mesh counts them; the opener compares epochs only for equality.
func TestEpochWrap(t *testing.T) {
	forEachSuite(t, func(t *testing.T, suite handshake.Suite) {
		s, o := pair(t, suite)
		for _, e := range []uint16{1, 2, 0xfffe, 0xffff, 0, 1} {
			rekey(t, s, o, e)
			if _, err := open(o, sealed(t, s, byte(e))); err != nil || o.Epoch() != e {
				t.Fatalf("epoch %d: %v, opener at %d", e, err, o.Epoch())
			}
		}
	})
}

// TestInstallTwiceBeforeFirstDatagram: the mesh may hand two receive keys
// before a datagram of the first arrives (an idle direction). The pending
// one becomes current, the old current stays open for the grace, and
// datagrams of all three epochs in flight still open.
func TestInstallTwiceBeforeFirstDatagram(t *testing.T) {
	forEachSuite(t, func(t *testing.T, suite handshake.Suite) {
		s, o := pair(t, suite)
		d0 := sealed(t, s, 1)
		rekey(t, s, o, 1)
		d1 := sealed(t, s, 2)
		rekey(t, s, o, 2)
		d2 := sealed(t, s, 3)
		for i, d := range [][]byte{d2, d1} {
			if _, err := open(o, d); err != nil {
				t.Fatalf("datagram %d: %v", i, err)
			}
		}
		if o.Epoch() != 2 {
			t.Fatalf("opener epoch %d, want 2", o.Epoch())
		}
		// epoch 0 is no longer known: two epochs behind
		if _, err := open(o, d0); !errors.Is(err, ErrEpoch) {
			t.Fatalf("epoch 0: %v", err)
		}
	})
}

// TestForgedEpochCostsNoKeyDerivation is the regression test for forged
// datagrams being expensive: before, a datagram claiming an epoch up to 8
// ahead made the opener ratchet the key and build a new AEAD under the
// connection lock. Now every epoch is tried (each with a garbage payload):
// no AEAD is constructed and nothing is allocated, for known and unknown
// epochs alike.
func TestForgedEpochCostsNoKeyDerivation(t *testing.T) {
	forEachSuite(t, func(t *testing.T, suite handshake.Suite) {
		s, o := pair(t, suite)
		rekey(t, s, o, 1)
		if _, err := open(o, sealed(t, s, 1)); err != nil {
			t.Fatal(err)
		}
		o.Install(2, epochKey(2)) // cur 1, prev 0, next 2
		built := 0
		orig := newAEAD
		newAEAD = func(s handshake.Suite, k *[32]byte) (cipher.AEAD, error) { built++; return orig(s, k) }
		t.Cleanup(func() { newAEAD = orig })

		d := sealed(t, s, 7)
		work := make([]byte, len(d))
		counter := uint64(1 << 40)
		forge := func(e uint16) error {
			copy(work, d)
			work[HeaderLen+5] ^= 0x55 // payload no longer matches the tag
			counter++
			SetCounter(work, e, counter)
			h, _ := ParseHeader(work)
			_, err := o.Open(&h, work)
			return err
		}
		for e := 0; e <= 0xffff; e++ {
			err := forge(uint16(e))
			want := ErrEpoch
			if e <= 2 {
				want = ErrAuth
			}
			if !errors.Is(err, want) {
				t.Fatalf("forged epoch %d: %v, want %v", e, err, want)
			}
		}
		if built != 0 {
			t.Fatalf("%d AEADs built for forged datagrams", built)
		}
		for _, e := range []uint16{1, 2, 3, 9, 0x8000} {
			if a := testing.AllocsPerRun(100, func() { forge(e) }); a != 0 {
				t.Errorf("forged epoch %d: %.1f allocations", e, a)
			}
		}
		if o.Epoch() != 1 {
			t.Fatalf("forgeries moved the epoch to %d", o.Epoch())
		}
	})
}

func TestPeerEncoding(t *testing.T) {
	b := make([]byte, 6)
	for _, p := range []identity.PeerName{1, 0xffffffffffff, 0x123456789abc} {
		putPeer(b, p)
		if getPeer(b) != p {
			t.Fatalf("peer %v", p)
		}
	}
}
