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

// FuzzFlowHash feeds arbitrary frames to the flow hash's header parse:
// nothing panics, and the hash depends only on the fields it claims to
// read (MACs; for IPv4 the addresses; for unfragmented TCP/UDP the ports),
// so all frames of a flow go to one worker whatever their payload.
func FuzzFlowHash(f *testing.F) {
	tcp := ipv4Frame(mac(1, 1), mac(2, 1), 100, false)
	tcp[14+9] = 6
	f.Add(tcp)
	frag := append([]byte(nil), tcp...)
	frag[14+6] |= 0x20
	f.Add(frag)
	f.Add(ethFrame(mac(1, 1), mac(2, 1), 1, 60))
	f.Add(tcp[:14+20])
	f.Add([]byte{1, 2, 3})
	f.Fuzz(func(t *testing.T, frame []byte) {
		h := flowHash(frame)
		if len(frame) < 12 {
			return
		}
		// Scribble over every byte the hash must not read.
		var read int
		switch ip, ihl, ok := ipv4Packet(frame); {
		case len(frame) < ethHeader+20:
			read = 12 // too short for IPv4 whatever it says: MACs only
		case !ok && (frame[12] != 0x08 || frame[13] != 0x00):
			read = 14 // the ethertype says it is not IPv4
		case !ok:
			read = ethHeader + 1 // version and header length say it is not
		case ip[9] == 6 || ip[9] == 17:
			read = min(len(frame), ethHeader+ihl+4) // the ports
		default:
			read = ethHeader + 20
		}
		other := append([]byte(nil), frame...)
		for i := read; i < len(other); i++ {
			other[i] ^= 0xa5
		}
		if flowHash(other) != h {
			t.Fatalf("hash changed with bytes beyond %d of %d", read, len(frame))
		}
		if _, _, ok := ipv4Packet(frame); !ok {
			macs := append(append([]byte(nil), frame[:12]...), 0x86, 0xdd)
			if flowHash(macs) != h {
				t.Fatal("a non-IPv4 frame hashed by more than its MACs")
			}
		}
	})
}
