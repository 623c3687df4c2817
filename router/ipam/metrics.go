package ipam

import (
	"github.com/prometheus/client_golang/prometheus"
)

// metrics describes the allocator for Prometheus; values are read from
// Status at scrape time.
type metrics struct {
	a                                          *Allocator
	owned, free, allocated, held, pending, unr *prometheus.Desc
}

// Collector returns a Prometheus collector of the allocator's state: the
// space this peer owns and how much of it is free, its allocations (live
// and held for dead containers), requests waiting for space, and owners of
// space that are unreachable.
func (a *Allocator) Collector() prometheus.Collector {
	d := func(name, help string) *prometheus.Desc {
		return prometheus.NewDesc("weave_ipam_"+name, help, nil, nil)
	}
	return &metrics{
		a:         a,
		owned:     d("owned_addresses", "Addresses of the allocation range this peer owns."),
		free:      d("free_addresses", "Addresses this peer owns and could still allocate (not allocated, nor the range's network or broadcast address)."),
		allocated: d("allocated_addresses", "Addresses this peer has allocated to live containers."),
		held:      d("held_addresses", "Addresses of dead containers kept for the grace period."),
		pending:   d("pending_requests", "Allocations waiting for space (consensus or a donation)."),
		unr:       d("unreachable_owners", "Peers owning part of the range that the mesh cannot reach."),
	}
}

func (m *metrics) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{m.owned, m.free, m.allocated, m.held, m.pending, m.unr} {
		ch <- d
	}
}

func (m *metrics) Collect(ch chan<- prometheus.Metric) {
	st := m.a.Status()
	var owned, free, unreachable float64
	for _, p := range st.Peers {
		if p.Us {
			owned, free = float64(p.Size), float64(p.Free)
		} else if !p.Reachable {
			unreachable++
		}
	}
	g := func(d *prometheus.Desc, v float64) { ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v) }
	g(m.owned, owned)
	g(m.free, free)
	g(m.allocated, float64(st.Allocated))
	g(m.held, float64(st.Held))
	g(m.pending, float64(st.Pending))
	g(m.unr, unreachable)
}
