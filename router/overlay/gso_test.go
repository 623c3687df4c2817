package overlay

import (
	"fmt"
	"testing"

	"github.com/weavelab/weave/mesh/handshake"
)

// TestBurstInOrder sends bursts of MTU-sized frames of one flow, plain and
// sealed with each cipher suite, with and without UDP segmentation offload: every frame arrives,
// in order, and offload stays on where the kernel has it. With refuse, the
// kernel refuses the segmented messages (EINVAL): offload turns off and the
// refused datagrams are resent one by one, none lost.
func TestBurstInOrder(t *testing.T) {
	for i, tc := range []struct {
		suite       handshake.Suite
		gso, refuse bool
	}{
		{0, true, false},
		{handshake.SuiteAESGCM, true, false},
		{handshake.SuiteChaCha, true, false},
		{handshake.SuiteAESGCM, false, false},
		{handshake.SuiteChaCha, true, true},
	} {
		t.Run(fmt.Sprintf("%s,gso=%v,refuse=%v", suiteName(tc.suite), tc.gso, tc.refuse), func(t *testing.T) {
			mod := func(c *Config) { c.UDPOffload = tc.gso }
			a, b := newHost(t, 50+2*i, mod), newHost(t, 51+2*i, mod)
			a.ov.testRefuseGSO.Store(tc.refuse)
			a.routes.unicast[b.name] = b.name
			b.routes.unicast[a.name] = a.name
			a.routes.broadcast[a.name] = []P{b.name}
			b.routes.broadcast[b.name] = []P{a.name}
			connect(t, a, b, tc.suite)
			waitEstablished(t, a, b)
			gso := a.ov.gso.Load()
			if gso != tc.gso {
				t.Fatalf("UDP GSO %v, want %v (as root on Linux >= 4.18)", gso, tc.gso)
			}
			if !a.ov.gro || !b.ov.gro {
				t.Fatal("UDP GRO not enabled on the receive socket")
			}
			mA, mB := mac(50+2*i, 1), mac(51+2*i, 1)
			b.inject(t, ethFrame(broadcastMAC, mB, 0, 60)) // a learns mB
			a.expect(t, 0)
			const burst = 500
			frames := make([][]byte, burst)
			for k := range frames {
				frames[k] = ethFrame(mB, mA, uint32(k+1), DefaultContainerMTU+ethHeader)
			}
			if _, err := a.dev.Write(frames, 0); err != nil {
				t.Fatal(err)
			}
			for k := range burst {
				b.expect(t, uint32(k+1))
			}
			if tc.refuse {
				if a.ov.gso.Load() {
					t.Fatal("UDP GSO still on after the kernel refused a segmented message")
				}
			} else if tc.gso && b.ov.groRun.Load() == 0 {
				t.Fatal("no run of datagrams was sent with GSO and received with GRO")
			}
			if !tc.refuse && a.ov.gso.Load() != gso {
				t.Fatal("UDP GSO was turned off: the kernel refused a message")
			}
			if d := a.ov.Stats().Drops; len(d) != 0 {
				t.Fatalf("drops %v", d)
			}
		})
	}
}
