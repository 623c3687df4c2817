package topology

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"github.com/weavelab/weave/mesh/identity"
)

func seededKey(tb testing.TB, n byte) *identity.Key {
	tb.Helper()
	k, err := identity.KeyFromSeed(bytes.Repeat([]byte{n}, identity.SeedSize))
	if err != nil {
		tb.Fatal(err)
	}
	return k
}

// signedPeer is a router's own signed topology, as its mesh keeps it.
func signedPeer(tb testing.TB, n byte, uid identity.UID) (*Topology, *identity.Key) {
	tb.Helper()
	k := seededKey(tb, n)
	t, err := NewSigned(identity.Peer{Name: k.Name(), NickName: "p", UID: uid}, k)
	if err != nil {
		tb.Fatal(err)
	}
	return t, k
}

// TestForgedEntryAtMaxVersionIsRejected: a peer (M, with a key of its own)
// publishes entries about B: at the maximum version (which B could never
// outbid), making itself B's only neighbour, signed with its own key, with
// B's key but its own signature, or unsigned. A rejects every one, keeps
// B's own entry and its route to B, and still takes B's next genuine entry.
func TestForgedEntryAtMaxVersionIsRejected(t *testing.T) {
	a, ka := signedPeer(t, 1, 11)
	b, kb := signedPeer(t, 2, 22)
	_, km := signedPeer(t, 3, 33)
	a.SetOurConns([]Conn{{Remote: kb.Name(), Established: true}})
	upd := b.SetOurConns([]Conn{{Remote: ka.Name(), Established: true}})
	if _, err := a.Merge(upd); err != nil {
		t.Fatal(err)
	}
	if hop, ok := a.Routes().Unicast(kb.Name()); !ok || hop != kb.Name() {
		t.Fatalf("route to B before the attack: %s %v", hop, ok)
	}
	genuine, _ := a.Get(kb.Name())

	forge := func(how string) Peer {
		p := Peer{Peer: identity.Peer{Name: kb.Name(), NickName: "b", UID: 22}, Version: MaxVersion,
			Conns: []Conn{{Remote: km.Name(), Established: true}}}
		switch how {
		case "own key":
			p.sign(km)
		case "B's key, own signature":
			p.sign(km)
			p.Key = kb.Public()
		case "replayed signature":
			p.Key, p.Sig = genuine.Key, genuine.Sig
		case "unsigned":
		}
		return p
	}
	for _, how := range []string{"own key", "B's key, own signature", "replayed signature", "unsigned"} {
		// Through the wire format too, as a neighbour would send it.
		dec, err := DecodeUpdate(EncodeUpdate([]Peer{forge(how)}))
		if err != nil {
			t.Fatal(err)
		}
		changed, err := a.Merge(dec)
		if !errors.Is(err, ErrSignature) || !errors.Is(err, ErrInvalid) || len(changed) != 0 {
			t.Fatalf("%s: merge = %v, %v; want ErrSignature and no change", how, changed, err)
		}
	}
	if got, _ := a.Get(kb.Name()); got.Version != genuine.Version || got.Sig != genuine.Sig {
		t.Fatalf("B's entry changed to version %d", got.Version)
	}
	if hop, ok := a.Routes().Unicast(kb.Name()); !ok || hop != kb.Name() {
		t.Fatalf("route to B after the attack: %s %v", hop, ok)
	}
	// An update with one forged entry changes nothing, not even its good ones.
	next := b.SetOurConns([]Conn{{Remote: ka.Name(), Established: true}, {Remote: km.Name()}})
	if _, err := a.Merge(append(next, forgeOther(t, km, ka))); err == nil {
		t.Fatal("mixed update accepted")
	}
	if got, _ := a.Get(kb.Name()); got.Version != genuine.Version {
		t.Fatal("a mixed update with a forged entry changed B's entry")
	}
	if _, err := a.Merge(next); err != nil {
		t.Fatalf("B's next genuine entry: %v", err)
	}
}

// forgeOther is an entry about victim signed by signer.
func forgeOther(t *testing.T, signer, victim *identity.Key) Peer {
	p := Peer{Peer: identity.Peer{Name: victim.Name(), UID: 5}, Version: 1 << 40}
	p.sign(signer)
	return p
}

// TestOwnEntryForgedWithOurNameIsIgnored: an entry for our name that we did
// not sign (another UID, higher version) neither replaces ours nor makes us
// bump our version to the attacker's number.
func TestOwnEntryForgedWithOurNameIsIgnored(t *testing.T) {
	a, ka := signedPeer(t, 1, 11)
	_, km := signedPeer(t, 3, 33)
	fake := Peer{Peer: identity.Peer{Name: ka.Name(), UID: 99}, Version: MaxVersion - 1}
	fake.sign(km)
	if _, err := a.Merge([]Peer{fake}); !errors.Is(err, ErrSignature) {
		t.Fatalf("forged own entry: %v", err)
	}
	if a.Our().Version != 1 {
		t.Fatalf("our version moved to %d", a.Our().Version)
	}
}

// TestRestartedPeerSupersedesItsOldEntries: B restarts with the same key and
// a new UID; A still holds the old run's entry at a higher version. When the
// new run hears of it, it bumps above it (signing its new entry), and A
// takes the new entry.
func TestRestartedPeerSupersedesItsOldEntries(t *testing.T) {
	a, ka := signedPeer(t, 1, 11)
	old, _ := signedPeer(t, 2, 22)
	var upd []Peer
	for range 50 {
		upd = old.SetOurConns([]Conn{{Remote: ka.Name(), Established: true}})
	}
	if _, err := a.Merge(upd); err != nil {
		t.Fatal(err)
	}
	restarted, kb := signedPeer(t, 2, 23)
	changed, err := restarted.Merge(a.Peers())
	if err != nil {
		t.Fatal(err)
	}
	var ours *Peer
	for i := range changed {
		if changed[i].Name == kb.Name() {
			ours = &changed[i]
		}
	}
	if ours == nil || ours.UID != 23 || ours.Version != upd[0].Version+1 {
		t.Fatalf("restarted peer did not bump above its old run: %+v", changed)
	}
	if _, err := a.Merge([]Peer{*ours}); err != nil {
		t.Fatalf("A refused the restarted peer's entry: %v", err)
	}
	if got, _ := a.Get(kb.Name()); got.UID != 23 {
		t.Fatalf("A holds uid %d", got.UID)
	}
}

// TestPinnedKeyIsCheckedBeforeBinding: an entry for a known name with a
// different key is refused as such (the pin), even before its binding is
// looked at, so a colliding key found later cannot displace a known peer.
func TestPinnedKeyIsCheckedBeforeBinding(t *testing.T) {
	a, _ := signedPeer(t, 1, 11)
	b, _ := signedPeer(t, 2, 22)
	_, km := signedPeer(t, 3, 33)
	if _, err := a.Merge([]Peer{b.Our()}); err != nil {
		t.Fatal(err)
	}
	p := b.Our()
	p.Version++
	p.sign(km)
	_, err := a.Merge([]Peer{p})
	if !errors.Is(err, ErrSignature) || !strings.Contains(err.Error(), "another key") {
		t.Fatalf("got %v, want the pinned-key refusal", err)
	}
}

func TestNewSignedNeedsTheKeysName(t *testing.T) {
	k := seededKey(t, 1)
	if _, err := NewSigned(identity.Peer{Name: seededKey(t, 2).Name(), UID: 1}, k); !errors.Is(err, identity.ErrNameNotBound) {
		t.Fatalf("got %v", err)
	}
}
