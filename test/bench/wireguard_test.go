package main

import (
	"bufio"
	"bytes"
	"crypto/ecdh"
	"encoding/hex"
	"encoding/json"
	"net"
	"slices"
	"strings"
	"testing"
	"time"
)

// RFC 7748, section 6.1: Alice's X25519 key pair.
const (
	rfcPrivate = "77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a"
	rfcPublic  = "8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a"
)

func mustHex(t *testing.T, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestWGKeyHex(t *testing.T) {
	k := mustHex(t, rfcPublic)
	if got, err := wgKeyHex(k); err != nil || got != rfcPublic {
		t.Errorf("wgKeyHex = %q, %v; want %q", got, err, rfcPublic)
	}
	for _, n := range []int{0, 31, 33, 44} {
		if s, err := wgKeyHex(make([]byte, n)); err == nil {
			t.Errorf("wgKeyHex of %d bytes = %q, want an error", n, s)
		}
	}
}

func TestNewWGKeyPair(t *testing.T) {
	a, err := newWGKeyPair()
	if err != nil {
		t.Fatal(err)
	}
	b, err := newWGKeyPair()
	if err != nil {
		t.Fatal(err)
	}
	if len(a.private) != wgKeyLen || len(a.public) != wgKeyLen {
		t.Fatalf("key lengths %d, %d, want %d", len(a.private), len(a.public), wgKeyLen)
	}
	if bytes.Equal(a.private, b.private) || bytes.Equal(a.public, b.public) {
		t.Error("two key pairs alike")
	}
	// The public key is the private one's, as the peer computes it.
	priv, err := ecdh.X25519().NewPrivateKey(a.private)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(priv.PublicKey().Bytes(), a.public) {
		t.Error("public key is not the private key's")
	}
	// And X25519 is the curve: the RFC's pair checks out the same way.
	rfc, err := ecdh.X25519().NewPrivateKey(mustHex(t, rfcPrivate))
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := wgKeyHex(rfc.PublicKey().Bytes()); got != rfcPublic {
		t.Errorf("RFC 7748 public key = %s, want %s", got, rfcPublic)
	}
}

func TestUAPISet(t *testing.T) {
	priv, pub := mustHex(t, rfcPrivate), mustHex(t, rfcPublic)
	d := wgDevice{privateKey: priv, listenPort: 51820, peers: []wgPeer{{
		publicKey:  pub,
		endpoint:   "192.168.77.2:51820",
		allowedIPs: []string{"10.43.2.0/24", "10.44.0.2/32"},
	}}}
	got, err := d.uapiSet()
	if err != nil {
		t.Fatal(err)
	}
	want := "set=1\n" +
		"private_key=" + rfcPrivate + "\n" +
		"listen_port=51820\n" +
		"replace_peers=true\n" +
		"public_key=" + rfcPublic + "\n" +
		"endpoint=192.168.77.2:51820\n" +
		"allowed_ip=10.43.2.0/24\n" +
		"allowed_ip=10.44.0.2/32\n" +
		"\n"
	if got != want {
		t.Errorf("uapiSet =\n%s\nwant\n%s", got, want)
	}
	for name, bad := range map[string]wgDevice{
		"short private key": {privateKey: priv[:31], listenPort: 1},
		"no port":           {privateKey: priv},
		"port too big":      {privateKey: priv, listenPort: 65536},
		"peer key":          {privateKey: priv, listenPort: 1, peers: []wgPeer{{publicKey: pub[1:]}}},
	} {
		if s, err := bad.uapiSet(); err == nil {
			t.Errorf("%s: uapiSet = %q, want an error", name, s)
		}
	}
}

func TestReadUAPIReply(t *testing.T) {
	for _, c := range []struct {
		name, in string
		lines    []string
		ok       bool
	}{
		{"set ok", "errno=0\n\n", nil, true},
		{"get ok", "private_key=ab\nlisten_port=51820\nerrno=0\n\n", []string{"private_key=ab", "listen_port=51820"}, true},
		{"error", "errno=22\n\n", nil, false},
		{"negative", "errno=-1\n\n", nil, false},
		{"garbled errno", "errno=x\n\n", nil, false},
		{"no errno", "listen_port=1\n\n", []string{"listen_port=1"}, false},
		{"cut short", "errno=0\n", nil, false},
		{"empty", "", nil, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := bufio.NewReader(strings.NewReader(c.in))
			lines, err := readUAPIReply(r)
			if (err == nil) != c.ok || !slices.Equal(lines, c.lines) {
				t.Errorf("readUAPIReply(%q) = %q, %v; want %q, ok %v", c.in, lines, err, c.lines, c.ok)
			}
		})
	}
	// A reply ends at its empty line: what follows is not read into it.
	r := bufio.NewReader(strings.NewReader("errno=0\n\nerrno=1\n\n"))
	if _, err := readUAPIReply(r); err != nil {
		t.Fatal(err)
	}
	if _, err := readUAPIReply(r); err == nil {
		t.Error("second reply errno=1 not an error")
	}
}

// TestUAPIExchange talks to a fake device over a pipe: the request goes
// out whole and the reply's errno decides.
func TestUAPIExchange(t *testing.T) {
	for _, reply := range []string{"errno=0\n\n", "errno=1\n\n"} {
		client, server := net.Pipe()
		got := make(chan string, 1)
		go func() {
			defer server.Close()
			r := bufio.NewReader(server)
			var req strings.Builder
			for {
				line, err := r.ReadString('\n')
				req.WriteString(line)
				if err != nil || line == "\n" {
					break
				}
			}
			got <- req.String()
			server.Write([]byte(reply))
		}()
		request := "set=1\nlisten_port=1\n\n"
		_, err := uapiExchange(client, request)
		client.Close()
		if req := <-got; req != request {
			t.Errorf("device read %q, want %q", req, request)
		}
		if (err == nil) != (reply == "errno=0\n\n") {
			t.Errorf("reply %q: err %v", reply, err)
		}
	}
}

// TestWireGuardGoScenario: wireguard-go is a data-path scenario that
// rotates with weave's, runs without weave, is listed by -h, takes a
// binary, and its row reads as the reference with ratios to VXLAN.
func TestWireGuardGoScenario(t *testing.T) {
	i := slices.Index(allScenarios, scenarioWireGuardGo)
	if i < 0 || i < slices.Index(allScenarios, scenarioNaCl) || !isDataPath(scenarioWireGuardGo) ||
		!slices.Contains(dataPathScenarios(), scenarioWireGuardGo) {
		t.Fatalf("allScenarios %v: want wireguard-go after the weave data-path scenarios, as one of them", allScenarios)
	}
	var help strings.Builder
	cfg, err := parseFlags([]string{"-only", "wireguard-go", "-wireguard-go", "/x/wireguard-go"}, &help)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.needsWeave() || !cfg.needsLab() || cfg.wireGuardGoBin != "/x/wireguard-go" {
		t.Errorf("-only wireguard-go: needsWeave %v, needsLab %v, binary %q", cfg.needsWeave(), cfg.needsLab(), cfg.wireGuardGoBin)
	}
	if cfg, _ := parseFlags([]string{"-only", "vxlan,wireguard-go,weave"}, &help); !cfg.needsWeave() ||
		strings.Join(cfg.scenarios, ",") != "vxlan,weave,wireguard-go" {
		t.Errorf("-only vxlan,wireguard-go,weave: scenarios %v, needsWeave %v", cfg.scenarios, cfg.needsWeave())
	}
	if _, err := parseFlags([]string{"-h"}, &help); err == nil {
		t.Fatal("-h gave no error")
	}
	for _, s := range []string{"weave-nacl, wireguard-go", "-wireguard-go", wireGuardGoModule, "wireguard-go: not weave"} {
		if !strings.Contains(help.String(), s) {
			t.Errorf("-h lacks %q:\n%s", s, help.String())
		}
	}

	wg := result{Scenario: scenarioWireGuardGo, figures: figures{MTU: 1420, Path: "userspace", Cipher: wireGuardCipher,
		Software: "wireguard-go v0.0.20250522", Gbps1: 5, Gbps4: 6}}
	wg.setRouterCPU(15, 10*time.Second, 100)
	merged := mergeRounds([]result{wg, {Scenario: scenarioWireGuardGo, Error: "boom"}})
	if merged.Software != wg.Software || merged.Gbps1 != 5 {
		t.Errorf("merged row %+v lost the software or figures", merged)
	}
	rep := newReport(cfg, []result{{Scenario: scenarioVXLAN, figures: figures{Gbps1: 10, Gbps4: 12}}, wg})
	if rep.Results[1].VsVXLAN == nil {
		t.Error("wireguard-go row has no ratios to VXLAN")
	}
	var out strings.Builder
	rep.print(&out)
	for _, s := range []string{"wireguard-go", "userspace", wireGuardCipher, "0.50x", "0.50x", "150%", "0.150",
		"wireguard-go: the reference, not weave: wireguard-go v0.0.20250522"} {
		if !strings.Contains(out.String(), s) {
			t.Errorf("table lacks %q:\n%s", s, out.String())
		}
	}
	var js strings.Builder
	if err := json.NewEncoder(&js).Encode(rep); err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{`"scenario":"wireguard-go"`, `"software":"wireguard-go v0.0.20250522"`, `"vs_vxlan"`} {
		if !strings.Contains(js.String(), s) {
			t.Errorf("JSON lacks %s: %s", s, js.String())
		}
	}
}
