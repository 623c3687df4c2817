package e2e

import (
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/weavelab/weave/mesh/handshake"
	"github.com/weavelab/weave/router/api"
	"github.com/weavelab/weave/test/harness"
)

// TestEncrypted: with a password traffic flows as without, the LAN never
// shows the payload, and a captured datagram sent again (replayed) or
// altered (forged) is dropped and counted by the receiver.
//
// It runs for each --cipher: auto (AES-256-GCM here, where the CPU has AES
// hardware), nacl (ChaCha20-Poly1305) and aes-gcm, and checks that both
// routers report the suite on the connection.
func TestEncrypted(t *testing.T) {
	t.Parallel()
	auto := "chacha20-poly1305"
	if handshake.HardwareAES() {
		auto = "aes-256-gcm"
	}
	for _, tc := range []struct{ cipher, suite string }{
		{"auto", auto}, {"nacl", "chacha20-poly1305"}, {"aes-gcm", "aes-256-gcm"},
	} {
		t.Run(tc.cipher, func(t *testing.T) {
			t.Parallel()
			testEncrypted(t, tc.suite, "--cipher", tc.cipher)
		})
	}
}

// connCiphers returns the cipher of each of h's connections.
func connCiphers(t *testing.T, h *harness.Host) []string {
	t.Helper()
	var conns []api.Connection
	if err := h.StatusJSON("connections", &conns); err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, c := range conns {
		if c.State == "established" {
			out = append(out, c.Cipher)
		}
	}
	return out
}

func testEncrypted(t *testing.T, suite string, flags ...string) {
	l, h1, h2, c1, c2 := twoHostsWith(t, "h8-correct-horse-battery-staple", flags...)
	for _, h := range []*harness.Host{h1, h2} {
		st, err := h.Status()
		if err != nil || !st.Encryption {
			t.Errorf("%s status: encryption %v (%v), want true", h.HostName, st.Encryption, err)
		}
		if got := connCiphers(t, h); len(got) != 1 || got[0] != suite {
			t.Errorf("%s: connection ciphers %q, want [%s]", h.HostName, got, suite)
		}
		// The text forms: the summary counts the suites in use, the
		// connection's line names its suite.
		if out := h.MustWeave("status"); !strings.Contains(out, "in use: 1 "+suite+"\n") {
			t.Errorf("%s: weave status does not show the suite %s:\n%s", h.HostName, suite, out)
		}
		if out := h.MustWeave("status", "connections"); !strings.Contains(out, "established") || !strings.Contains(out, suite) {
			t.Errorf("%s: weave status connections does not show the suite %s:\n%s", h.HostName, suite, out)
		}
	}
	trafficBothWays(t, c1, c2, "10.2.1.1", "10.2.1.2")
	noOversizeDrops(t, h1, h2)

	data, marker := pattern(1 << 20)
	pkts := captureDuring(t, l, func() {
		if _, err := harness.TCPTransfer(c1.Netns, c2.Netns, "10.2.1.2", data, 60*time.Second); err != nil {
			t.Fatal(err)
		}
	})
	// With UDP offload on (the default) the capture holds super-packets
	// of several datagrams; the marker check reads them whole, the replay
	// and forgery checks below use single datagrams cut out of them.
	if n := countContaining(pkts, marker); n != 0 {
		t.Errorf("encrypted overlay: marker in %d of %d captured LAN packets", n, len(pkts))
	}
	captured := len(pkts)
	pkts, cut := splitDatagrams(pkts)
	t.Logf("captured %d packets: %d overlay datagrams, %d cut out of super-packets (UDP GSO)",
		captured, len(pkts), countTrue(cut))
	if len(pkts) < 100 {
		t.Fatalf("captured only %d overlay datagrams for a 1 MiB transfer", len(pkts))
	}

	// A frames datagram (version 1, type 1) from h1 to h2; one cut out
	// of a super-packet when there are any, so a wrong cut shows as auth
	// drops instead of replay drops.
	src, dst := netip.MustParseAddr(h1.IP).As4(), netip.MustParseAddr(h2.IP).As4()
	var victim harness.UDP
	victimCut := false
	for i, u := range pkts {
		if u.Src == src && u.Dst == dst && u.DstPort == 6783 && len(u.Payload) > 200 &&
			u.Payload[0] == 1 && u.Payload[1] == 1 && (cut[i] || !victimCut) {
			victim, victimCut = u, cut[i]
		}
	}
	t.Logf("victim datagram: %d bytes, cut out of a super-packet: %v", len(victim.Payload), victimCut)
	if victim.IP == nil {
		t.Fatalf("no frames datagram from h1 to h2 among %d captured", len(pkts))
	}

	for _, tc := range []struct {
		name    string
		reasons []string
		mangle  func(ip []byte)
	}{
		{"replayed", []string{"replay", "too_old"}, func([]byte) {}},
		// A fresh counter (so the replay window lets it through to the
		// AEAD) and a flipped ciphertext byte.
		{"forged", []string{"auth"}, func(ip []byte) {
			ctr := ip[int(ip[0]&0x0f)*4+8+16:][:8]
			binary.BigEndian.PutUint64(ctr, binary.BigEndian.Uint64(ctr)+1<<16)
			ip[len(ip)-20] ^= 0x40
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := drops(t, h2, tc.reasons)
			pkt := bytes.Clone(victim.IP)
			tc.mangle(pkt)
			for range 3 {
				if err := h1.SendRawIP(pkt); err != nil {
					t.Fatal(err)
				}
			}
			harness.WaitFor(t, 10*time.Second, func() (bool, string) {
				after := drops(t, h2, tc.reasons)
				return after >= before+3, fmt.Sprintf("h2 drops %v: %d before, %d now; want 3 more", tc.reasons, before, after)
			})
		})
	}
	// The connection survives the attack.
	if ps, err := c1.Ping("10.2.1.2", 10, "-i", "0.05"); err != nil || ps.Loss() != 0 {
		t.Errorf("after replay and forgery: %v %v", ps, err)
	}
}

// drops sums h's drop counters for the reasons: every "drops" object
// (reason -> count) anywhere in `weave report`, whose layout of data-plane
// counters may change.
func drops(t *testing.T, h *harness.Host, reasons []string) uint64 {
	t.Helper()
	var n uint64
	walkReport(t, h, func(k string, x any) bool {
		d, ok := x.(map[string]any)
		if !ok || !strings.EqualFold(k, "drops") {
			return false
		}
		for reason, c := range d {
			if f, ok := c.(float64); ok && slices.ContainsFunc(reasons, func(w string) bool {
				return strings.EqualFold(w, reason)
			}) {
				n += uint64(f)
			}
		}
		return true
	})
	return n
}

// walkReport calls visit for every key and value of every object anywhere
// in h's `weave report`, descending into the value unless visit says it
// took it.
func walkReport(t *testing.T, h *harness.Host, visit func(k string, v any) bool) {
	t.Helper()
	r := h.WeaveQuiet("report")
	if !r.OK() {
		t.Fatalf("weave report: %s", r)
	}
	var doc any
	if err := json.Unmarshal([]byte(r.Stdout), &doc); err != nil {
		t.Fatalf("weave report: %v", err)
	}
	var walk func(v any)
	walk = func(v any) {
		switch v := v.(type) {
		case map[string]any:
			for k, x := range v {
				if !visit(k, x) {
					walk(x)
				}
			}
		case []any:
			for _, x := range v {
				walk(x)
			}
		}
	}
	walk(doc)
}

// TestMTU: a container that raises its MTU above the overlay's still gets
// its traffic through.
//
// On the userspace path (sleeve) the router fragments, or sends ICMP
// "fragmentation needed" and the sender adapts, even when only one end
// raised its MTU. On the kernel fast path the VXLAN device answers an
// oversized DF packet with "fragmentation needed" for the underlay's MTU
// less the VXLAN headers, so senders adapt as long as the receiving
// container's MTU is at least that (here both raise theirs to 1500); a
// receiver left at the overlay MTU gets only what TCP's MSS already limits
// (see the README's fast path section).
func TestMTU(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name  string
		flags []string
		raise []int // which of c1, c2 get MTU 1500
	}{
		{"sleeve", []string{"--no-fastdp"}, []int{0}},
		{"fastdp", nil, []int{0, 1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, h1, _, c1, c2 := twoHostsWith(t, "", tc.flags...)
			// The transfers must run on the path under test: wait for the
			// fast path's heartbeats to confirm it first.
			onPath := func() (bool, string) {
				var conns []api.Connection
				if err := h1.StatusJSON("connections", &conns); err != nil {
					return false, err.Error()
				}
				for _, c := range conns {
					if c.State == "established" && c.Path != tc.name {
						return false, fmt.Sprintf("h1's connection is on path %q (%s), want %s", c.Path, c.PathReason, tc.name)
					}
				}
				return len(conns) > 0, fmt.Sprintf("h1 has no connection: %+v", conns)
			}
			harness.WaitFor(t, reachTimeout, onPath)
			cs := []*harness.Container{c1, c2}
			for _, i := range tc.raise {
				if r := cs[i].Run(t.Context(), "ip", "link", "set", "ethwe", "mtu", "1500"); !r.OK() {
					t.Fatalf("raise %s MTU: %s", cs[i].CName, r)
				}
			}
			harness.WaitFor(t, reachTimeout, func() (bool, string) {
				p, err := c1.Ping("10.2.1.2", 1, "-s", "1450")
				return err == nil && p.Received == 1, fmt.Sprintf("1450-byte ping from c1 (MTU 1500): %v %v", p, err)
			})
			data, _ := pattern(4 << 20)
			for _, p := range [][2]*harness.Container{{c1, c2}, {c2, c1}} {
				ip := map[*harness.Container]string{c1: "10.2.1.1", c2: "10.2.1.2"}[p[1]]
				if _, err := harness.TCPTransfer(p[0].Netns, p[1].Netns, ip, data, 60*time.Second); err != nil {
					t.Errorf("TCP %s -> %s with raised MTUs: %v", p[0].CName, p[1].CName, err)
				}
			}
			if ok, msg := onPath(); !ok {
				t.Errorf("after the transfers: %s", msg)
			}
		})
	}
}

// TestFreshKeysOnLiveConnections: with a password each connection runs a
// fresh ephemeral key exchange every --key-exchange-interval; traffic flows
// across the switches without a lost ping or a corrupted byte, and both
// routers report the data key epoch moving on.
func TestFreshKeysOnLiveConnections(t *testing.T) {
	t.Parallel()
	_, h1, h2, c1, c2 := twoHostsWith(t, "h8-fresh-keys", "--key-exchange-interval", "1s")
	done := make(chan error, 1)
	go func() {
		data := make([]byte, 64<<20)
		rand.Read(data)
		_, err := harness.TCPTransfer(c1.Netns, c2.Netns, "10.2.1.2", data, 120*time.Second)
		done <- err
	}()
	ps, err := c2.Ping("10.2.1.1", 300, "-i", "0.02")
	if err != nil || ps.Loss() != 0 {
		t.Errorf("ping across key exchanges: %v %v", ps, err)
	}
	if err := <-done; err != nil {
		t.Errorf("TCP transfer across key exchanges: %v", err)
	}
	for _, h := range []*harness.Host{h1, h2} {
		if e := keyEpoch(t, h); e < 3 {
			t.Errorf("%s: data key epoch %d after 6 s with a 1 s exchange interval, want >= 3", h.HostName, e)
		} else {
			t.Logf("%s: data key epoch %d", h.HostName, e)
		}
	}
	noOversizeDrops(t, h1, h2)
}

// keyEpoch returns the largest "key_epoch" anywhere in h's `weave report`.
func keyEpoch(t *testing.T, h *harness.Host) uint64 {
	t.Helper()
	var best uint64
	walkReport(t, h, func(k string, x any) bool {
		if f, ok := x.(float64); ok && k == "key_epoch" && uint64(f) > best {
			best = uint64(f)
		}
		return false
	})
	return best
}

// TestCipherNegotiation: a router forced to nacl and one on auto settle on
// ChaCha20-Poly1305; aes-gcm against nacl is refused, with a log line on
// both sides naming the ciphers each accepts.
func TestCipherNegotiation(t *testing.T) {
	t.Parallel()
	t.Run("nacl-auto", func(t *testing.T) {
		t.Parallel()
		l := harness.New(t)
		h1, h2 := l.AddHost("h1"), l.AddHost("h2")
		h1.Password, h2.Password = "h8-ciphers", "h8-ciphers"
		h1.Launch("--cipher", "nacl")
		h2.Launch(h1.IP)
		waitMesh(t, h1, h2)
		for _, h := range []*harness.Host{h1, h2} {
			if got := connCiphers(t, h); len(got) != 1 || got[0] != "chacha20-poly1305" {
				t.Errorf("%s: ciphers %q, want [chacha20-poly1305]", h.HostName, got)
			}
		}
	})
	t.Run("aes-gcm-nacl", func(t *testing.T) {
		t.Parallel()
		l := harness.New(t)
		h1, h2 := l.AddHost("h1"), l.AddHost("h2")
		h1.Password, h2.Password = "h8-ciphers", "h8-ciphers"
		h1.Launch("--cipher", "aes-gcm")
		h2.Launch("--cipher", "nacl", h1.IP)
		const why = "no data cipher in common"
		harness.WaitFor(t, convergeTimeout, func() (bool, string) {
			return strings.Contains(h1.Log(), why) && strings.Contains(h2.Log(), why), "no log line saying why on both sides yet"
		})
		for _, h := range []*harness.Host{h1, h2} {
			for _, line := range strings.Split(h.Log(), "\n") {
				if strings.Contains(line, why) {
					t.Logf("%s log: %s", h.HostName, line)
					break
				}
			}
			if got, err := established(h); err != nil || len(got) != 0 {
				t.Errorf("%s connected to %v (%v) with no cipher in common", h.HostName, got, err)
			}
		}
		// Both ends' status says why: the dialler's failed attempt, and
		// on the listener one failed inbound line for the dialler's
		// address (not one per attempt).
		for _, h := range []*harness.Host{h1, h2} {
			harness.WaitFor(t, convergeTimeout, func() (bool, string) {
				r := h.WeaveQuiet("status", "connections")
				return strings.Contains(r.Stdout, "failed") && strings.Contains(r.Stdout, why),
					fmt.Sprintf("%s's weave status connections does not say %q: %s", h.HostName, why, r)
			})
		}
		if n := strings.Count(h1.MustWeave("status", "connections"), why); n != 1 {
			t.Errorf("h1's weave status connections says %q %d times, want once (one line per source)", why, n)
		}
	})
}
