package api

import (
	"errors"
	"strings"
	"testing"

	"github.com/weavelab/weave/mesh/identity"
)

func mustName(t testing.TB, s string) identity.PeerName {
	t.Helper()
	n, err := identity.ParsePeerName(s)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func sampleStatus(t testing.TB) Status {
	a := identity.Peer{Name: mustName(t, "0a:00:00:00:00:01"), NickName: "host1", UID: 1}
	b := identity.Peer{Name: mustName(t, "0a:00:00:00:00:02"), NickName: "host2", UID: 2}
	c := identity.Peer{Name: mustName(t, "0a:00:00:00:00:03"), NickName: "host3", UID: 3}
	return Status{
		Version: "1.2.3", PID: 42, Peer: a, Encryption: true, Discovery: true, Port: 6783, MTU: 1376,
		Peers: []Peer{
			{Peer: a, Version: 5, Conns: []PeerConn{
				{Remote: b, Addr: "192.168.1.2:6783", Outbound: true, Established: true},
				{Remote: c, Addr: "192.168.1.3:6783", Outbound: true, Established: false},
			}},
			{Peer: b, Version: 3, Conns: []PeerConn{
				{Remote: a, Addr: "192.168.1.1:40000", Outbound: false, Established: true},
			}},
		},
		Connections: []Connection{
			{Peer: &b, Addr: "192.168.1.2:6783", Outbound: true, State: StateEstablished,
				Stats: &PeerStats{FramesIn: 10, FramesOut: 12, BytesIn: 1000, BytesOut: 2048,
					Drops: map[string]uint64{"replay": 2, "auth": 1, "none": 0}}},
			{Peer: &c, Addr: "192.168.1.3:6783", Outbound: true, State: StateHandshake, Reason: "no UDP heartbeat yet"},
			{Addr: "192.168.1.9:6783", Outbound: true, State: StateFailed, Reason: "dial tcp: connection refused"},
		},
		Targets: []Target{
			{Addr: "192.168.1.2:6783", State: "connected"},
			{Addr: "192.168.1.9:6783", State: "waiting", Attempts: 3, LastError: "refused"},
		},
		Discovered: []Target{{Addr: "192.168.1.3:6783", State: "connected"}},
	}
}

func TestFormatStatus(t *testing.T) {
	st := sampleStatus(t)
	tests := []struct {
		section string
		want    string
	}{
		{"", "" +
			"        Version: 1.2.3\n" +
			"           Name: 0a:00:00:00:00:01(host1)\n" +
			"     Encryption: enabled\n" +
			"  PeerDiscovery: enabled\n" +
			"           Port: 6783\n" +
			"            MTU: 1376\n" +
			"        Targets: 2\n" +
			"    Connections: 3 (1 established, 1 handshake, 1 failed)\n" +
			"          Peers: 2 (with 2 established connections)\n"},
		{"peers", "" +
			"0a:00:00:00:00:01(host1)\n" +
			"   -> 192.168.1.2:6783   0a:00:00:00:00:02(host2)  established\n" +
			"   -> 192.168.1.3:6783   0a:00:00:00:00:03(host3)  pending\n" +
			"0a:00:00:00:00:02(host2)\n" +
			"   <- 192.168.1.1:40000  0a:00:00:00:00:01(host1)  established\n"},
		{"connections", "" +
			"-> 192.168.1.2:6783  established  0a:00:00:00:00:02(host2)  in 10 frames 1000B, out 12 frames 2.0KiB, dropped 3 (auth 1, replay 2)\n" +
			"-> 192.168.1.3:6783  handshake    0a:00:00:00:00:03(host3)  no UDP heartbeat yet\n" +
			"-> 192.168.1.9:6783  failed       -                         dial tcp: connection refused\n"},
		{"targets", "192.168.1.2:6783\n192.168.1.9:6783\n"},
	}
	for _, tt := range tests {
		t.Run("section="+tt.section, func(t *testing.T) {
			var b strings.Builder
			if err := FormatStatus(&b, st, tt.section); err != nil {
				t.Fatal(err)
			}
			if b.String() != tt.want {
				t.Errorf("got:\n%s\nwant:\n%s", b.String(), tt.want)
			}
		})
	}
}

func TestFormatSummaryDisabled(t *testing.T) {
	st := Status{Version: "v", Peer: identity.Peer{Name: mustName(t, "0a:00:00:00:00:01"), NickName: "n"}}
	var b strings.Builder
	if err := FormatSummary(&b, st); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"Encryption: disabled\n", "PeerDiscovery: disabled\n", "Connections: 0\n", "Peers: 0 (with 0 established connections)\n"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("summary lacks %q:\n%s", want, b.String())
		}
	}
	if strings.Contains(b.String(), "MTU") {
		t.Errorf("summary shows an unknown MTU:\n%s", b.String())
	}
}

func TestUnknownSection(t *testing.T) {
	var b strings.Builder
	err := FormatStatus(&b, Status{}, "bogus")
	if !errors.Is(err, ErrUnknownSection) {
		t.Fatalf("err = %v, want ErrUnknownSection", err)
	}
	if strings.Contains(err.Error(), "\n") || !strings.Contains(err.Error(), `"bogus"`) {
		t.Errorf("error %q: want one line naming the section", err)
	}
	if b.Len() != 0 {
		t.Errorf("wrote %q for an unknown section", b.String())
	}
	if want := "want one of peers, connections, targets, ipam, dns"; !strings.Contains(err.Error(), want) {
		t.Errorf("error %q: want it to list the valid sections (%q)", err, want)
	}
}

func TestSectionNeverNull(t *testing.T) {
	for _, s := range Sections {
		v, err := Section(Status{}, s)
		if err != nil {
			t.Fatal(err)
		}
		switch v := v.(type) {
		case []Peer:
			if v == nil {
				t.Errorf("%s: nil slice (would print null)", s)
			}
		case []Connection:
			if v == nil {
				t.Errorf("%s: nil slice (would print null)", s)
			}
		case []Target:
			if v == nil {
				t.Errorf("%s: nil slice (would print null)", s)
			}
		case *IPAM:
			if v == nil || v.Peers == nil {
				t.Errorf("%s: nil (would print null)", s)
			}
		case *DNS:
			if v == nil || v.Entries == nil || v.Upstreams == nil {
				t.Errorf("%s: nil (would print null)", s)
			}
		default:
			t.Errorf("%s: unexpected type %T", s, v)
		}
	}
}

func TestFormatContainers(t *testing.T) {
	var b strings.Builder
	err := FormatContainers(&b, []Container{
		{ID: "netns:c1", MAC: "0a:58:0a:02:01:04", Addrs: []string{"10.2.1.4/24", "10.3.1.4/24"}},
		{ID: "pid:77", MAC: "0a:58:0a:02:01:05", Addrs: []string{"10.2.1.5/24"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	want := "netns:c1 0a:58:0a:02:01:04 10.2.1.4/24 10.3.1.4/24\npid:77 0a:58:0a:02:01:05 10.2.1.5/24\n"
	if b.String() != want {
		t.Errorf("got %q, want %q", b.String(), want)
	}
}

func TestBytesString(t *testing.T) {
	for n, want := range map[uint64]string{0: "0B", 1023: "1023B", 1024: "1.0KiB", 1536: "1.5KiB", 5 << 20: "5.0MiB", 3 << 30: "3.0GiB"} {
		if got := bytesString(n); got != want {
			t.Errorf("bytesString(%d) = %q, want %q", n, got, want)
		}
	}
}

func TestFormatSummaryEncryption(t *testing.T) {
	for _, tc := range []struct {
		enc  bool
		salt string
		want string
	}{
		{true, SaltNetwork, "Encryption: enabled (password stretched with Argon2id, per-network salt)\n"},
		{true, SaltDefault, "Encryption: enabled (password stretched with Argon2id, default salt: set --network-salt on every peer)\n"},
		{true, "", "Encryption: enabled\n"},
		{false, "", "Encryption: disabled\n"},
	} {
		var b strings.Builder
		if err := FormatSummary(&b, Status{Encryption: tc.enc, Salt: tc.salt}); err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(b.String(), tc.want) {
			t.Errorf("encryption %v salt %q: summary\n%s\nwant line %q", tc.enc, tc.salt, b.String(), tc.want)
		}
	}
}

// TestFormatCiphers: `weave status connections` names each connection's
// suite, and the summary counts the suites of the established ones beside
// the policy.
func TestFormatCiphers(t *testing.T) {
	st := sampleStatus(t)
	st.Cipher, st.HardwareAES = "auto", true
	st.Connections[0].Cipher = "chacha20-poly1305"
	b := *st.Connections[0].Peer
	b.Name = mustName(t, "0a:00:00:00:00:04")
	st.Connections = append(st.Connections,
		Connection{Peer: &b, Addr: "192.168.1.4:6783", State: StateEstablished, Cipher: "aes-256-gcm"},
		Connection{Peer: &b, Addr: "192.168.1.5:6783", State: StateEstablished, Cipher: "aes-256-gcm"},
		Connection{Addr: "192.168.1.6:6783", Outbound: true, State: StateFailed,
			Reason: "handshake: peer x: no data cipher in common: we accept aes-256-gcm, the peer chacha20-poly1305"})
	var sum strings.Builder
	if err := FormatSummary(&sum, st); err != nil {
		t.Fatal(err)
	}
	const wantSum = "Encryption: enabled; data cipher auto (AES hardware: prefers aes-256-gcm); in use: 2 aes-256-gcm, 1 chacha20-poly1305\n"
	if !strings.Contains(sum.String(), wantSum) {
		t.Errorf("summary:\n%s\nwant line %q", sum.String(), wantSum)
	}
	var conns strings.Builder
	if err := FormatConnections(&conns, st); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"0a:00:00:00:00:02(host2)  chacha20-poly1305; in 10 frames",
		"0a:00:00:00:00:04(host2)  aes-256-gcm\n",
		"no data cipher in common: we accept aes-256-gcm, the peer chacha20-poly1305\n",
	} {
		if !strings.Contains(conns.String(), want) {
			t.Errorf("connections:\n%s\nlack %q", conns.String(), want)
		}
	}
	st.Encryption = false
	sum.Reset()
	if err := FormatSummary(&sum, st); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(sum.String(), "in use") {
		t.Errorf("suites counted without encryption:\n%s", sum.String())
	}
}

// TestFormatSummaryPlugin: the Docker plugin's line, only while it serves.
func TestFormatSummaryPlugin(t *testing.T) {
	st := sampleStatus(t)
	var b strings.Builder
	if err := FormatSummary(&b, st); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(b.String(), "Plugin") {
		t.Errorf("summary shows a plugin that is not serving:\n%s", b.String())
	}
	st.Plugin = &Plugin{Name: "weave", Socket: "/run/docker/plugins/weave.sock", Networks: 2, Endpoints: 3}
	b.Reset()
	if err := FormatSummary(&b, st); err != nil {
		t.Fatal(err)
	}
	if want := "         Plugin: weave at /run/docker/plugins/weave.sock, 2 networks, 3 endpoints\n"; !strings.Contains(b.String(), want) {
		t.Errorf("summary lacks %q:\n%s", want, b.String())
	}
}
