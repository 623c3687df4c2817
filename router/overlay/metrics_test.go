package overlay

import (
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/weavelab/weave/mesh/handshake"
)

func TestMetrics(t *testing.T) {
	reg := prometheus.NewPedanticRegistry()
	withReg := func(c *Config) { c.Registerer = reg }
	a, b := newHost(t, 24, withReg), newHost(t, 25, nil)
	a.routes.unicast[b.name] = b.name
	a.routes.broadcast[a.name] = []P{b.name}
	connect(t, a, b, handshake.SuiteChaCha)
	waitEstablished(t, a, b)
	a.inject(t, ethFrame(broadcastMAC, mac(24, 1), 1, 100))
	b.expect(t, 1)
	a.inject(t, []byte{1, 2, 3}) // runt: dropped and counted
	// the runt is counted by the device reader; wait for it via Stats
	waitFor(t, func() bool { return a.ov.Stats().Drops["runt"] == 1 })
	peer := b.name.String()
	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, f := range fams {
		for _, m := range f.GetMetric() {
			var labels []string
			for _, l := range m.GetLabel() {
				labels = append(labels, l.GetName()+"="+l.GetValue())
			}
			v := m.GetCounter().GetValue() + m.GetGauge().GetValue()
			got[f.GetName()+"{"+strings.Join(labels, ",")+"}"] = v
		}
	}
	for k, want := range map[string]float64{
		"weave_overlay_frames_total{direction=out,peer=" + peer + "}": 1,
		"weave_overlay_frames_total{direction=in,peer=" + peer + "}":  0,
		"weave_overlay_bytes_total{direction=out,peer=" + peer + "}":  100,
		"weave_overlay_drops_total{peer=,reason=runt}":                1,
		"weave_overlay_connections{state=established}":                1,
		"weave_overlay_frag_needed_total{}":                           0,
	} {
		if v, ok := got[k]; !ok || v != want {
			t.Errorf("%s = %v (present %v), want %v", k, v, ok, want)
		}
	}
	// registering a second overlay on the same registry is an error, not a panic
	cfg := a.ov.cfg
	cfg.UDPPort = 0
	cfg.Device = nil
	if _, err := New(cfg); err == nil {
		t.Fatal("second registration accepted")
	}
}
