package encap

import (
	"bytes"
	"testing"
)

// FuzzDecodeDatagram feeds arbitrary bytes to the header and frame-record
// decoders: they must never panic, and every frame they return must lie
// inside the datagram with the length its record states.
func FuzzDecodeDatagram(f *testing.F) {
	var b Builder
	buf := make([]byte, 512)
	b.Reset(buf, Header{Receiver: 7, Sender: 3, Counter: 9}, 512)
	b.Add(FrameHeader{Src: 3, Dst: 4, HopLimit: 2}, frame(60, 1))
	b.Add(FrameHeader{Src: 3, HopLimit: 2}, frame(42, 2))
	f.Add(append([]byte(nil), b.Bytes()...))
	hb := make([]byte, HeaderLen+8)
	(&Header{Type: TypeHeartbeat, Receiver: 1, Sender: 2}).Put(hb)
	f.Add(hb)
	f.Fuzz(func(t *testing.T, d []byte) {
		h, err := ParseHeader(d)
		if err != nil {
			return
		}
		re := make([]byte, HeaderLen)
		h.Put(re)
		if h2, err := ParseHeader(re); err != nil || h2 != h {
			t.Fatalf("header does not round-trip: %+v %+v %v", h, h2, err)
		}
		fr := NewFrames(d[HeaderLen:])
		total := 0
		for {
			fh, frm, ok := fr.Next()
			if !ok {
				break
			}
			if len(frm) != fh.Len || fh.Len < 14 || fh.Src == 0 {
				t.Fatalf("bad frame: %+v len %d", fh, len(frm))
			}
			total += FrameHeaderLen + len(frm)
		}
		if fr.Err() == nil && total != len(d)-HeaderLen {
			t.Fatalf("clean end after %d of %d bytes", total, len(d)-HeaderLen)
		}
	})
}

// FuzzOpen feeds arbitrary datagrams to openers keyed like a real
// connection (epoch 0 current, epoch 1 installed), one per cipher suite:
// nothing but datagrams sealed with those keys and that suite may open, and
// nothing may panic. Seeds include genuine datagrams of epochs 0 and 1 of
// each suite.
func FuzzOpen(f *testing.F) {
	for _, suite := range suites {
		s, o := pair(f, suite)
		f.Add(sealed(f, s, 1))
		f.Add(sealed(f, s, 2))
		rekey(f, s, o, 1)
		f.Add(sealed(f, s, 3))
	}
	f.Add([]byte{1, 1, 0, 0, 0, 0, 0, 1})
	f.Fuzz(func(t *testing.T, d []byte) {
		h, err := ParseHeader(d)
		if err != nil {
			return
		}
		orig := append([]byte(nil), d...)
		opened := 0
		for _, suite := range suites {
			_, o := pair(t, suite)
			o.Install(1, epochKey(1))
			work := append([]byte(nil), orig...)
			p, err := o.Open(&h, work)
			if err != nil {
				continue
			}
			opened++
			// It opened: it must be one of the genuine seeds (same keys,
			// same suite); check it re-seals to the same bytes.
			if h.Epoch > 1 {
				t.Fatalf("%s opened a datagram of epoch %d, which was never installed", suite, h.Epoch)
			}
			s2, _ := pair(t, suite)
			if h.Epoch == 1 {
				s2.Install(1, epochKey(1))
			}
			re := append(append([]byte(nil), orig[:HeaderLen]...), p...)
			re = append(re, make([]byte, TagLen)...)[:HeaderLen+len(p)]
			s2.cur.Load().counter.Store(h.Counter)
			out, err := s2.Seal(re)
			if err != nil || !bytes.Equal(out, orig) {
				t.Fatalf("%s opened a datagram that the key did not seal", suite)
			}
			if _, err := o.Open(&h, append([]byte(nil), orig...)); err == nil {
				t.Fatalf("%s: replay opened", suite)
			}
		}
		if opened > 1 {
			t.Fatal("a datagram opened with more than one suite")
		}
	})
}
