package e2e

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/weavelab/weave/router/api"
	"github.com/weavelab/weave/test/harness"
)

// twoHosts launches h1 and h2 (with password pw, if any) connected to
// each other, with container c1 (10.2.1.1/24) on h1 and c2 (10.2.1.2/24)
// on h2 that reach each other.
func twoHosts(t *testing.T, pw string) (l *harness.LAN, h1, h2 *harness.Host, c1, c2 *harness.Container) {
	t.Helper()
	return twoHostsWith(t, pw)
}

// twoHostsWith is twoHosts with extra launch flags for both routers.
func twoHostsWith(t *testing.T, pw string, flags ...string) (l *harness.LAN, h1, h2 *harness.Host, c1, c2 *harness.Container) {
	t.Helper()
	l = harness.New(t)
	h1, h2 = l.AddHost("h1"), l.AddHost("h2")
	h1.Password, h2.Password = pw, pw
	h1.Launch(flags...)
	h2.Launch(append(slices.Clone(flags), h1.IP)...)
	waitMesh(t, h1, h2)
	c1, c2 = l.AddContainer(h1, "c1"), l.AddContainer(h2, "c2")
	if got := c1.Attach("10.2.1.1/24"); len(got) != 1 || strings.Split(got[0], "/")[0] != "10.2.1.1" {
		t.Errorf("attach printed %q, want the address 10.2.1.1", got)
	}
	c2.Attach("10.2.1.2/24")
	harness.WaitFor(t, reachTimeout, func() (bool, string) { return c1.Reaches("10.2.1.2") })
	harness.WaitFor(t, reachTimeout, func() (bool, string) { return c2.Reaches("10.2.1.1") })
	return l, h1, h2, c1, c2
}

// pattern returns n bytes made of a marker unique to this call, repeated,
// and the marker.
func pattern(n int) (data, marker []byte) {
	b := make([]byte, 12)
	rand.Read(b)
	marker = []byte("H8MARK" + hex.EncodeToString(b))
	return bytes.Repeat(marker, n/len(marker)+1)[:n], marker
}

// trafficBothWays pings and transfers 8 MiB over TCP in each direction.
func trafficBothWays(t *testing.T, c1, c2 *harness.Container, ip1, ip2 string) {
	t.Helper()
	for _, p := range []struct {
		from, to *harness.Container
		toIP     string
	}{{c1, c2, ip2}, {c2, c1, ip1}} {
		ps, err := p.from.Ping(p.toIP, 20, "-i", "0.05")
		if err != nil || ps.Loss() != 0 {
			t.Errorf("%s -> %s: %v %v", p.from.CName, p.toIP, ps, err)
		}
		data := make([]byte, 8<<20)
		rand.Read(data)
		took, err := harness.TCPTransfer(p.from.Netns, p.to.Netns, p.toIP, data, 60*time.Second)
		if err != nil {
			t.Errorf("TCP %s -> %s: %v", p.from.CName, p.toIP, err)
		} else {
			t.Logf("TCP %s -> %s: 8 MiB in %v (%.0f Mbit/s)", p.from.CName, p.toIP, took.Round(time.Millisecond),
				float64(len(data))*8/took.Seconds()/1e6)
		}
	}
}

// TestTwoHosts: containers on two hosts ping and move data over TCP both
// ways, at the default container MTU; without a password the LAN carries
// the payload in the clear (which shows the capture in TestEncrypted
// could see it).
func TestTwoHosts(t *testing.T) {
	t.Parallel()
	l, h1, h2, c1, c2 := twoHosts(t, "")
	r := c1.Run(context.Background(), "cat", "/sys/class/net/ethwe/mtu")
	if strings.TrimSpace(r.Stdout) != "1376" {
		t.Errorf("ethwe MTU %q (%v), want the default 1376 on a 1500 LAN", strings.TrimSpace(r.Stdout), r.Err)
	}
	trafficBothWays(t, c1, c2, "10.2.1.1", "10.2.1.2")
	noOversizeDrops(t, h1, h2)
	if out := h1.MustWeave("ps"); !strings.Contains(out, "10.2.1.1/24") {
		t.Errorf("weave ps on h1 = %q, want c1's 10.2.1.1/24", out)
	}

	data, marker := pattern(1 << 20)
	pkts := captureDuring(t, l, func() {
		if _, err := harness.TCPTransfer(c1.Netns, c2.Netns, "10.2.1.2", data, 60*time.Second); err != nil {
			t.Fatal(err)
		}
	})
	if n := countContaining(pkts, marker); n == 0 {
		t.Errorf("plain overlay: marker not in any of %d captured LAN datagrams", len(pkts))
	}
}

// noOversizeDrops checks that no router dropped a frame for its size:
// at the default MTU every frame fits the overlay.
func noOversizeDrops(t *testing.T, hs ...*harness.Host) {
	t.Helper()
	for _, h := range hs {
		if n := drops(t, h, []string{"oversize"}); n != 0 {
			t.Errorf("%s dropped %d oversize frames at the default MTU", h.HostName, n)
		}
	}
}

// captureDuring captures the overlay's UDP datagrams on the LAN bridge
// while fn runs.
func captureDuring(t *testing.T, l *harness.LAN, fn func()) []harness.UDP {
	t.Helper()
	file := t.TempDir() + "/lan.pcap"
	dump, err := l.Start("tcpdump", "-i", harness.Bridge, "-U", "-n", "-w", file, "udp", "port", "6783", "or", "udp", "port", "6784") // 6784: the kernel fast path
	if err != nil {
		t.Fatal(err)
	}
	harness.WaitFor(t, 10*time.Second, func() (bool, string) {
		_, err := harness.ReadPcap(file) // fails until tcpdump wrote its header
		return err == nil, fmt.Sprint("tcpdump not capturing yet: ", err)
	})
	fn()
	// Wait for the capture of the transfer's tail to reach the file.
	time.Sleep(200 * time.Millisecond)
	r := dump.Stop()
	pk, err := harness.ReadPcap(file)
	if err != nil {
		t.Fatalf("read capture: %v (%s)", err, r)
	}
	var out []harness.UDP
	for _, p := range pk {
		if u, ok := p.UDP(); ok {
			out = append(out, u)
		}
	}
	return out
}

func countContaining(pkts []harness.UDP, marker []byte) int {
	n := 0
	for _, u := range pkts {
		if bytes.Contains(u.Payload, marker) {
			n++
		}
	}
	return n
}

// TestIsolation: containers in different subnets cannot reach each
// other; a container with an address in each reaches both.
func TestIsolation(t *testing.T) {
	t.Parallel()
	l, _, h2, c1, _ := twoHosts(t, "")
	c3 := l.AddContainer(h2, "c3")
	c3.Attach("10.2.2.3/24")
	for _, p := range []struct {
		from *harness.Container
		to   string
	}{{c3, "10.2.1.1"}, {c1, "10.2.2.3"}} {
		if ps, _ := p.from.Ping(p.to, 3, "-i", "0.2"); ps.Received != 0 {
			t.Errorf("%s reached %s in another subnet: %v", p.from.CName, p.to, ps)
		}
	}
	c4 := l.AddContainer(h2, "c4")
	c4.Attach("10.2.1.4/24", "10.2.2.4/24")
	harness.WaitFor(t, reachTimeout, func() (bool, string) { return c4.Reaches("10.2.1.1") })
	harness.WaitFor(t, reachTimeout, func() (bool, string) { return c4.Reaches("10.2.2.3") })
}

// TestMultiHop: with the LAN cut between h1 and h3, h1's container
// reaches h3's through h2, without loss.
func TestMultiHop(t *testing.T) {
	t.Parallel()
	l := harness.New(t)
	h1, h2, h3 := l.AddHost("h1"), l.AddHost("h2"), l.AddHost("h3")
	l.Cut(h1, h3)
	h1.Launch()
	h2.Launch(h1.IP)
	h3.Launch(h2.IP)
	waitConnections(t, map[*harness.Host][]*harness.Host{h1: {h2}, h2: {h1, h3}, h3: {h2}})
	waitKnows(t, h1, h1, h2, h3)
	c1, c3 := l.AddContainer(h1, "c1"), l.AddContainer(h3, "c3")
	c1.Attach("10.2.1.1/24")
	c3.Attach("10.2.1.3/24")
	harness.WaitFor(t, reachTimeout, func() (bool, string) { return c1.Reaches("10.2.1.3") })
	ps, err := c1.Ping("10.2.1.3", 100, "-i", "0.01")
	if err != nil || ps.Received != 100 {
		t.Errorf("c1 -> c3 through h2: %v %v; want 100 of 100", ps, err)
	}
	t.Logf("c1 -> c3 via h2: %v", ps)
	// h1 learnt h3 by gossip and tries it; status says why that fails.
	harness.WaitFor(t, convergeTimeout, func() (bool, string) {
		var conns []api.Connection
		var targets []api.Target
		if err := h1.StatusJSON("connections", &conns); err != nil {
			return false, err.Error()
		}
		if err := h1.StatusJSON("targets", &targets); err != nil {
			return false, err.Error()
		}
		for _, c := range conns {
			if strings.HasPrefix(c.Addr, h3.IP+":") && c.State != api.StateEstablished && c.Reason != "" {
				return true, ""
			}
		}
		for _, tg := range targets {
			if strings.HasPrefix(tg.Addr, h3.IP+":") && tg.LastError != "" {
				return true, ""
			}
		}
		return false, fmt.Sprintf("h1 shows no failed attempt to h3 with a reason: connections %+v, targets %+v", conns, targets)
	})
	h1.Weave("status", "connections")
}

// TestBroadcast: in a full mesh of three hosts (a triangle, where naive
// flooding would duplicate), each broadcast from c1 reaches every other
// container exactly once.
func TestBroadcast(t *testing.T) {
	t.Parallel()
	l := harness.New(t)
	h1, h2, h3 := l.AddHost("h1"), l.AddHost("h2"), l.AddHost("h3")
	h1.Launch()
	h2.Launch(h1.IP)
	h3.Launch(h1.IP)
	waitMesh(t, h1, h2, h3)
	c1 := l.AddContainer(h1, "c1")
	c1.Attach("10.2.1.1/24")
	var rcv []*harness.Container
	for i, h := range []*harness.Host{h2, h3, h3} {
		c := l.AddContainer(h, fmt.Sprintf("c%d", i+2))
		ip := fmt.Sprintf("10.2.1.%d", i+2)
		c.Attach(ip + "/24")
		rcv = append(rcv, c)
		harness.WaitFor(t, reachTimeout, func() (bool, string) { return c1.Reaches(ip) })
	}

	const port, n = 9977, 5
	var (
		mu  sync.Mutex
		got = map[string][]string{}
		wg  sync.WaitGroup
	)
	for _, c := range rcv {
		pc, err := c.ListenPacket("udp4", fmt.Sprintf("0.0.0.0:%d", port))
		if err != nil {
			t.Fatal(err)
		}
		defer pc.Close()
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]byte, 2048)
			for {
				pc.SetReadDeadline(time.Now().Add(3 * time.Second))
				k, _, err := pc.ReadFrom(buf)
				if err != nil {
					return
				}
				mu.Lock()
				got[c.CName] = append(got[c.CName], string(buf[:k]))
				mu.Unlock()
			}
		}()
	}
	_, marker := pattern(0)
	conn, err := c1.Dial("udp4", fmt.Sprintf("10.2.1.255:%d", port), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	for i := range n {
		if _, err := conn.Write([]byte(fmt.Sprintf("%s-%d", marker, i))); err != nil {
			t.Fatal(err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	conn.Close()
	// Each reader stops 3 s after its last datagram: late duplicates count.
	wg.Wait()
	for _, c := range rcv {
		seen := map[string]int{}
		for _, m := range got[c.CName] {
			if strings.HasPrefix(m, string(marker)) {
				seen[m]++
			}
		}
		if len(seen) != n {
			t.Errorf("%s on %s got %d of %d broadcasts", c.CName, c.Host.HostName, len(seen), n)
		}
		for m, k := range seen {
			if k != 1 {
				t.Errorf("%s on %s got broadcast %q %d times, want once", c.CName, c.Host.HostName, m, k)
			}
		}
	}
}
