package harness

import (
	"crypto/sha256"
	"io"
	"testing"
)

// TestUDPReceiver feeds the receiver datagrams in orders a network can
// produce and checks what it counts, and that a datagram whose content
// was changed in flight is caught even when its header is intact.
func TestUDPReceiver(t *testing.T) {
	s, err := newUDPStream(UDPConfig{Bytes: 1499*984 + 17, Datagram: 1000, Seed: 7})
	if err != nil {
		t.Fatal(err)
	}
	if s.count != 1500 {
		t.Fatalf("count %d, want 1500", s.count)
	}
	dgram := func(seq uint64) []byte {
		b := make([]byte, udpHeader+s.chunk)
		return b[:s.fill(b, seq)]
	}
	all := func() []uint64 {
		var out []uint64
		for seq := range s.count {
			out = append(out, seq)
		}
		return out
	}
	swap := func(seqs []uint64, i, j int) []uint64 { seqs[i], seqs[j] = seqs[j], seqs[i]; return seqs }
	for _, tc := range []struct {
		name                                 string
		order                                []uint64
		lost, dup, late, reordered, received uint64
		flip                                 int // flip a data byte of the datagram at this index (-1: none)
		corrupt                              uint64
	}{
		{name: "in order", order: all(), received: 1500, flip: -1},
		{name: "swapped", order: swap(all(), 3, 50), received: 1500, reordered: 47, flip: -1},
		{name: "lost and duplicated", order: append(append(all()[:10], all()[11:]...), 5, 100), received: 1499, lost: 1, dup: 2, flip: -1},
		{name: "late beyond the window", order: append(append(all()[:7], all()[8:]...), 7), received: 1499, lost: 1, late: 1, flip: -1},
		{name: "flipped byte", order: all(), received: 1499, lost: 1, flip: 42, corrupt: 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var res UDPResult
			r := newUDPReceiver(s, &res)
			for i, seq := range tc.order {
				b := dgram(seq)
				if i == tc.flip {
					b[udpHeader+5] ^= 1
				}
				r.take(b)
			}
			for r.next < s.count {
				r.advance()
			}
			if res.Received != tc.received || res.Lost != tc.lost || res.Duplicates != tc.dup || res.Late != tc.late || res.Reordered != tc.reordered || res.Corrupt != tc.corrupt {
				t.Errorf("got %+v", res)
			}
			var got [32]byte
			copy(got[:], r.h.Sum(nil))
			if want := s.sumWithout(r.lost); got != want {
				t.Errorf("reassembled SHA-256 %x, want %x", got[:8], want[:8])
			}
			if tc.lost == 0 {
				h := sha256.New()
				for seq := range s.count {
					h.Write(dgram(seq)[udpHeader:])
				}
				var full [32]byte
				copy(full[:], h.Sum(nil))
				if got != full {
					t.Errorf("nothing lost, yet SHA-256 %x differs from the whole stream's %x", got[:8], full[:8])
				}
			}
		})
	}
}

// TestPatternReader: the same seed gives the same bytes, another seed
// others.
func TestPatternReader(t *testing.T) {
	read := func(seed uint64) []byte {
		b, err := io.ReadAll(PatternReader(seed, 1<<16+3))
		if err != nil || len(b) != 1<<16+3 {
			t.Fatalf("read %d bytes: %v", len(b), err)
		}
		return b
	}
	a, b, c := read(1), read(1), read(2)
	if string(a) != string(b) || string(a) == string(c) {
		t.Error("pattern is not a function of the seed")
	}
}
