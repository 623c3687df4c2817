package overlay

import (
	"encoding/binary"
	"testing"
)

func TestWorkerForFlows(t *testing.T) {
	o := &Overlay{workers: make([]*worker, 8)}
	for i := range o.workers {
		o.workers[i] = &worker{}
	}
	tcp := func(sport uint16, frag bool) []byte {
		f := ipv4Frame(mac(1, 1), mac(2, 1), 100, false)
		f[14+9] = 6
		if frag {
			f[14+6] |= 0x20 // more fragments
		}
		binary.BigEndian.PutUint16(f[34:36], sport)
		binary.BigEndian.PutUint16(f[36:38], 5201)
		return f
	}
	used := map[*worker]bool{}
	for p := range 64 {
		w := o.workerFor(tcp(uint16(40000+p), false))
		if o.workerFor(tcp(uint16(40000+p), false)) != w {
			t.Fatal("one flow hashed to two workers")
		}
		used[w] = true
	}
	if len(used) < 4 {
		t.Fatalf("64 TCP flows between two containers used only %d of 8 workers", len(used))
	}
	// fragments ignore ports, so all fragments of a packet stay together
	if o.workerFor(tcp(1, true)) != o.workerFor(tcp(2, true)) {
		t.Fatal("fragments hashed by port")
	}
	// non-IP frames hash by MACs
	if o.workerFor(ethFrame(mac(1, 1), mac(2, 1), 1, 60)) != o.workerFor(ethFrame(mac(1, 1), mac(2, 1), 2, 80)) {
		t.Fatal("non-IP frames of one MAC pair split")
	}
}
