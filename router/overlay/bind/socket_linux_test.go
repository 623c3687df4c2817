package bind

import (
	"net/netip"
	"os"
	"testing"

	"golang.org/x/sys/unix"
)

// TestSocketTuning checks the UDP socket gets the large buffers (which
// needs root for SO_RCVBUFFORCE beyond net.core.rmem_max) and lets the
// kernel fragment.
func TestSocketTuning(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("TestSocketTuning needs root (SO_RCVBUFFORCE); run the tests as root")
	}
	u, err := Listen(netip.MustParseAddrPort("127.0.0.1:0"), Options{SocketBuffer: 16 << 20})
	if err != nil {
		t.Fatal(err)
	}
	defer u.Close()
	rc, err := u.conn.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var rcv, snd, pmtu int
	var gerr error
	rc.Control(func(fd uintptr) {
		s := int(fd)
		if rcv, gerr = unix.GetsockoptInt(s, unix.SOL_SOCKET, unix.SO_RCVBUF); gerr != nil {
			return
		}
		if snd, gerr = unix.GetsockoptInt(s, unix.SOL_SOCKET, unix.SO_SNDBUF); gerr != nil {
			return
		}
		pmtu, gerr = unix.GetsockoptInt(s, unix.IPPROTO_IP, unix.IP_MTU_DISCOVER)
	})
	if gerr != nil {
		t.Fatal(gerr)
	}
	// the kernel reports twice the requested size (bookkeeping overhead)
	if rcv < 16<<20 || snd < 16<<20 {
		t.Fatalf("socket buffers rcv %d snd %d, want at least %d", rcv, snd, 16<<20)
	}
	if pmtu != unix.IP_PMTUDISC_DONT {
		t.Fatalf("IP_MTU_DISCOVER = %d, want IP_PMTUDISC_DONT", pmtu)
	}
}
