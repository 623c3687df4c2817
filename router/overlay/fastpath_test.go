package overlay

import (
	"log/slog"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/weavelab/weave/mesh/handshake"
	"github.com/weavelab/weave/mesh/identity"
	"github.com/weavelab/weave/router/overlay/fastpathtest"
)

var _ FastPath = (*fastpathtest.Fake)(nil)

func TestFastStateMachine(t *testing.T) {
	const timeout = 3 * time.Second
	t0 := time.Unix(1000, 0)
	type step struct {
		at     time.Duration // since t0
		ping   bool          // a ping from the peer arrives
		pong   int           // a pong echoing the ping sent this many pings ago (0: none, 1: the last)
		wantUp bool
		reason string // substring of the reason when down
	}
	for _, tc := range []struct {
		name  string
		steps []step
	}{
		{"fresh", []step{{at: 0, reason: "not yet confirmed"}, {at: 2 * time.Second, reason: "not yet confirmed"}}},
		{"never answered", []step{{at: 4 * time.Second, reason: "either way"}}},
		{"both ways", []step{{at: 500 * time.Millisecond, ping: true, pong: 1, wantUp: true}}},
		{"ping only", []step{{at: 500 * time.Millisecond, ping: true, reason: "not yet confirmed"}, {at: 4 * time.Second, ping: true, reason: "not answered"}}},
		{"pong only", []step{{at: 500 * time.Millisecond, pong: 1, reason: "not yet confirmed"}, {at: 4 * time.Second, pong: 1, reason: "no VXLAN heartbeats from the peer"}}},
		{"falls back and returns", []step{
			{at: time.Second, ping: true, pong: 1, wantUp: true},
			{at: 3 * time.Second, wantUp: true},
			{at: 4100 * time.Millisecond, reason: "either way"},
			{at: 10 * time.Second, reason: "either way"},
			{at: 10500 * time.Millisecond, ping: true, pong: 1, wantUp: true},
		}},
		{"stale pong ignored", []step{{at: time.Second, ping: true, pong: beatWindow + 1, reason: "not yet confirmed"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := fastState{start: t0, secret: 0xabcd}
			for i, st := range tc.steps {
				now := t0.Add(st.at)
				var nonces []uint64
				for range beatWindow + 2 {
					nonces = append(nonces, s.nextPing())
				}
				if st.ping {
					s.onPing(now)
				}
				if st.pong > 0 {
					s.onPong(now, nonces[len(nonces)-st.pong])
				}
				up, _, reason := s.eval(now, timeout)
				if up != st.wantUp || (!up && !strings.Contains(reason, st.reason)) {
					t.Fatalf("step %d: up %v reason %q, want up %v reason ~%q", i, up, reason, st.wantUp, st.reason)
				}
			}
		})
	}
	t.Run("forged nonce", func(t *testing.T) {
		s := fastState{start: t0, secret: 7}
		n := s.nextPing()
		if s.onPong(t0, n^1<<40) || s.onPong(t0, 0) {
			t.Fatal("pong with another secret or sequence 0 counted")
		}
		if !s.onPong(t0, n) {
			t.Fatal("genuine pong refused")
		}
	})
}

func TestFastBeatCodec(t *testing.T) {
	b := fastBeat{Type: beatPong, Receiver: 0x01020304, Sender: 0x0a0b0c0d0e0f, Nonce: 0x1122334455667788}
	f := encodeBeatFrame(b)
	if len(f) != 60 || f[0] != 0x01 || f[5] != 0x0e || f[12] != 0x88 || f[13] != 0xb5 || f[6]&3 != 2 {
		t.Fatalf("frame header % x", f[:14])
	}
	got, err := decodeBeat(f[14:])
	if err != nil || got != b {
		t.Fatalf("round trip %+v %v", got, err)
	}
	for _, bad := range [][]byte{nil, f[14:30], append([]byte("XXXX"), f[18:]...)} {
		if _, err := decodeBeat(bad); err == nil {
			t.Fatalf("decoded % x", bad)
		}
	}
}

func FuzzDecodeBeat(f *testing.F) {
	f.Add(encodeBeatFrame(fastBeat{Type: beatPing, Receiver: 1, Sender: 2, Nonce: 3})[14:])
	f.Fuzz(func(t *testing.T, p []byte) {
		b, err := decodeBeat(p)
		if err != nil {
			return
		}
		again, err := decodeBeat(encodeBeatFrame(b)[14:])
		if err != nil || again != b {
			t.Fatalf("%+v -> %+v %v", b, again, err)
		}
	})
}

// TestFastProgrammer checks the programming decisions against a fake FDB:
// entries follow the MAC table's owners and the set of fast peers.
func TestFastProgrammer(t *testing.T) {
	fp := fastpathtest.NewNet().New(netip.MustParseAddrPort("10.0.0.1:6784"))
	p := newFastProgrammer(fp, slog.New(slog.DiscardHandler))
	macs := newMACTable(64)
	const us, b, c = identity.PeerName(1), identity.PeerName(2), identity.PeerName(3)
	ipB, ipC := netip.MustParseAddr("10.0.0.2"), netip.MustParseAddr("10.0.0.3")
	m1, m2, m3 := macKey(mac(2, 1)), macKey(mac(3, 1)), macKey(mac(1, 1))
	macs.learn(m1, b, 1)
	macs.learn(m2, c, 1)
	macs.learn(m3, us, 1)
	check := func(step string, want map[uint64]netip.Addr) {
		t.Helper()
		got := fp.Entries()
		if len(got) != len(want) {
			t.Fatalf("%s: entries %v, want %v", step, got, want)
		}
		for m, dst := range want {
			if got[macBytes(m)] != dst {
				t.Fatalf("%s: %x -> %v, want %v", step, m, got[macBytes(m)], dst)
			}
		}
	}
	p.apply(desiredEntries(macs, map[identity.PeerName]netip.Addr{b: ipB, c: ipC}))
	check("both peers fast", map[uint64]netip.Addr{m1: ipB, m2: ipC})
	p.apply(desiredEntries(macs, map[identity.PeerName]netip.Addr{b: ipB}))
	check("c left the fast path", map[uint64]netip.Addr{m1: ipB})
	macs.learn(m1, c, 2) // moved to c, which is not fast
	p.apply(desiredEntries(macs, map[identity.PeerName]netip.Addr{b: ipB}))
	check("moved to a sleeve peer", nil)
	p.apply(desiredEntries(macs, map[identity.PeerName]netip.Addr{b: ipB, c: ipC}))
	check("back", map[uint64]netip.Addr{m1: ipC, m2: ipC})
	macs.learn(m2, us, 3) // now local
	p.apply(desiredEntries(macs, map[identity.PeerName]netip.Addr{b: ipB, c: ipC}))
	check("moved here", map[uint64]netip.Addr{m1: ipC})
	// refresh: a used entry keeps its MAC, an idle one expires
	fp.SetAge(mac(2, 1), time.Second)
	now := time.Unix(0, 1e12)
	p.refresh(macs, now)
	if n := macs.expire(now.Add(-time.Minute).UnixNano()); n != 2 { // m2 (local, old) and m3 (old)
		t.Fatalf("expired %d, want 2", n)
	}
	p.apply(desiredEntries(macs, map[identity.PeerName]netip.Addr{b: ipB, c: ipC}))
	check("refreshed entry stays", map[uint64]netip.Addr{m1: ipC})
	macs.expire(now.Add(time.Hour).UnixNano())
	p.apply(desiredEntries(macs, map[identity.PeerName]netip.Addr{b: ipB, c: ipC}))
	check("aged out", nil)
	// a refused change is retried
	macs.learn(m1, b, 4)
	fp.FailSet = true
	p.apply(desiredEntries(macs, map[identity.PeerName]netip.Addr{b: ipB}))
	check("refused", nil)
	fp.FailSet = false
	p.apply(desiredEntries(macs, map[identity.PeerName]netip.Addr{b: ipB}))
	check("retried", map[uint64]netip.Addr{m1: ipB})
	p.clear()
	check("cleared", nil)
}

// fastHosts makes two overlays with fake fast paths on one fake Net.
func fastHosts(t *testing.T, fastA, fastB bool, suite handshake.Suite) (a, b *host, fa, fb *fastpathtest.Fake, n *fastpathtest.Net) {
	n = fastpathtest.NewNet()
	mk := func(i int, on bool) (*host, *fastpathtest.Fake) {
		var f *fastpathtest.Fake
		if on {
			f = n.New(netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, 0, 0, byte(i + 1)}), 6784))
		}
		h := newHost(t, i, func(c *Config) {
			if f != nil {
				c.FastPath = f
			}
			c.FastPathTimeout = 300 * time.Millisecond
		})
		return h, f
	}
	a, fa = mk(1, fastA)
	b, fb = mk(2, fastB)
	a.routes.unicast[b.name] = b.name
	b.routes.unicast[a.name] = a.name
	a.routes.broadcast[a.name] = []identity.PeerName{b.name}
	b.routes.broadcast[b.name] = []identity.PeerName{a.name}
	connect(t, a, b, suite)
	waitEstablished(t, a, b)
	return
}

func peerPath(h *host, p identity.PeerName) (path, reason string) {
	for _, ps := range h.ov.Stats().Peers {
		if ps.Peer == p {
			return ps.Path, ps.PathReason
		}
	}
	return "", ""
}

func waitPath(t *testing.T, h *host, p identity.PeerName, want, reason string) {
	t.Helper()
	deadline := time.Now().Add(safety)
	for {
		path, r := peerPath(h, p)
		if path == want && strings.Contains(r, reason) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("host %s: path to %s is %s (%q), want %s (~%q)", h.name, p, path, r, want, reason)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestFastPathOverFakes runs the whole cycle over fakes: heartbeats bring
// the path up, learnt MACs get entries, a blocked VXLAN port drops back to
// the sleeve (frames still flow, entries go), unblocking brings it back, a
// multi-hop route takes entries away.
func TestFastPathOverFakes(t *testing.T) {
	a, b, fa, fb, n := fastHosts(t, true, true, 0)
	waitPath(t, a, b.name, PathFastDP, "")
	waitPath(t, b, a.name, PathFastDP, "")
	// learn each side's container MAC over the sleeve (as an ARP would)
	a.inject(t, ethFrame(broadcastMAC, mac(1, 1), 1, 60))
	b.expect(t, 1)
	b.inject(t, ethFrame(mac(1, 1), mac(2, 1), 2, 60))
	a.expect(t, 2)
	hasEntry := func(f *fastpathtest.Fake, m []byte, dst string) func() bool {
		return func() bool { return f.Entries()[[6]byte(m)] == netip.MustParseAddr(dst) }
	}
	waitFor(t, hasEntry(fa, mac(2, 1), "127.0.0.3"))
	waitFor(t, hasEntry(fb, mac(1, 1), "127.0.0.2"))

	n.Block(netip.MustParseAddrPort("127.0.0.3:6784"), true)
	waitPath(t, a, b.name, PathSleeve, "heartbeats failing")
	waitPath(t, b, a.name, PathSleeve, "heartbeats failing")
	waitFor(t, func() bool { return len(fa.Entries()) == 0 && len(fb.Entries()) == 0 })
	a.inject(t, ethFrame(mac(2, 1), mac(1, 1), 3, 60)) // still delivered over the sleeve
	b.expect(t, 3)

	n.Block(netip.MustParseAddrPort("127.0.0.3:6784"), false)
	waitPath(t, a, b.name, PathFastDP, "")
	waitFor(t, hasEntry(fa, mac(2, 1), "127.0.0.3"))

	a.routes.setUnicast(b.name, identity.PeerName(99)) // now through another peer
	waitFor(t, func() bool { return len(fa.Entries()) == 0 })
	waitPath(t, a, b.name, PathSleeve, "not direct")
}

func TestFastPathRefused(t *testing.T) {
	t.Run("no-fastdp here", func(t *testing.T) {
		a, b, _, _, _ := fastHosts(t, false, true, 0)
		waitPath(t, a, b.name, PathSleeve, "--no-fastdp")
		waitPath(t, b, a.name, PathSleeve, "the peer has no fast path")
	})
	t.Run("encrypted", func(t *testing.T) {
		a, b, fa, _, _ := fastHosts(t, true, true, handshake.SuiteAESGCM)
		a.inject(t, ethFrame(broadcastMAC, mac(1, 1), 1, 60))
		b.expect(t, 1)
		b.inject(t, ethFrame(mac(1, 1), mac(2, 1), 2, 60))
		a.expect(t, 2)
		time.Sleep(100 * time.Millisecond)
		waitPath(t, a, b.name, PathSleeve, "encrypted")
		waitPath(t, b, a.name, PathSleeve, "encrypted")
		if len(fa.Entries()) != 0 {
			t.Fatalf("entries on an encrypted connection: %v", fa.Entries())
		}
	})
}
