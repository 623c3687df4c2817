package server

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
)

func TestNewErrors(t *testing.T) {
	names := testNames()
	for _, tc := range []struct {
		name string
		mod  func(*Config)
		want string
	}{
		{"no names", func(c *Config) { c.Names = nil }, "names required"},
		{"bad domain", func(c *Config) { c.Domain = "a..b" }, "not a domain name"},
		{"root domain", func(c *Config) { c.Domain = "." }, "not a domain name"},
		{"host name listen", func(c *Config) { c.ListenAddr = "localhost:53" }, "want an IP"},
		{"no port", func(c *Config) { c.ListenAddr = "127.0.0.1" }, "listen address"},
		{"host name upstream", func(c *Config) { c.Upstreams = []string{"dns.google:53"} }, "want IP:port"},
		{"negative timeout", func(c *Config) { c.UpstreamTimeout = -time.Second }, "negative"},
		{"sub-second ttl", func(c *Config) { c.TTL = time.Millisecond }, "ttl"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := DefaultConfig()
			cfg.ListenAddr = "127.0.0.1:0"
			cfg.Names = names
			tc.mod(&cfg)
			s, err := New(cfg)
			if err == nil {
				s.Close()
				t.Fatal("no error")
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q, want it to mention %q", err, tc.want)
			}
		})
	}
}

func TestListenAddrInUse(t *testing.T) {
	s := startServer(t, testNames(), nil)
	cfg := DefaultConfig()
	cfg.ListenAddr = addrOf(s)
	cfg.Names = testNames()
	if s2, err := New(cfg); err == nil {
		s2.Close()
		t.Fatal("second server on one port")
	}
}

func TestAddrSamePort(t *testing.T) {
	s := startServer(t, testNames(), nil)
	udp, tcp := s.Addr()
	if udp != tcp || udp.Port() == 0 || udp.Addr().String() != "127.0.0.1" {
		t.Errorf("Addr() = %v, %v: want one port on 127.0.0.1", udp, tcp)
	}
}

func TestLifecycle(t *testing.T) {
	newServer := func(t *testing.T) *Server {
		cfg := DefaultConfig()
		cfg.ListenAddr = "127.0.0.1:0"
		cfg.Names = testNames()
		s, err := New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	t.Run("close without start", func(t *testing.T) {
		s := newServer(t)
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		if err := s.Start(context.Background()); err == nil {
			t.Error("start after close")
		}
	})
	t.Run("close twice", func(t *testing.T) {
		s := newServer(t)
		if err := s.Start(context.Background()); err != nil {
			t.Fatal(err)
		}
		if err := s.Start(context.Background()); err == nil {
			t.Error("second start")
		}
		s.Close()
		s.Close()
	})
	t.Run("ctx ends the server", func(t *testing.T) {
		s := newServer(t)
		ctx, cancel := context.WithCancel(context.Background())
		if err := s.Start(ctx); err != nil {
			t.Fatal(err)
		}
		addr := addrOf(s)
		query(t, addr, "udp", "db.weave.local.", dns.TypeA, 0)
		cancel()
		stopped := eventually(func() bool {
			c := &dns.Client{Net: "tcp", Timeout: 200 * time.Millisecond}
			m := new(dns.Msg).SetQuestion("db.weave.local.", dns.TypeA)
			_, _, err := c.Exchange(m, addr)
			return err != nil
		})
		if !stopped {
			t.Fatal("still serving after ctx ended")
		}
		s.Close()
	})
	t.Run("close aborts forwards in flight", func(t *testing.T) {
		up := startUpstream(t, silent)
		cfg := DefaultConfig()
		cfg.ListenAddr = "127.0.0.1:0"
		cfg.Names = testNames()
		cfg.Upstreams = []string{up.addr}
		cfg.UpstreamTimeout = time.Minute
		s, err := New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Start(context.Background()); err != nil {
			t.Fatal(err)
		}
		done := make(chan struct{})
		go func() {
			defer close(done)
			tryQuery(addrOf(s), "tcp", "www.example.com.", dns.TypeA, 0)
		}()
		eventually(func() bool { return up.queries.Load() > 0 })
		start := time.Now()
		s.Close()
		if el := time.Since(start); el > time.Second {
			t.Errorf("Close took %v with a forward in flight", el)
		}
		<-done
	})
}

func TestStats(t *testing.T) {
	up := startUpstream(t, answerA("", "192.0.2.1"))
	s := startServer(t, testNames(), func(c *Config) { c.Upstreams = []string{up.addr} })
	addr := addrOf(s)
	query(t, addr, "udp", "db.weave.local.", dns.TypeA, 0)
	query(t, addr, "udp", "db.weave.local.", dns.TypeAAAA, 0)
	query(t, addr, "udp", "5.0.32.10.in-addr.arpa.", dns.TypePTR, 0)
	query(t, addr, "udp", "nope.weave.local.", dns.TypeA, 0)
	query(t, addr, "udp", "www.example.com.", dns.TypeA, 0)
	query(t, addr, "tcp", "weave.local.", dns.TypeAXFR, 0)
	want := Stats{Local: 3, NXDomain: 1, Forwarded: 1, Refused: 1}
	if got := s.Stats(); got != want {
		t.Errorf("stats %+v, want %+v", got, want)
	}
}
