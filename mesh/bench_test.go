package mesh

import "testing"

func BenchmarkConvergence100(b *testing.B)  { benchConvergence(b, 100) }
func BenchmarkConvergence1000(b *testing.B) { benchConvergence(b, 1000) }

func BenchmarkConvergence5000(b *testing.B) { benchConvergence(b, 5000) }

// benchConvergence runs the scale scenario (runScale) on the virtual-time
// simulation and reports its costs: topoB (the full topology encoded),
// coldB/peer (gossip sent per peer for a cold start), joinB/peer (per peer
// for one peer joining a converged mesh), entryB (the size of the entries
// that join changed), leaveB/peer and linkB/peer likewise, quietB/peer/s
// (repair traffic of a converged, quiet mesh), and the cold start's
// convergence time in virtual seconds (virt-s) and CPU seconds (cpu-s, all
// cores). The bounds on the costs are checked (checkScaleBounds),
// and every run checks routes against shortest paths (from 200 random
// peers beyond 1,000 peers).
func benchConvergence(b *testing.B, n int) {
	sample := 0
	if n > 1000 {
		sample = 200
	}
	var r scaleResult
	for it := 0; it < b.N; it++ {
		r = runScale(b, n, uint64(it+1), sample)
	}
	logScale(b, r)
	checkScaleBounds(b, r)
	b.ReportMetric(float64(r.TopoB), "topoB")
	b.ReportMetric(float64(r.ColdB)/float64(n), "coldB/peer")
	b.ReportMetric(r.Join.BPerPeer, "joinB/peer")
	b.ReportMetric(float64(r.Join.EntryB), "entryB")
	b.ReportMetric(r.Leave.BPerPeer, "leaveB/peer")
	b.ReportMetric(r.LinkLost.BPerPeer, "linkB/peer")
	b.ReportMetric(r.QuietBps, "quietB/peer/s")
	b.ReportMetric(r.ColdVirt.Seconds(), "virt-s")
	b.ReportMetric(r.ColdCPU.Seconds(), "cpu-s")
}
