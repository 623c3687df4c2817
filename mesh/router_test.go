package mesh

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/weavelab/weave/mesh/handshake"
	"github.com/weavelab/weave/mesh/identity"
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

func TestSelfConnectionRefused(t *testing.T) {
	s := newSim(t)
	a := s.start(0, nil)
	s.connect(0, 0)
	waitFor(t, 10*time.Second, "self connection refused", func() bool {
		for _, c := range a.Status().Connections {
			if c.State == StateFailed && strings.Contains(c.Reason, errSelf.Error()) {
				return true
			}
		}
		return false
	})
	if len(a.Routes().Reachable()) != 0 {
		t.Errorf("reachable = %v, want none", a.Routes().Reachable())
	}
}

func TestDuplicatePeerNameRefused(t *testing.T) {
	s := newSim(t)
	a := s.start(0, nil)
	s.start(1, nil)
	// Peer 2 claims peer 1's name with another UID.
	s.start(2, func(c *Config) { c.Peer.Name = name(1); c.Peer.UID = 99 })
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
