package harness

import (
	"bytes"
	"context"
	"crypto/rand"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestMain(m *testing.M) { os.Exit(Main(m)) }

func TestParsePing(t *testing.T) {
	out := `PING 10.2.1.2 (10.2.1.2) 56(84) bytes of data.
64 bytes from 10.2.1.2: icmp_seq=1 ttl=64 time=0.045 ms
64 bytes from 10.2.1.2: icmp_seq=3 ttl=64 time=1.50 ms

--- 10.2.1.2 ping statistics ---
3 packets transmitted, 2 received, 33.3333% packet loss, time 2003ms
rtt min/avg/max/mdev = 0.045/0.772/1.500/0.727 ms
`
	p, err := ParsePing(out)
	if err != nil {
		t.Fatal(err)
	}
	if p.Sent != 3 || p.Received != 2 || len(p.RTTs) != 2 {
		t.Fatalf("parsed %+v", p)
	}
	if got := p.Percentile(0.99); got != 1500*time.Microsecond {
		t.Errorf("p99 = %v", got)
	}
	if _, err := ParsePing("ping: connect: Network is unreachable"); err == nil {
		t.Error("no error for output without summary")
	}
}

// TestLAN checks the harness itself, without the weave binary: hosts reach
// each other over the LAN, Cut stops exactly one pair, Restore undoes it,
// sockets opened with Do live in the namespace, a tcpdump capture on the
// LAN bridge decodes, and cleanup removes every namespace.
func TestLAN(t *testing.T) {
	var id string
	t.Run("lan", func(t *testing.T) {
		l := New(t)
		id = l.ID()
		h1, h2, h3 := l.AddHost("h1"), l.AddHost("h2"), l.AddHost("h3")
		for _, p := range [][2]*Host{{h1, h2}, {h2, h3}, {h1, h3}} {
			WaitFor(t, 10*time.Second, func() (bool, string) { return p[0].Reaches(p[1].IP) })
		}

		l.Cut(h1, h3)
		if p, err := h1.Ping(h3.IP, 2, "-i", "0.2"); err != nil || p.Received != 0 {
			t.Errorf("after cut h1 -> h3: %v %v, want all lost", p, err)
		}
		if p, err := h3.Ping(h1.IP, 2, "-i", "0.2"); err != nil || p.Received != 0 {
			t.Errorf("after cut h3 -> h1: %v %v, want all lost", p, err)
		}
		if p, err := h1.Ping(h2.IP, 3, "-i", "0.2"); err != nil || p.Loss() != 0 {
			t.Errorf("after cut h1 -> h2: %v %v, want no loss", p, err)
		}
		l.Restore(h1, h3)
		WaitFor(t, 10*time.Second, func() (bool, string) { return h1.Reaches(h3.IP) })

		c := l.AddContainer(h2, "c1")
		if r := c.Run(context.Background(), "ip", "-o", "link"); !r.OK() || strings.Contains(r.Stdout, "eth0") {
			t.Errorf("container netns should hold only lo: %s", r)
		}

		pcap := filepath.Join(t.TempDir(), "lan.pcap")
		dump, err := l.Start("tcpdump", "-i", Bridge, "-U", "-n", "-w", pcap, "udp", "port", "9999")
		if err != nil {
			t.Fatal(err)
		}
		// Wait until tcpdump has written its file header (it is listening).
		WaitFor(t, 10*time.Second, func() (bool, string) {
			fi, err := os.Stat(pcap)
			return err == nil && fi.Size() >= 24, "tcpdump not capturing yet"
		})
		pc, err := h2.ListenPacket("udp4", h2.IP+":9999")
		if err != nil {
			t.Fatal(err)
		}
		defer pc.Close()
		payload := make([]byte, 32)
		rand.Read(payload)
		payload = append([]byte("h8-pattern-"), payload...)
		conn, err := h1.Dial("udp4", h2.IP+":9999", time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := conn.Write(payload); err != nil {
			t.Fatal(err)
		}
		conn.Close()
		buf := make([]byte, 1500)
		pc.SetReadDeadline(time.Now().Add(5 * time.Second))
		n, _, err := pc.ReadFrom(buf)
		if err != nil || !bytes.Equal(buf[:n], payload) {
			t.Fatalf("h2 received %q, %v; want the payload h1 sent", buf[:n], err)
		}
		WaitFor(t, 10*time.Second, func() (bool, string) {
			pkts, err := ReadPcap(pcap)
			if err != nil {
				return false, err.Error()
			}
			for _, p := range pkts {
				if u, ok := p.UDP(); ok && bytes.Equal(u.Payload, payload) && u.DstPort == 9999 {
					return true, ""
				}
			}
			return false, "payload not in the LAN capture yet"
		})
		dump.Stop()

		// Re-send the captured datagram from h1 with a raw socket: h2
		// receives it a second time.
		pkts, _ := ReadPcap(pcap)
		var ip []byte
		for _, p := range pkts {
			if u, ok := p.UDP(); ok && bytes.Equal(u.Payload, payload) {
				ip = u.IP
			}
		}
		if err := h1.SendRawIP(ip); err != nil {
			t.Fatal(err)
		}
		pc.SetReadDeadline(time.Now().Add(5 * time.Second))
		n, _, err = pc.ReadFrom(buf)
		if err != nil || !bytes.Equal(buf[:n], payload) {
			t.Fatalf("replayed datagram: h2 received %q, %v", buf[:n], err)
		}

		data := make([]byte, 4<<20)
		rand.Read(data)
		if _, err := TCPTransfer(h1.Netns, h3.Netns, h3.IP, data, 30*time.Second); err != nil {
			t.Fatal(err)
		}
	})
	out, err := exec.Command("ip", "netns", "list").Output()
	if err != nil {
		t.Fatal(err)
	}
	if id != "" && strings.Contains(string(out), id+"-") {
		t.Errorf("namespaces of %s left after cleanup:\n%s", id, out)
	}
}
