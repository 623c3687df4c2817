package handshake

import (
	"fmt"
	"runtime"
	"strings"

	"golang.org/x/sys/cpu"
)

// Suite is a data-plane cipher suite: the AEAD that seals UDP datagrams.
// The handshake negotiates one per connection (see negotiateSuite); both
// have 32-byte keys, 12-byte nonces (the datagram header's counter) and
// 16-byte tags, so counters, replay windows and key exchanges work the same
// for each.
type Suite uint8

const (
	// SuiteAESGCM is AES-256-GCM: the fastest where the CPU has AES and
	// carry-less multiply instructions, and not constant-time without them.
	SuiteAESGCM Suite = 1
	// SuiteChaCha is ChaCha20-Poly1305 (RFC 8439), the NaCl family's AEAD:
	// constant-time and fast in software on any CPU.
	SuiteChaCha Suite = 2
)

// suiteMask is the set of suites this version knows, as hello bits.
const suiteMask = byte(1<<SuiteAESGCM | 1<<SuiteChaCha)

func (s Suite) String() string {
	switch s {
	case SuiteAESGCM:
		return "aes-256-gcm"
	case SuiteChaCha:
		return "chacha20-poly1305"
	}
	return fmt.Sprintf("suite(%d)", uint8(s))
}

// CipherPolicy is a router's --cipher setting.
type CipherPolicy string

// Cipher policies (--cipher).
const (
	// CipherAuto accepts both suites and prefers AES-256-GCM only when
	// this CPU has AES and carry-less multiply in hardware.
	CipherAuto CipherPolicy = "auto"
	// CipherAESGCM accepts only AES-256-GCM.
	CipherAESGCM CipherPolicy = "aes-gcm"
	// CipherNaCl accepts only ChaCha20-Poly1305.
	CipherNaCl CipherPolicy = "nacl"
)

// ParseCipherPolicy parses a --cipher value ("" means auto).
func ParseCipherPolicy(s string) (CipherPolicy, error) {
	switch p := CipherPolicy(strings.ToLower(strings.TrimSpace(s))); p {
	case "", CipherAuto:
		return CipherAuto, nil
	case CipherAESGCM, CipherNaCl:
		return p, nil
	case "chacha20-poly1305", "chacha":
		return CipherNaCl, nil
	}
	return "", fmt.Errorf("unknown cipher %q: want auto, aes-gcm or nacl", s)
}

// HardwareAES reports whether Go's AES-GCM runs in constant time with
// hardware instructions (AES and carry-less multiply) on this CPU and this
// build, the condition under which CipherAuto prefers it.
func HardwareAES() bool { return !purego && hardwareAESOn(runtime.GOARCH) }

// hardwareAESOn is HardwareAES for the architecture arch. It asks what the
// standard library asks before it takes its assembly AES-GCM (crypto/tls's
// hasAESGCMHardwareSupport, crypto/internal/fips140/aes/gcm): having the
// instructions is not enough where Go has no assembly for them. On 386,
// for one, Go's AES is the table implementation whatever the CPU, and on
// amd64 the assembly also needs SSSE3 and SSE4.1.
func hardwareAESOn(arch string) bool {
	switch arch {
	case "amd64":
		x := cpu.X86
		return x.HasAES && x.HasPCLMULQDQ && x.HasSSE41 && x.HasSSSE3
	case "arm64":
		return cpu.ARM64.HasAES && cpu.ARM64.HasPMULL
	case "s390x":
		return cpu.S390X.HasAES && cpu.S390X.HasAESCTR && cpu.S390X.HasGHASH
	case "ppc64le", "ppc64":
		// Go's minimum there is POWER8, which has the instructions.
		return cpu.PPC64.IsPOWER8
	}
	return false
}

// hardwareAES is HardwareAES, replaced in tests to play either CPU.
var hardwareAES = HardwareAES

// offer is what a hello says about suites: the set it accepts (bit s for
// Suite s) and the one it prefers.
type offer struct {
	Accept byte
	Prefer Suite
}

// offerFor returns our offer under policy p; hw says whether this CPU has
// hardware AES (HardwareAES, injectable for tests).
func offerFor(p CipherPolicy, hw bool) offer {
	switch p {
	case CipherAESGCM:
		return offer{Accept: 1 << SuiteAESGCM, Prefer: SuiteAESGCM}
	case CipherNaCl:
		return offer{Accept: 1 << SuiteChaCha, Prefer: SuiteChaCha}
	}
	if hw {
		return offer{Accept: suiteMask, Prefer: SuiteAESGCM}
	}
	return offer{Accept: suiteMask, Prefer: SuiteChaCha}
}

// negotiateSuite picks the suite for a connection from both offers, the
// same on both ends: the suite both prefer if they agree and both accept
// it; otherwise ChaCha20-Poly1305 if both accept it (the suite that is safe
// everywhere); otherwise the one suite both accept. No suite in common is
// an error wrapping ErrCipher.
func negotiateSuite(ours, theirs offer) (Suite, error) {
	common := ours.Accept & theirs.Accept & suiteMask
	switch {
	case common == 0:
		return 0, fmt.Errorf("%w: we accept %s, the peer %s", ErrCipher, suiteNames(ours.Accept), suiteNames(theirs.Accept))
	case ours.Prefer == theirs.Prefer && common&(1<<ours.Prefer) != 0:
		return ours.Prefer, nil
	case common&(1<<SuiteChaCha) != 0:
		return SuiteChaCha, nil
	}
	return SuiteAESGCM, nil
}

func suiteNames(mask byte) string {
	var names []string
	for _, s := range []Suite{SuiteAESGCM, SuiteChaCha} {
		if mask&(1<<s) != 0 {
			names = append(names, s.String())
		}
	}
	if len(names) == 0 {
		return "none"
	}
	return strings.Join(names, " and ")
}
