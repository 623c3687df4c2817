package netdev

import (
	"encoding/binary"
	"testing"
)

// FuzzOffload feeds arbitrary bytes to both offload paths: as frames from
// the overlay (network bytes) to the write side's coalescing, and as a
// frame with an arbitrary virtio header to the read side's segmenter.
// Nothing may panic; a super-frame built must hold the frames' payloads
// and fit the write buffer.
func FuzzOffload(f *testing.F) {
	payload := make([]byte, 3000)
	super := tcp4Frame(payload, tcpFlagACK)
	seed := make([]byte, vnetHdrLen)
	seed[1] = vnetGSOTCPv4
	binary.LittleEndian.PutUint16(seed[4:6], 1000)
	f.Add(append(seed, super...), uint16(1000))
	f.Add(append(make([]byte, vnetHdrLen), tcp4Frame([]byte("small"), tcpFlagACK|tcpFlagPSH)...), uint16(60))
	seed6 := make([]byte, vnetHdrLen)
	seed6[1] = vnetGSOTCPv6
	binary.LittleEndian.PutUint16(seed6[4:6], 1000)
	f.Add(append(seed6, tcp6Frame(payload, tcpFlagACK)...), uint16(1086))
	out := make([]byte, vnetHdrLen+ethHdrLen+0xffff)
	dst := make([]byte, 2048)
	f.Fuzz(func(t *testing.T, b []byte, cut uint16) {
		if len(b) < vnetHdrLen {
			return
		}
		var s segmenter
		if s.reset(parseVnetHdr(b), append([]byte(nil), b[vnetHdrLen:]...)) == nil {
			for range 1 << 12 {
				n, err := s.next(dst)
				if err != nil || n == 0 {
					break
				}
			}
		}
		// Cut the rest into frames of cut bytes and coalesce them.
		c := max(int(cut)%2048, 14)
		var frames [][]byte
		for rest := b[vnetHdrLen:]; len(rest) > 0; {
			k := min(c, len(rest))
			frames = append(frames, rest[:k])
			rest = rest[k:]
		}
		for len(frames) > 0 {
			n, first := coalesce(frames, 0)
			if n < 1 || n > len(frames) {
				t.Fatalf("coalesce returned %d of %d", n, len(frames))
			}
			if n > 1 {
				want := first.hlen
				for _, fr := range frames[:n] {
					want += len(fr) - first.hlen
				}
				if m := buildSuper(out, frames[:n], 0, first); m != vnetHdrLen+want {
					t.Fatalf("super-frame of %d bytes, want %d", m, vnetHdrLen+want)
				}
			}
			frames = frames[n:]
		}
	})
}
