package encap

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"testing"

	"golang.org/x/crypto/chacha20poly1305"
	"golang.org/x/crypto/nacl/secretbox"
)

var benchSizes = []int{64, 512, 1400, 8192}

// BenchmarkAEAD compares the candidate AEADs sealing one datagram-sized
// message in place, as the data plane does. See README.md for figures.
func BenchmarkAEAD(b *testing.B) {
	var key [32]byte
	copy(key[:], "benchmark key benchmark key 0123")
	block, _ := aes.NewCipher(key[:])
	gcm, _ := cipher.NewGCM(block)
	chacha, _ := chacha20poly1305.New(key[:])
	ad := make([]byte, HeaderLen)
	for _, size := range benchSizes {
		buf := make([]byte, size+secretbox.Overhead)
		b.Run(fmt.Sprintf("aes-gcm/%d", size), func(b *testing.B) {
			b.SetBytes(int64(size))
			var n [12]byte
			for i := range b.N {
				binary.BigEndian.PutUint64(n[4:], uint64(i))
				gcm.Seal(buf[:0], n[:], buf[:size], ad)
			}
		})
		b.Run(fmt.Sprintf("chacha20poly1305/%d", size), func(b *testing.B) {
			b.SetBytes(int64(size))
			var n [12]byte
			for i := range b.N {
				binary.BigEndian.PutUint64(n[4:], uint64(i))
				chacha.Seal(buf[:0], n[:], buf[:size], ad)
			}
		})
		b.Run(fmt.Sprintf("secretbox/%d", size), func(b *testing.B) {
			b.SetBytes(int64(size))
			var n [24]byte
			out := make([]byte, 0, size+secretbox.Overhead)
			for i := range b.N {
				n[0] = byte(i)
				secretbox.Seal(out[:0], buf[:size], &n, &key)
			}
		})
	}
}

// BenchmarkEncapSeal measures building a one-frame datagram and sealing it,
// per cipher suite and frame size (MB/s of frame bytes).
func BenchmarkEncapSeal(b *testing.B) {
	for _, suite := range suites {
		s, _ := pair(b, suite)
		for _, size := range benchSizes {
			b.Run(fmt.Sprintf("%s/%d", suite, size), func(b *testing.B) {
				f := frame(size, 1)
				buf := make([]byte, size+HeaderLen+FrameHeaderLen+TagLen)
				var bl Builder
				b.SetBytes(int64(size))
				b.ReportAllocs()
				for range b.N {
					bl.Reset(buf[:len(buf)-TagLen], Header{Receiver: 1, Sender: 2}, 1<<16)
					bl.Add(FrameHeader{Src: 2, Dst: 1, HopLimit: 3}, f)
					if _, err := s.Seal(bl.Bytes()); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}

// BenchmarkOpenDecap measures opening a one-frame datagram (replay window
// included) and walking its frames, per cipher suite and frame size (MB/s
// of frame bytes).
func BenchmarkOpenDecap(b *testing.B) {
	for _, suite := range suites {
		s, o := pair(b, suite)
		for _, size := range benchSizes {
			b.Run(fmt.Sprintf("%s/%d", suite, size), func(b *testing.B) {
				const n = 1024
				ds := make([][]byte, n)
				seal := func() {
					for i := range ds {
						buf := make([]byte, size+HeaderLen+FrameHeaderLen+TagLen)
						var bl Builder
						bl.Reset(buf[:len(buf)-TagLen], Header{Receiver: 1, Sender: 2}, 1<<16)
						bl.Add(FrameHeader{Src: 2, Dst: 1, HopLimit: 3}, frame(size, 1))
						ds[i], _ = s.Seal(bl.Bytes())
					}
				}
				seal()
				work := make([]byte, len(ds[0]))
				b.SetBytes(int64(size))
				b.ReportAllocs()
				b.ResetTimer()
				for i := range b.N {
					if i%n == 0 && i > 0 {
						// re-seal a fresh set (untimed) so counters stay new
						b.StopTimer()
						seal()
						b.StartTimer()
					}
					copy(work, ds[i%n])
					h, err := ParseHeader(work)
					if err != nil {
						b.Fatal(err)
					}
					p, err := o.Open(&h, work)
					if err != nil {
						b.Fatal(err)
					}
					fr := NewFrames(p)
					for {
						if _, _, ok := fr.Next(); !ok {
							break
						}
					}
				}
			})
		}
	}
}

// BenchmarkOpenForged compares what a 1400-byte datagram costs the
// receiver, per cipher suite: a genuine one (open, replay window), garbage (random bytes),
// a forgery for the current epoch (one failed AEAD open) and a forgery for
// an epoch the opener does not know (dropped before any cryptography;
// before fresh keys came from the mesh this derived keys and built an
// AEAD, ~70x a normal open). See README.md for figures.
func BenchmarkOpenForged(b *testing.B) {
	for _, suite := range suites {
		prefix := suite.String() + "/"
		const size = 1400
		mk := func(s *Sealer, fill byte) []byte {
			buf := make([]byte, size+HeaderLen+FrameHeaderLen+TagLen)
			var bl Builder
			bl.Reset(buf[:len(buf)-TagLen], Header{Receiver: 1, Sender: 2}, 1<<16)
			bl.Add(FrameHeader{Src: 2, Dst: 1, HopLimit: 3}, frame(size, fill))
			d, err := s.Seal(bl.Bytes())
			if err != nil {
				b.Fatal(err)
			}
			return d
		}
		s, o := pair(b, suite)
		rekey(b, s, o, 1)
		o.Install(2, epochKey(2))
		garbage := make([]byte, len(mk(s, 0)))
		rand.Read(garbage)
		run := func(b *testing.B, prepare func(work []byte, i int)) {
			work := make([]byte, len(garbage))
			b.SetBytes(size)
			b.ReportAllocs()
			b.ResetTimer()
			for i := range b.N {
				prepare(work, i)
				h, err := ParseHeader(work)
				if err != nil {
					continue
				}
				o.Open(&h, work)
			}
		}
		b.Run(prefix+"genuine", func(b *testing.B) {
			// each genuine datagram opens once (replay window): seal fresh
			// ones in batches outside the timer
			const n = 4096
			ds := make([][]byte, n)
			work := make([]byte, len(garbage))
			b.SetBytes(size)
			b.ReportAllocs()
			for i := 0; i < b.N; i++ {
				if i%n == 0 {
					b.StopTimer()
					for j := range ds {
						ds[j] = mk(s, byte(j))
					}
					b.StartTimer()
				}
				copy(work, ds[i%n])
				h, err := ParseHeader(work)
				if err != nil {
					b.Fatal(err)
				}
				if _, err := o.Open(&h, work); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(prefix+"garbage", func(b *testing.B) {
			run(b, func(work []byte, i int) { copy(work, garbage) })
		})
		forged := mk(s, 9)
		forged[HeaderLen+7] ^= 1
		b.Run(prefix+"forged-current-epoch", func(b *testing.B) {
			run(b, func(work []byte, i int) {
				copy(work, forged)
				SetCounter(work, 1, 1<<40+uint64(i))
			})
		})
		b.Run(prefix+"forged-future-epoch", func(b *testing.B) {
			run(b, func(work []byte, i int) {
				copy(work, forged)
				SetCounter(work, 3+uint16(i%8), 1<<40+uint64(i))
			})
		})
	}
}
