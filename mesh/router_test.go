package mesh

import (
	"errors"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/weavelab/weave/mesh/handshake"
	"github.com/weavelab/weave/mesh/identity"
	"github.com/weavelab/weave/mesh/meshtest"
	"github.com/weavelab/weave/mesh/topology"
)

func TestTwoPeers(t *testing.T) {
	s := newSim(t)
	a, b := s.start(0, nil), s.start(1, nil)
	s.connect(0, 1)
	waitFor(t, 10*time.Second, "a and b connected", func() bool {
		return connected(a, name(1)) && connected(b, name(0))
	})
	waitFor(t, 10*time.Second, "routes both ways", func() bool {
		n1, ok1 := a.Routes().Unicast(name(1))
		n0, ok0 := b.Routes().Unicast(name(0))
		return ok1 && ok0 && n1 == name(1) && n0 == name(0)
	})
	st := a.Status()
	if st.Encryption {
		t.Error("status says encrypted without a password")
	}
	if len(st.Peers) != 2 || st.Port != DefaultPort {
		t.Errorf("status: %d peers, port %d; want 2 peers, port %d", len(st.Peers), st.Port, DefaultPort)
	}
	if len(st.Targets) != 1 || st.Targets[0].Addr != addrOf(1) || st.Targets[0].State != TargetConnected {
		t.Errorf("targets = %+v, want %s connected", st.Targets, addrOf(1))
	}
	var c ConnectionStatus
	for _, x := range st.Connections {
		if x.State == StateEstablished {
			c = x
		}
	}
	if c.Peer != b.Peer() || !c.Outbound || c.Addr != addrOf(1) {
		t.Errorf("connection = %+v, want outbound established to %s at %s", c, b.Peer(), addrOf(1))
	}
	// b learnt a's listen address (not the ephemeral port of the inbound
	// connection) and reports it in its topology entry.
	bp := b.Status().Peers
	for _, p := range bp {
		if p.Name == name(1) {
			if len(p.Conns) != 1 || p.Conns[0].RemoteAddr != addrOf(0) {
				t.Errorf("b's conns = %+v, want a at %s", p.Conns, addrOf(0))
			}
		}
	}
}

func TestSimultaneousConnectKeepsOne(t *testing.T) {
	s := newSim(t)
	a, b := s.start(0, nil), s.start(1, nil)
	s.connect(0, 1)
	s.connect(1, 0)
	waitFor(t, 10*time.Second, "a and b connected", func() bool {
		return connected(a, name(1)) && connected(b, name(0))
	})
	for _, r := range []*Router{a, b} {
		n := 0
		for _, c := range r.Status().Connections {
			if c.State != StateFailed {
				n++
			}
		}
		waitFor(t, 10*time.Second, "one live connection", func() bool {
			n = 0
			for _, c := range r.Status().Connections {
				if c.State != StateFailed {
					n++
				}
			}
			return n == 1
		})
		us, _ := r.Routes().Distance(r.Peer().Name)
		if us != 0 {
			t.Errorf("distance to self %d", us)
		}
	}
}

// TestSamePeerListOnEveryHost: each router is given every address, its own
// included, as when one peer list is handed to every host. Each finds its
// own address to be itself after one try and shows it once, as a target in
// state self; the duplicate connections between the two (each dials the
// other) resolve to one without a failure; status has no failed lines.
func TestSamePeerListOnEveryHost(t *testing.T) {
	s := newSim(t)
	a := s.start(0, func(c *Config) { c.BackoffBase, c.BackoffMax = time.Millisecond, 5*time.Millisecond })
	b := s.start(1, func(c *Config) { c.BackoffBase, c.BackoffMax = time.Millisecond, 5*time.Millisecond })
	s.connect(0, 0, 1)
	s.connect(1, 0, 1)
	for i, r := range []*Router{a, b} {
		waitFor(t, 10*time.Second, "self target found", func() bool {
			for _, tg := range r.Status().Targets {
				if tg.Addr == addrOf(i) {
					return tg.State == TargetSelf
				}
			}
			return false
		})
	}
	waitFor(t, 10*time.Second, "a and b connected", func() bool { return connected(a, name(1)) && connected(b, name(0)) })
	// Long enough for many retries at this backoff, were there any.
	time.Sleep(100 * time.Millisecond)
	for i, r := range []*Router{a, b} {
		if n := s.net.Dials(addrOf(i)); n > 2 { // its own dial, and the other's
			t.Errorf("router %d's address dialled %d times", i, n)
		}
		st := r.Status()
		selfs := 0
		for _, c := range st.Connections {
			switch c.State {
			case StateFailed:
				t.Errorf("router %d: failed connection in status: %+v", i, c)
			case StateSelf:
				if selfs++; c.Addr != addrOf(i) {
					t.Errorf("router %d: self connection at %s", i, c.Addr)
				}
			}
		}
		if selfs != 1 {
			t.Errorf("router %d: %d self lines in status, want 1", i, selfs)
		}
		states := map[string]string{}
		for _, tg := range st.Targets {
			states[tg.Addr] = tg.State
		}
		if want := map[string]string{addrOf(i): TargetSelf, addrOf(1 - i): TargetConnected}; !maps.Equal(states, want) {
			t.Errorf("router %d targets %v, want %v", i, states, want)
		}
		// Connect again with the same list: the self target stays put.
		if err := r.Connect([]string{addrOf(0), addrOf(1)}, false); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(50 * time.Millisecond)
	for i := range 2 {
		if n := s.net.Dials(addrOf(i)); n > 2 {
			t.Errorf("router %d's address dialled %d times after a second Connect", i, n)
		}
	}
	if len(a.Routes().Reachable()) != 1 {
		t.Errorf("a reaches %v, want just b", a.Routes().Reachable())
	}
}

func TestDuplicatePeerNameRefused(t *testing.T) {
	s := newSim(t)
	a := s.start(0, nil)
	s.start(1, nil)
	// Peer 2 is a second run of peer 1 (its key, so its name) with another
	// UID, as when a state dir is copied to a second host.
	s.start(2, func(c *Config) { c.Key = meshtest.Key(1); c.Peer.Name = name(1); c.Peer.UID = 99 })
	s.connect(0, 1)
	waitFor(t, 10*time.Second, "a connected to 1", func() bool { return connected(a, name(1)) })
	s.connect(0, 2)
	waitFor(t, 10*time.Second, "impostor refused", func() bool {
		for _, c := range a.Status().Connections {
			if c.State == StateFailed && strings.Contains(c.Reason, errPeerName.Error()) {
				return true
			}
		}
		return false
	})
	if !connected(a, name(1)) {
		t.Error("lost the first connection to the name")
	}
}

func TestPassword(t *testing.T) {
	k1, k2 := &handshake.PSK{1}, &handshake.PSK{2}
	for _, tc := range []struct {
		name   string
		ka, kb *handshake.PSK
		want   error // nil: connects
	}{
		{"same", k1, k1, nil},
		{"different", k1, k2, handshake.ErrWrongPassword},
		{"only one", k1, nil, handshake.ErrPasswordMismatch},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newSim(t)
			a := s.start(0, func(c *Config) { c.PSK = tc.ka })
			b := s.start(1, func(c *Config) { c.PSK = tc.kb })
			s.connect(0, 1)
			if tc.want == nil {
				waitFor(t, 10*time.Second, "connected", func() bool {
					return connected(a, name(1)) && connected(b, name(0))
				})
				if !a.Status().Encryption {
					t.Error("status does not say encrypted")
				}
				return
			}
			for _, r := range []*Router{a, b} {
				waitFor(t, 10*time.Second, "refusal with reason "+tc.want.Error(), func() bool {
					for _, c := range r.Status().Connections {
						if c.State == StateFailed && strings.Contains(c.Reason, tc.want.Error()) {
							return true
						}
					}
					return false
				})
				if connected(r, name(0)) || connected(r, name(1)) {
					t.Error("connected despite the password")
				}
			}
		})
	}
}

func TestConnectValidates(t *testing.T) {
	s := newSim(t)
	a := s.start(0, nil)
	if err := a.Connect([]string{"10.9.9.9", "h.example:99"}, false); err != nil {
		t.Fatal(err)
	}
	before := a.Targets()
	want := []string{"10.9.9.9:6783", "h.example:99"}
	if !slices.Equal(before, want) {
		t.Fatalf("targets = %v, want %v", before, want)
	}
	for _, bad := range []string{"", "1.2.3.4:0", "1.2.3.4:70000", "1.2.3.4:x", "a b:1", ":6783", "[::1", "h..x"} {
		t.Run(bad, func(t *testing.T) {
			err := a.Connect([]string{"10.1.1.1:5", bad}, true)
			if !errors.Is(err, ErrBadPeerAddr) {
				t.Errorf("Connect(%q) = %v, want ErrBadPeerAddr", bad, err)
			}
			if err := a.Forget([]string{bad}); !errors.Is(err, ErrBadPeerAddr) {
				t.Errorf("Forget(%q) = %v, want ErrBadPeerAddr", bad, err)
			}
			if got := a.Targets(); !slices.Equal(got, before) {
				t.Errorf("targets changed to %v", got)
			}
		})
	}
	if err := a.Connect([]string{"::1", "[fe80::1]:7"}, true); err != nil {
		t.Fatal(err)
	}
	if got, want := a.Targets(), []string{"[::1]:6783", "[fe80::1]:7"}; !slices.Equal(got, want) {
		t.Errorf("after replace, targets = %v, want %v", got, want)
	}
	if err := a.Forget([]string{"::1"}); err != nil {
		t.Fatal(err)
	}
	if got, want := a.Targets(), []string{"[fe80::1]:7"}; !slices.Equal(got, want) {
		t.Errorf("after forget, targets = %v, want %v", got, want)
	}
}

func TestClosedRouter(t *testing.T) {
	s := newSim(t)
	a := s.start(0, nil)
	a.Close()
	if err := a.Connect([]string{"1.2.3.4"}, false); !errors.Is(err, ErrClosed) {
		t.Errorf("Connect after Close = %v, want ErrClosed", err)
	}
	if st := a.Status(); st.Peer != a.Peer() {
		t.Errorf("status after close: %+v", st)
	}
	r, err := New(fastConfig(1, s.net.Host(hostIP(1))))
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Connect([]string{"1.2.3.4"}, false); !errors.Is(err, ErrClosed) {
		t.Errorf("Connect before Start = %v, want ErrClosed", err)
	}
	r.Close()
	if _, err := New(Config{}); err == nil {
		t.Error("New accepted a config without a peer")
	}
	_ = identity.UnknownPeer
}

// TestRealTCP runs two routers over the kernel's TCP on loopback, with
// ports picked by the kernel.
func TestRealTCP(t *testing.T) {
	var rs []*Router
	for i := 0; i < 2; i++ {
		cfg := fastConfig(i, nil)
		cfg.Transport = nil // TCPTransport
		cfg.ListenHost = "127.0.0.1"
		cfg.Port = 0
		r, err := New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		if err := r.Start(t.Context()); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { r.Close() })
		rs = append(rs, r)
	}
	if err := rs[1].Connect([]string{rs[0].Addr().String()}, false); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "connected over TCP", func() bool {
		return connected(rs[0], name(1)) && connected(rs[1], name(0))
	})
	// The acceptor advertises the dialler's listen port, not its ephemeral one.
	waitFor(t, 10*time.Second, "advertised address", func() bool {
		p, ok := findPeer(rs[1], name(0))
		return ok && len(p.Conns) == 1 && p.Conns[0].RemoteAddr == rs[1].Addr().String()
	})
}

// TestForgedTopologyEntryDoesNotIsolatePeer: M, a peer of the mesh with a
// key of its own, sends A an entry about B at the maximum version that
// lists only M as B's neighbour (before entries were signed, this isolated
// B for good: its owner could never outbid it, and A would route to B via
// M). A refuses it; its route to B and B's own entry survive, and B's later
// changes still arrive.
func TestForgedTopologyEntryDoesNotIsolatePeer(t *testing.T) {
	s := newSim(t)
	noDisc := func(c *Config) { c.NoDiscovery = true }
	a := s.start(0, noDisc)
	b := s.start(1, noDisc)
	m := s.start(2, noDisc)
	s.connect(0, 1)
	s.connect(2, 0)
	waitFor(t, 10*time.Second, "mesh", func() bool {
		return connected(a, name(1)) && connected(a, name(2)) && len(b.Routes().Reachable()) == 2
	})
	before, _ := findPeer(a, name(1))
	forged := topology.Peer{Peer: identity.Peer{Name: name(1), NickName: "p1", UID: 1001}, Version: topology.MaxVersion,
		Conns: []topology.Conn{{Remote: name(2), Established: true}}}
	forged.Key = meshtest.Key(1).Public() // B's key, but M cannot sign for it
	var sent bool
	m.call(func() {
		if c := m.conns[name(0)]; c != nil {
			sent = c.enqueue(envelope(tagUpdate, topology.EncodeUpdate([]topology.Peer{forged}))) == nil
		}
	})
	if !sent {
		t.Fatal("could not send the forged update")
	}
	time.Sleep(300 * time.Millisecond) // several gossip rounds
	after, _ := findPeer(a, name(1))
	if after.Version >= topology.MaxVersion || after.Version < before.Version {
		t.Fatalf("B's entry at A went from version %d to %d", before.Version, after.Version)
	}
	if hop, ok := a.Routes().Unicast(name(1)); !ok || hop != name(1) {
		t.Fatalf("A routes to B via %s (ok=%v), want direct", hop, ok)
	}
	// B's own changes still win: B connects to M, and A learns it.
	s.connect(1, 2)
	waitFor(t, 10*time.Second, "B's new entry at A", func() bool {
		p, ok := findPeer(a, name(1))
		return ok && p.Version > after.Version && len(p.Conns) == 2
	})
}

// TestDuplicateTieBreakCannotBeGround: between two connections to one peer
// the one dialled by the lower-named peer stays, whatever their connection
// IDs (which the later speaker of a handshake can influence), and both ends
// decide alike.
func TestDuplicateTieBreakCannotBeGround(t *testing.T) {
	lo, hi := name(0), name(1)
	if hi < lo {
		lo, hi = hi, lo
	}
	mk := func(outbound bool, remote identity.PeerName, id uint64) *conn {
		return &conn{outbound: outbound, res: handshake.Result{Remote: identity.Peer{Name: remote}, ConnID: id}}
	}
	for _, ids := range [][2]uint64{{1, 2}, {2, 1}, {0, ^uint64(0)}, {^uint64(0), 0}} {
		// At lo: "out" is lo's dial, "in" is hi's. At hi the same two
		// connections, seen the other way round.
		loOut, loIn := mk(true, hi, ids[0]), mk(false, hi, ids[1])
		hiIn, hiOut := mk(false, lo, ids[0]), mk(true, lo, ids[1])
		for _, order := range []bool{true, false} {
			keepLoDial := keepFirst(loOut, loIn, lo)
			if !order {
				keepLoDial = !keepFirst(loIn, loOut, lo)
			}
			keepLoDialAtHi := keepFirst(hiIn, hiOut, hi)
			if !order {
				keepLoDialAtHi = !keepFirst(hiOut, hiIn, hi)
			}
			if !keepLoDial || !keepLoDialAtHi {
				t.Fatalf("ids %v: lo's dial kept at lo=%v at hi=%v, want both", ids, keepLoDial, keepLoDialAtHi)
			}
		}
	}
}

// TestInboundSatisfiesTarget: a router whose dial to a peer was refused
// (the peer not listening yet) and which the peer then dials shows that
// target connected, not failed, and does not dial it again.
func TestInboundSatisfiesTarget(t *testing.T) {
	s := newSim(t)
	slow := func(c *Config) { c.BackoffBase, c.BackoffMax = time.Hour, time.Hour }
	a := s.start(0, slow)
	s.connect(0, 1) // refused: router 1 is not there yet
	waitFor(t, 10*time.Second, "a's dial refused", func() bool {
		for _, tg := range a.Status().Targets {
			if tg.Addr == addrOf(1) {
				return tg.State == TargetWaiting && tg.LastError != ""
			}
		}
		return false
	})
	b := s.start(1, slow)
	s.connect(1, 0)
	waitFor(t, 10*time.Second, "a and b connected", func() bool { return connected(a, name(1)) && connected(b, name(0)) })
	for _, tg := range a.Status().Targets {
		if tg.Addr == addrOf(1) && (tg.State != TargetConnected || tg.LastError != "" || tg.Attempts != 0) {
			t.Errorf("a's target %s: %+v, want connected without an error", tg.Addr, tg)
		}
	}
	for _, c := range a.Status().Connections {
		if c.State == StateFailed {
			t.Errorf("a: failed connection in status: %+v", c)
		}
	}
	if n := s.net.Dials(addrOf(1)); n != 1 {
		t.Errorf("router 1's address dialled %d times, want 1 (the refused dial)", n)
	}
}

// TestInboundFailuresOneLinePerSource: a peer that keeps failing its
// handshake (here: no cipher in common) dials from a new port each time;
// status shows one failed inbound line for its address, with the reason,
// not one per attempt.
func TestInboundFailuresOneLinePerSource(t *testing.T) {
	psk := handshake.DeriveKey([]byte("pw"), nil)
	a := startTCPRouter(t, 0, func(c *Config) { c.PSK = psk; c.Cipher = handshake.CipherAESGCM }, nil)
	b := startTCPRouter(t, 1, func(c *Config) { c.PSK = psk; c.Cipher = handshake.CipherNaCl }, nil)
	if err := b.Connect([]string{a.Addr().String()}, false); err != nil {
		t.Fatal(err)
	}
	inbound := func() []ConnectionStatus {
		var out []ConnectionStatus
		for _, c := range a.Status().Connections {
			if !c.Outbound && c.State == StateFailed {
				out = append(out, c)
			}
		}
		return out
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		attempts := 0
		for _, tg := range b.Status().Targets {
			attempts += tg.Attempts
		}
		if attempts >= 3 && len(inbound()) > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after 10 s: %d attempts by b, a's failed inbound lines %+v", attempts, inbound())
		}
		time.Sleep(20 * time.Millisecond)
	}
	got := inbound()
	if len(got) != 1 || !strings.Contains(got[0].Reason, "no data cipher in common") {
		t.Errorf("a's failed inbound lines after several attempts: %+v; want one, saying why", got)
	}
}
