package identity

import (
	"bytes"
	"testing"
)

func TestNameIsBoundToKey(t *testing.T) {
	k, err := GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	k2, err := KeyFromSeed(k.Seed())
	if err != nil {
		t.Fatal(err)
	}
	if k2.Public() != k.Public() || k2.Name() != k.Name() {
		t.Fatal("key rebuilt from its seed differs")
	}
	if err := CheckBinding(k.Name(), k.Public()); err != nil {
		t.Fatal(err)
	}
	other, _ := GenerateKey()
	if err := CheckBinding(k.Name(), other.Public()); err == nil {
		t.Fatal("another key accepted for the name")
	}
	mac := k.Name().MAC()
	if mac[0]&0x02 == 0 || mac[0]&0x01 != 0 {
		t.Fatalf("name %s is not a locally administered unicast address", k.Name())
	}
	// Not cached the first time: the iterated hash agrees with the cache.
	if nameOf(k.Public()) != NameOf(k.Public()) {
		t.Fatal("cache disagrees")
	}
	// A single flipped key bit gives an unrelated name.
	p := k.Public()
	p[31] ^= 1
	if NameOf(p) == k.Name() {
		t.Fatal("flipped key has the same name")
	}
}

func TestSignatureVerifies(t *testing.T) {
	k, _ := KeyFromSeed(bytes.Repeat([]byte{7}, SeedSize))
	sig := k.Sign([]byte("hello"))
	if !k.Public().Verify([]byte("hello"), sig[:]) {
		t.Fatal("own signature rejected")
	}
	if k.Public().Verify([]byte("hellO"), sig[:]) {
		t.Fatal("signature of another message accepted")
	}
	if k.Public().Verify([]byte("hello"), sig[:10]) {
		t.Fatal("short signature accepted")
	}
	if _, err := KeyFromSeed([]byte{1}); err == nil {
		t.Fatal("short seed accepted")
	}
}

func BenchmarkNameOf(b *testing.B) {
	k, _ := GenerateKey()
	p := k.Public()
	for b.Loop() {
		nameOf(p)
	}
}
