package netdevtest

import (
	"bytes"
	"errors"
	"net"
	"testing"
)

func TestPairCarriesFramesInOrder(t *testing.T) {
	a, b := NewPair("t", 1500, 4)
	t.Cleanup(func() { a.Close(); b.Close() })
	frames := [][]byte{{0, 1, 2}, {3, 4}, {5}}
	// Write with a 2-byte offset to check it is honoured.
	var in [][]byte
	for _, f := range frames {
		in = append(in, append([]byte{0xff, 0xff}, f...))
	}
	if n, err := a.Write(in, 2); err != nil || n != 3 {
		t.Fatalf("write = %d, %v", n, err)
	}
	in[0][2] = 99 // the fake must have copied
	bufs := make([][]byte, 8)
	for i := range bufs {
		bufs[i] = make([]byte, 64)
	}
	sizes := make([]int, 8)
	n, err := b.Read(bufs, sizes, 1)
	if err != nil || n != 3 {
		t.Fatalf("read = %d, %v; want 3 frames", n, err)
	}
	for i, f := range frames {
		if got := bufs[i][1 : 1+sizes[i]]; !bytes.Equal(got, f) {
			t.Errorf("frame %d = %v, want %v", i, got, f)
		}
	}
}

func TestBatchSizeLimitsRead(t *testing.T) {
	a, b := NewPair("t", 1500, 1)
	t.Cleanup(func() { a.Close(); b.Close() })
	if _, err := a.Write([][]byte{{1}, {2}}, 0); err != nil {
		t.Fatal(err)
	}
	bufs := [][]byte{make([]byte, 8), make([]byte, 8)}
	sizes := make([]int, 2)
	for want := byte(1); want <= 2; want++ {
		n, err := b.Read(bufs, sizes, 0)
		if err != nil || n != 1 || bufs[0][0] != want {
			t.Fatalf("read = %d, %v, first byte %d; want 1 frame %d", n, err, bufs[0][0], want)
		}
	}
}

func TestCloseUnblocksRead(t *testing.T) {
	a, b := NewPair("t", 1500, 1)
	t.Cleanup(func() { a.Close() })
	done := make(chan error)
	go func() {
		_, err := b.Read([][]byte{make([]byte, 8)}, []int{0}, 0)
		done <- err
	}()
	b.Close()
	if err := <-done; !errors.Is(err, net.ErrClosed) {
		t.Fatalf("read after close = %v, want net.ErrClosed", err)
	}
	// Writing towards a closed peer drops silently.
	if n, err := a.Write([][]byte{{1}}, 0); err != nil || n != 1 {
		t.Fatalf("write to closed peer = %d, %v", n, err)
	}
	if _, err := b.Write([][]byte{{1}}, 0); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("write on closed end = %v, want net.ErrClosed", err)
	}
}
