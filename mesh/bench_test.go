package mesh

import (
	"math/rand/v2"
	"sync"
	"testing"
	"time"
)

func BenchmarkConvergence100(b *testing.B)  { benchConvergence(b, 100) }
func BenchmarkConvergence1000(b *testing.B) { benchConvergence(b, 1000) }

// benchConvergence starts n routers on the in-memory network, links them
// as a random sparse graph (discovery off, about 2 links per peer), and
// measures the time from the first Connect until every peer holds the same
// complete topology, and the gossip bytes that cost per peer. The routes
// are then checked against shortest paths.
func benchConvergence(b *testing.B, n int) {
	var convMS, topoBytes, sumBytes, wireBytes, msgs, dropped float64
	for it := 0; it < b.N; it++ {
		b.StopTimer()
		s := newSim(b)
		g, dials := randomSparse(n, 1, rand.New(rand.NewPCG(uint64(n), uint64(it))))
		for i := 0; i < n; i++ {
			s.start(i, func(c *Config) {
				c.NoDiscovery = true
				c.HeartbeatInterval = time.Second
				c.DeadAfter = 60
				c.GossipInterval = time.Second
				c.HandshakeTimeout = time.Minute
				c.UpdateDelay = 200 * time.Millisecond
				c.SendQueue = 256
			})
		}
		wire0 := s.net.BytesWritten()
		b.StartTimer()
		start := time.Now()
		var wg sync.WaitGroup
		for _, d := range dials {
			wg.Go(func() { s.connect(d[0], d[1]) })
		}
		wg.Wait()
		waitFor(b, 10*time.Minute, "convergence", func() bool { return s.converged(g, n) })
		elapsed := time.Since(start)
		b.StopTimer()
		convMS += float64(elapsed.Milliseconds())
		wireBytes += float64(s.net.BytesWritten() - wire0)
		for _, r := range s.routers {
			st := r.Stats()
			topoBytes += float64(st.TopologyBytesSent)
			msgs += float64(st.MessagesSent)
			sumBytes += float64(r.stats.sumBytes.Load())
			dropped += float64(st.Dropped)
		}
		checkRoutes(b, s, g, n)
		for _, r := range s.routers {
			r.Close()
		}
		b.StartTimer()
	}
	runs := float64(b.N)
	b.ReportMetric(convMS/runs, "ms/converge")
	b.ReportMetric(topoBytes/runs/float64(n), "topoB/peer")
	b.ReportMetric(sumBytes/runs/float64(n), "summaryB/peer")
	b.ReportMetric(wireBytes/runs/float64(n), "wireB/peer")
	b.ReportMetric(msgs/runs/float64(n), "msgs/peer")
	b.ReportMetric(dropped/runs, "dropped")
}
