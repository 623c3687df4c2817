package handshake

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"math/big"
	"net"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func TestNegotiateSuite(t *testing.T) {
	for _, tc := range []struct {
		a, b   CipherPolicy
		hwA    bool
		hwB    bool
		want   Suite
		errMsg string
	}{
		{CipherAuto, CipherAuto, true, true, SuiteAESGCM, ""},
		{CipherAuto, CipherAuto, true, false, SuiteChaCha, ""}, // one end without AES hardware
		{CipherAuto, CipherAuto, false, false, SuiteChaCha, ""},
		{CipherNaCl, CipherAuto, true, true, SuiteChaCha, ""},
		{CipherAESGCM, CipherAuto, true, false, SuiteAESGCM, ""}, // forced: the only suite in common
		{CipherAESGCM, CipherAESGCM, false, false, SuiteAESGCM, ""},
		{CipherAESGCM, CipherNaCl, true, true, 0, "we accept aes-256-gcm, the peer chacha20-poly1305"},
	} {
		for _, swap := range []bool{false, true} {
			a, b := offerFor(tc.a, tc.hwA), offerFor(tc.b, tc.hwB)
			if swap {
				a, b = b, a
			}
			got, err := negotiateSuite(a, b)
			if tc.errMsg != "" {
				if !errors.Is(err, ErrCipher) || (!swap && !strings.Contains(err.Error(), tc.errMsg)) {
					t.Errorf("%s/%v vs %s/%v: %v, want ErrCipher", tc.a, tc.hwA, tc.b, tc.hwB, err)
				}
				continue
			}
			if err != nil || got != tc.want {
				t.Errorf("%s/%v vs %s/%v (swapped %v): %v %v, want %v", tc.a, tc.hwA, tc.b, tc.hwB, swap, got, err, tc.want)
			}
		}
	}
	for _, s := range []string{"", "auto", "AES-GCM", "nacl", "chacha20-poly1305"} {
		if _, err := ParseCipherPolicy(s); err != nil {
			t.Errorf("%q: %v", s, err)
		}
	}
	if _, err := ParseCipherPolicy("rot13"); err == nil || !strings.Contains(err.Error(), "auto, aes-gcm or nacl") {
		t.Errorf("rot13: %v", err)
	}
}

// TestCipherSuiteInHandshake runs real handshakes: both ends settle on the
// same suite, a forced suite meets auto on the common one, and aes-gcm
// against nacl fails on both ends with a reason naming both sets.
func TestCipherSuiteInHandshake(t *testing.T) {
	auto := SuiteChaCha
	if HardwareAES() {
		auto = SuiteAESGCM
	}
	for _, tc := range []struct {
		c, s CipherPolicy
		want Suite
	}{
		{CipherAuto, CipherAuto, auto},
		{CipherNaCl, CipherAuto, SuiteChaCha},
		{CipherAuto, CipherAESGCM, SuiteAESGCM},
		{CipherNaCl, CipherNaCl, SuiteChaCha},
		{CipherAESGCM, CipherNaCl, 0},
	} {
		cc, sc := testConfig(1, pskSecret()), testConfig(2, pskSecret())
		cc.Cipher, sc.Cipher = tc.c, tc.s
		c, s := handshakePair(t, "pipe", cc, sc)
		if tc.want == 0 {
			for _, o := range []outcome{c, s} {
				if !errors.Is(o.err, ErrCipher) || !strings.Contains(o.err.Error(), "no data cipher in common") {
					t.Errorf("%s vs %s: %v, want ErrCipher", tc.c, tc.s, o.err)
				}
			}
			continue
		}
		if c.err != nil || s.err != nil {
			t.Fatalf("%s vs %s: %v / %v", tc.c, tc.s, c.err, s.err)
		}
		if c.s.Result().Suite != tc.want || s.s.Result().Suite != tc.want {
			t.Errorf("%s vs %s: suites %v / %v, want %v", tc.c, tc.s, c.s.Result().Suite, s.s.Result().Suite, tc.want)
		}
	}
	// Without a password there is no suite.
	c, s := mustPair(t, "pipe", testConfig(1, nil), testConfig(2, nil))
	if c.Result().Suite != 0 || s.Result().Suite != 0 {
		t.Error("a suite without a password")
	}
}

// TestCipherDowngradeIsCaught: an attacker in the middle who rewrites the
// client's hello so that it offers only ChaCha20-Poly1305 (or the server's
// to offer only AES-GCM) does not get a weaker suite through: the suites
// are in the transcript, so key confirmation fails on both ends.
func TestCipherDowngradeIsCaught(t *testing.T) {
	for _, clientSide := range []bool{true, false} {
		cc, sc := testConfig(1, pskSecret()), testConfig(2, pskSecret())
		cEnd, mitmC := net.Pipe()
		mitmS, sEnd := net.Pipe()
		suitesAt := helloPrefixLen + 1 + 6 + 8 + 2 + nonceLen + 64
		relay := func(dst, src net.Conn, rewrite bool) {
			buf := make([]byte, 4096)
			first := true
			for {
				n, err := src.Read(buf)
				if n > 0 {
					if rewrite && first && n > suitesAt+1 {
						buf[suitesAt], buf[suitesAt+1] = 1<<SuiteChaCha, byte(SuiteChaCha)
						if !clientSide {
							buf[suitesAt], buf[suitesAt+1] = 1<<SuiteAESGCM, byte(SuiteAESGCM)
						}
					}
					first = false
					if _, err := dst.Write(buf[:n]); err != nil {
						return
					}
				}
				if err != nil {
					dst.Close()
					return
				}
			}
		}
		go relay(mitmS, mitmC, clientSide)
		go relay(mitmC, mitmS, !clientSide)
		ch := make(chan outcome, 1)
		go func() {
			ss, err := Server(t.Context(), sEnd, sc)
			ch <- outcome{ss, err}
		}()
		cs, cerr := Client(t.Context(), cEnd, cc)
		so := <-ch
		if !errors.Is(cerr, ErrWrongPassword) && !errors.Is(so.err, ErrWrongPassword) {
			t.Errorf("neither end failed key confirmation: %v / %v", cerr, so.err)
		}
		for _, o := range []outcome{{cs, cerr}, so} {
			if o.s != nil {
				o.s.Close()
			}
			if !errors.Is(o.err, ErrWrongPassword) && !errors.Is(o.err, io.EOF) && !errors.Is(o.err, io.ErrClosedPipe) {
				t.Errorf("rewritten %s hello: %v, want the handshake to fail key confirmation", map[bool]string{true: "client", false: "server"}[clientSide], o.err)
			}
			if o.err == nil {
				t.Errorf("downgraded handshake succeeded")
			}
		}
		mitmC.Close()
		mitmS.Close()
	}
}

// TestCipherSuiteFollowsHardware runs real handshakes between two auto
// routers on CPUs with and without AES hardware (hardwareAES replaced):
// AES-256-GCM only when both ends have it, ChaCha20-Poly1305 when neither
// or only one does, whichever end that is.
func TestCipherSuiteFollowsHardware(t *testing.T) {
	t.Cleanup(func() { hardwareAES = HardwareAES })
	for _, tc := range []struct {
		name string
		hw   func(call int32) bool // the answer to the call-th hardwareAES()
		want Suite
	}{
		{"both", func(int32) bool { return true }, SuiteAESGCM},
		{"neither", func(int32) bool { return false }, SuiteChaCha},
		{"first-only", func(call int32) bool { return call == 0 }, SuiteChaCha},
		{"second-only", func(call int32) bool { return call == 1 }, SuiteChaCha},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var calls atomic.Int32
			hardwareAES = func() bool { return tc.hw(calls.Add(1) - 1) }
			c, s := mustPair(t, "pipe", testConfig(1, pskSecret()), testConfig(2, pskSecret()))
			if n := calls.Load(); n != 2 {
				t.Fatalf("hardwareAES asked %d times, want once per end", n)
			}
			if c.Result().Suite != tc.want || s.Result().Suite != tc.want {
				t.Errorf("suites %v / %v, want %v", c.Result().Suite, s.Result().Suite, tc.want)
			}
		})
	}
}

// TestHardwareAESAgreesWithGo: HardwareAES says yes exactly when Go's own
// AES-GCM is the assembly one, as crypto/tls decides it (a TLS 1.3
// handshake between two default configs settles on AES-GCM only then). On
// amd64 it checks again with each instruction set the assembly needs
// turned off (GODEBUG cpu.X=off, in a child process): having AES-NI and
// PCLMULQDQ is not enough without SSSE3 and SSE4.1. And on 386, where Go
// has no assembly AES, it says no whatever the CPU.
func TestHardwareAESAgreesWithGo(t *testing.T) {
	// crypto/tls looks only at the CPU; a purego build has no assembly AES
	// whatever the CPU, so there HardwareAES must say no.
	if got, want := HardwareAES(), tlsPrefersAESGCM(t) && !purego; got != want {
		t.Fatalf("HardwareAES() = %v, but crypto/tls prefers AES-GCM: %v (GODEBUG=%q)", got, want, os.Getenv("GODEBUG"))
	}
	if hardwareAESOn("386") || hardwareAESOn("riscv64") {
		t.Error("hardware AES on an architecture where Go's AES is the table implementation")
	}
	if os.Getenv("WEAVE_HWAES_CHILD") != "" {
		if HardwareAES() {
			t.Errorf("HardwareAES() with GODEBUG=%q", os.Getenv("GODEBUG"))
		}
		return
	}
	if runtime.GOARCH != "amd64" || !HardwareAES() {
		return
	}
	for _, feature := range []string{"aes", "pclmulqdq", "sse41", "ssse3"} {
		cmd := exec.Command(os.Args[0], "-test.run=^TestHardwareAESAgreesWithGo$", "-test.count=1")
		cmd.Env = append(os.Environ(), "WEAVE_HWAES_CHILD=1", "GODEBUG=cpu."+feature+"=off")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("without %s: %v\n%s", feature, err, out)
		}
	}
}

// tlsPrefersAESGCM runs a TLS 1.3 handshake in memory between a default
// client and server and reports whether they settled on AES-GCM: crypto/tls
// puts ChaCha20-Poly1305 first unless Go's AES-GCM is hardware-backed.
func tlsPrefersAESGCM(t *testing.T) bool {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, priv.Public(), priv)
	if err != nil {
		t.Fatal(err)
	}
	cEnd, sEnd := net.Pipe()
	defer cEnd.Close()
	defer sEnd.Close()
	server := tls.Server(sEnd, &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: priv}}})
	client := tls.Client(cEnd, &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS13})
	errc := make(chan error, 1)
	go func() { errc <- server.HandshakeContext(t.Context()) }()
	if err := client.HandshakeContext(t.Context()); err != nil {
		t.Fatalf("tls client: %v", err)
	}
	if err := <-errc; err != nil {
		t.Fatalf("tls server: %v", err)
	}
	switch cs := client.ConnectionState().CipherSuite; cs {
	case tls.TLS_AES_128_GCM_SHA256, tls.TLS_AES_256_GCM_SHA384:
		return true
	case tls.TLS_CHACHA20_POLY1305_SHA256:
		return false
	default:
		t.Fatalf("TLS 1.3 settled on %s", tls.CipherSuiteName(cs))
		return false
	}
}
