package overlay

import (
	"fmt"
	"testing"
	"time"
)

// BenchmarkForward measures frames through the whole pipeline of two
// overlays on loopback: fake device -> reader -> worker -> sendmmsg ->
// recvmmsg -> open -> fake device, per frame size, plain and with each
// cipher suite.
// The in-memory fake devices copy each frame, which a TAP would too.
func BenchmarkForward(b *testing.B) {
	for _, suite := range withPlain {
		for _, size := range []int{64, 1400} {
			b.Run(fmt.Sprintf("%s/%d", suiteName(suite), size), func(b *testing.B) {
				x, y := newHost(b, 20, nil), newHost(b, 21, nil)
				x.routes.unicast[y.name] = y.name
				y.routes.broadcast[y.name] = []P{x.name}
				connect(b, x, y, suite)
				waitEstablished(b, x, y)
				mX, mY := mac(20, 1), mac(21, 1)
				y.inject(b, ethFrame(broadcastMAC, mY, 0, 60))
				x.expect(b, 0)
				frame := ethFrame(mY, mX, 1, size)
				b.SetBytes(int64(size))
				b.ResetTimer()
				go func() {
					for range b.N {
						x.dev.Write([][]byte{frame}, 0)
					}
				}()
				got := 0
				idle := time.NewTimer(time.Second)
				defer idle.Stop()
			loop:
				for got < b.N {
					select {
					case <-y.frames:
						got++
						if got%256 == 0 {
							idle.Reset(time.Second)
						}
					case <-idle.C:
						break loop
					}
				}
				b.StopTimer()
				b.ReportMetric(float64(b.N-got)/float64(b.N)*100, "%lost")
			})
		}
	}
}
