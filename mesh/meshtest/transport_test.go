package meshtest

import (
	"context"
	"errors"
	"io"
	"net"
	"testing"
	"time"
)

func TestDialAccept(t *testing.T) {
	n := NewNetwork()
	a, b := n.Host("10.0.0.1"), n.Host("10.0.0.2")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := a.Dial(ctx, "10.0.0.2:1"); !errors.Is(err, ErrRefused) {
		t.Fatalf("dial with no listener = %v, want ErrRefused", err)
	}
	ln, err := b.Listen(ctx, ":6783")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.Listen(ctx, ":6783"); err == nil {
		t.Error("second listen on one port succeeded")
	}
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		io.Copy(c, c)
		c.Close()
	}()
	c, err := a.Dial(ctx, "10.0.0.2:6783")
	if err != nil {
		t.Fatal(err)
	}
	if got := c.RemoteAddr().String(); got != "10.0.0.2:6783" {
		t.Errorf("remote addr %s", got)
	}
	if _, err := c.Write([]byte("ping")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 4)
	if _, err := io.ReadFull(c, buf); err != nil || string(buf) != "ping" {
		t.Fatalf("echo = %q, %v", buf, err)
	}
	if n.BytesWritten() < 4 || n.Dials("10.0.0.2:6783") != 1 {
		t.Errorf("bytes %d dials %d", n.BytesWritten(), n.Dials("10.0.0.2:6783"))
	}
	c.Close()
	ln.Close()
	if _, err := ln.Accept(); !errors.Is(err, net.ErrClosed) {
		t.Errorf("accept after close = %v", err)
	}
}
