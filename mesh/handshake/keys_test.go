package handshake

import (
	"encoding/hex"
	"runtime"
	"testing"
)

func TestDeriveKey(t *testing.T) {
	a := pskSecret()
	for _, tc := range []struct {
		name           string
		password, salt string
		same           bool
	}{
		{"same inputs", "secret", "", true},
		{"explicit default salt", "secret", DefaultSalt, true},
		{"other password", "secret2", "", false},
		{"network salt", "secret", "my-network", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var salt []byte
			if tc.salt != "" {
				salt = []byte(tc.salt)
			}
			b := DeriveKey([]byte(tc.password), salt)
			if (*a == *b) != tc.same {
				t.Fatalf("DeriveKey(%q, %q) equal to DeriveKey(secret, default) = %v, want %v", tc.password, tc.salt, *a == *b, tc.same)
			}
		})
	}
}

func TestRatchet(t *testing.T) {
	var k [32]byte
	seen := map[[32]byte]bool{k: true}
	for range 1000 {
		next := Ratchet(k)
		if next != Ratchet(k) {
			t.Fatal("Ratchet is not deterministic")
		}
		if seen[next] {
			t.Fatal("Ratchet cycled within 1000 steps")
		}
		seen[next] = true
		k = next
	}
}

func TestKeySchedule(t *testing.T) {
	dh := make([]byte, 32)
	dh[0] = 1
	th := transcriptHash([]byte("client"), []byte("server"))
	a := deriveKeys(&PSK{1}, dh, th)
	keys := [][32]byte{a.confirmC2S, a.confirmS2C, a.controlC2S, a.controlS2C, a.dataC2S, a.dataS2C}
	seen := map[[32]byte]bool{}
	for _, k := range keys {
		if seen[k] {
			t.Fatal("two session keys are equal")
		}
		seen[k] = true
	}
	// Each input changes every key.
	for name, b := range map[string]sessionKeys{
		"psk":        deriveKeys(&PSK{2}, dh, th),
		"dh":         deriveKeys(&PSK{1}, make([]byte, 32), th),
		"transcript": deriveKeys(&PSK{1}, dh, transcriptHash([]byte("server"), []byte("client"))),
	} {
		if b.confirmC2S == a.confirmC2S || b.controlS2C == a.controlS2C || b.dataC2S == a.dataC2S {
			t.Errorf("changing the %s leaves a key unchanged", name)
		}
	}
	// The transcript hash frames its parts: moving a byte across changes it.
	if transcriptHash([]byte("ab"), []byte("c")) == transcriptHash([]byte("a"), []byte("bc")) {
		t.Error("transcript hash is ambiguous")
	}
}

// TestDeriveKeyKnownAnswers pins DeriveKey's output: every router of a
// network must stretch a password to the same key, across versions too.
func TestDeriveKeyKnownAnswers(t *testing.T) {
	for _, tc := range []struct{ password, salt, key string }{
		{"secret", "", "429ae3b201a195a8ce4877448f89e68995c2ab9657f895cfcfaca67429c2a348"},
		{"secret", "my-network", "bc119c744e564f571d5f6cd27a494d4d4ea3c9e2b67d5745693cd388372f706f"},
		{"", "", "ee900cb47e33f71210a1d0a8ebe03e01b5989f00dd031bfe9bb91069a4216fa7"},
	} {
		t.Run(tc.password+"/"+tc.salt, func(t *testing.T) {
			var salt []byte
			if tc.salt != "" {
				salt = []byte(tc.salt)
			}
			if got := hex.EncodeToString(DeriveKey([]byte(tc.password), salt)[:]); got != tc.key {
				t.Errorf("DeriveKey(%q, %q) = %s, want %s", tc.password, tc.salt, got, tc.key)
			}
		})
	}
}

// TestDeriveKeyReturnsMemory: the 64 MiB Argon2id work area goes back to
// the operating system before DeriveKey returns, instead of staying
// resident in a router that derives once and then idles (as garbage until
// the next collection, then as free heap until the scavenger gets to it).
// The end-to-end TestIdleMemory checks a real router's RSS.
func TestDeriveKeyReturnsMemory(t *testing.T) {
	DeriveKey([]byte("secret"), []byte("memory"))
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms) // does not collect
	const limit = 24 << 20
	if kept := ms.HeapSys - ms.HeapReleased; kept > limit {
		t.Errorf("after DeriveKey the heap holds %d MiB from the OS, want at most %d", kept>>20, limit>>20)
	}
}
