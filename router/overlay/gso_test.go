package overlay

import (
	"fmt"
	"testing"

	"github.com/weavelab/weave/mesh/handshake"
)

// TestBurstInOrder sends bursts of MTU-sized frames of one flow, plain and
// sealed with each cipher suite, with and without UDP segmentation offload: every frame arrives,
// in order, and offload stays on where the kernel has it. With refuse, the
// bind refuses the segmented messages (as a kernel does with EINVAL):
// offload turns off and the refused datagrams are resent one by one, none
// lost. The bind package tests runs through the kernel.
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
			if tc.refuse {
				if a.bind == nil {
					t.Skip("a refusal needs the in-memory bind")
				}
				a.bind.RefuseGSO(true)
			}
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
			if !b.ov.bind.Caps().GRO {
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
			} else if tc.gso && b.bind != nil && b.bind.Runs() == 0 {
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

// TestInlineAndQueuedKeepOrder writes frames of one flow to the device one
// at a time, so that device reads of one frame go out on the reader's
// goroutine when the worker is idle and through its queue when it is busy
// (and both ways mix on the receiving side: single datagrams handled by the
// reader, batches by the pipeline, or all by the reader with one opener):
// every frame arrives, in order.
func TestInlineAndQueuedKeepOrder(t *testing.T) {
	for k, openers := range []int{1, 2} {
		for j, suite := range withPlain {
			i := 3*k + j
			t.Run(fmt.Sprintf("%s,openers=%d", suiteName(suite), openers), func(t *testing.T) {
				mod := func(c *Config) { c.Openers = openers }
				a, b := newHost(t, 80+2*i, mod), newHost(t, 81+2*i, mod)
				a.routes.unicast[b.name] = b.name
				b.routes.broadcast[b.name] = []P{a.name}
				connect(t, a, b, suite)
				waitEstablished(t, a, b)
				mA, mB := mac(80+2*i, 1), mac(81+2*i, 1)
				b.inject(t, ethFrame(broadcastMAC, mB, 0, 60)) // a learns mB
				a.expect(t, 0)
				const frames = 2000
				done := make(chan struct{})
				go func() {
					defer close(done)
					for k := range frames {
						size := 60
						if k%7 == 0 {
							size = DefaultContainerMTU + ethHeader
						}
						a.dev.Write([][]byte{ethFrame(mB, mA, uint32(k+1), size)}, 0)
					}
				}()
				for k := range frames {
					b.expect(t, uint32(k+1))
				}
				<-done
				if d := a.ov.Stats().Drops; len(d) != 0 {
					t.Fatalf("drops %v", d)
				}
			})
		}
	}
}
