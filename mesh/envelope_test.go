package mesh

import (
	"bytes"
	"testing"

	"github.com/weavelab/weave/mesh/identity"
	"github.com/weavelab/weave/mesh/topology"
)

func TestGossipEnvelopeRoundTrip(t *testing.T) {
	for _, m := range []gossipMsg{
		{kind: gossipBroadcast, ttl: maxTTL, src: 1, channel: "dns", payload: []byte("x")},
		{kind: gossipUnicast, ttl: 3, src: 0xffffffffffff, dst: 7, channel: "", payload: nil},
		{kind: gossipPeriodic, ttl: 1, src: 9, channel: string(bytes.Repeat([]byte("c"), maxChannelName)), payload: make([]byte, 1000)},
	} {
		b := m.encode()
		if b[0] != tagGossip {
			t.Fatalf("tag %d", b[0])
		}
		got, err := decodeGossip(b[1:])
		if err != nil {
			t.Fatal(err)
		}
		if got.kind != m.kind || got.ttl != m.ttl || got.src != m.src || got.dst != m.dst || got.channel != m.channel || !bytes.Equal(got.payload, m.payload) {
			t.Errorf("round trip of %+v gave %+v", m, got)
		}
	}
}

func TestDecodeRejects(t *testing.T) {
	good := (&gossipMsg{kind: gossipUnicast, ttl: 2, src: 1, dst: 2, channel: "ab"}).encode()[1:]
	mut := func(f func(b []byte) []byte) []byte { return f(bytes.Clone(good)) }
	for name, b := range map[string][]byte{
		"short":     good[:gossipHeaderLen-1],
		"kind 0":    mut(func(b []byte) []byte { b[0] = 0; return b }),
		"kind 4":    mut(func(b []byte) []byte { b[0] = 4; return b }),
		"ttl":       mut(func(b []byte) []byte { b[1] = maxTTL + 1; return b }),
		"zero src":  mut(func(b []byte) []byte { copy(b[2:8], make([]byte, 6)); return b }),
		"zero dst":  mut(func(b []byte) []byte { copy(b[8:14], make([]byte, 6)); return b }),
		"truncated": mut(func(b []byte) []byte { b[14] = 3; return b }),
	} {
		if _, err := decodeGossip(b); err == nil {
			t.Errorf("%s: decoded", name)
		}
	}
	if _, err := decodeHello([]byte{1}); err == nil {
		t.Error("short hello decoded")
	}
	if p, err := decodeHello(encodeHello(6783)[1:]); err != nil || p != 6783 {
		t.Errorf("hello = %d, %v", p, err)
	}
	if _, err := decodeDigest(make([]byte, 7)); err == nil {
		t.Error("short digest decoded")
	}
	if d, err := decodeDigest(encodeDigest(42)[1:]); err != nil || d != 42 {
		t.Errorf("digest = %d, %v", d, err)
	}
}

// FuzzDecodeEnvelope feeds arbitrary bytes to the decoders of the envelope
// bodies that the reader applies to network input; a body that decodes must
// re-encode to the same bytes.
func FuzzDecodeEnvelope(f *testing.F) {
	f.Add(encodeHello(6783))
	f.Add(encodeDigest(1 << 60))
	f.Add((&gossipMsg{kind: gossipBroadcast, ttl: 5, src: 3, channel: "ipam", payload: []byte("p")}).encode())
	f.Add((&gossipMsg{kind: gossipUnicast, ttl: 1, src: 3, dst: identity.PeerName(4), channel: "dns"}).encode())
	stamps := topology.Summary{identity.PeerName(3): {Version: 2, UID: 9}}
	f.Add(envelope(tagHave, topology.EncodeSummary(stamps)))
	f.Add(envelope(tagWant, topology.EncodeSummary(stamps)))
	f.Add(envelope(tagSummary, topology.EncodePartialSummary(topology.AllBuckets, stamps)))
	f.Add(envelope(tagBuckets, topology.EncodeBucketDigests(&[topology.Buckets]uint64{1, 2, 3})))
	f.Fuzz(func(t *testing.T, b []byte) {
		if len(b) == 0 {
			return
		}
		tag, body := b[0], b[1:]
		switch tag {
		case tagHello:
			if p, err := decodeHello(body); err == nil && !bytes.Equal(encodeHello(p), b) {
				t.Fatalf("hello %d re-encodes differently", p)
			}
		case tagDigest:
			if d, err := decodeDigest(body); err == nil && !bytes.Equal(encodeDigest(d), b) {
				t.Fatalf("digest %d re-encodes differently", d)
			}
		case tagGossip:
			if m, err := decodeGossip(body); err == nil && !bytes.Equal(m.encode(), b) {
				t.Fatalf("gossip %+v re-encodes differently", m)
			}
		default:
			if isTopology(tag) {
				if m, err := decodeTopoMsg(tag, body); err == nil && m.tag != tag {
					t.Fatalf("topology message of tag %d decoded as tag %d", tag, m.tag)
				}
			}
		}
	})
}
