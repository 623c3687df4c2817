package topology

import (
	"crypto/sha256"
	"encoding/binary"
	"slices"

	"github.com/weavelab/weave/mesh/identity"
)

// Stamp is what a summary records about one peer entry: enough to tell which
// of two entries for a name wins (see Peer.Beats).
type Stamp struct {
	Version uint64       `json:"version"`
	UID     identity.UID `json:"uid"`
}

// Summary is a compact view of a topology for anti-entropy: one Stamp per
// known peer. Neighbours exchange summaries and then only the entries that
// differ (NewerThan), instead of whole topologies.
type Summary map[identity.PeerName]Stamp

func stampOf(p *Peer) Stamp { return Stamp{Version: p.Version, UID: p.UID} }

func (s Stamp) beats(o Stamp) bool {
	if s.Version != o.Version {
		return s.Version > o.Version
	}
	return s.UID > o.UID
}

// Summary returns the stamps of all our entries, ours included.
func (t *Topology) Summary() Summary {
	s := make(Summary, len(t.peers))
	for name, p := range t.peers {
		s[name] = stampOf(p)
	}
	return s
}

// NewerThan returns copies of our entries that the holder of s lacks or holds
// an older entry for (by the Merge rule), sorted by name: the update to send
// back to a neighbour that sent us s.
func (t *Topology) NewerThan(s Summary) []Peer {
	var out []Peer
	for name, p := range t.peers {
		if theirs, ok := s[name]; !ok || stampOf(p).beats(theirs) {
			out = append(out, p.Clone())
		}
	}
	slices.SortFunc(out, func(a, b Peer) int { return cmpName(a.Name, b.Name) })
	return out
}

// Wants reports whether s holds an entry that we lack or that would beat
// ours, so that we should ask its holder for an update (send it our own
// Summary). Together with NewerThan this makes one anti-entropy round
// symmetric.
func (t *Topology) Wants(s Summary) bool {
	for name, theirs := range s {
		p, ok := t.peers[name]
		if !ok || theirs.beats(stampOf(p)) {
			return true
		}
	}
	return false
}

// Digest returns a short hash of the summary: two topologies with the same
// entries (by name, version and UID) have the same digest, so neighbours can
// skip a round of anti-entropy when their digests agree. It is cached until
// the topology changes.
func (t *Topology) Digest() uint64 {
	if !t.digestOK {
		t.digest, t.digestOK = t.Summary().Digest(), true
	}
	return t.digest
}

// Digest returns a short hash of s, independent of map order.
func (s Summary) Digest() uint64 {
	names := make([]identity.PeerName, 0, len(s))
	for n := range s {
		names = append(names, n)
	}
	slices.Sort(names)
	h := sha256.New()
	var b [24]byte
	for _, n := range names {
		st := s[n]
		binary.BigEndian.PutUint64(b[0:], uint64(n))
		binary.BigEndian.PutUint64(b[8:], st.Version)
		binary.BigEndian.PutUint64(b[16:], uint64(st.UID))
		h.Write(b[:])
	}
	return binary.BigEndian.Uint64(h.Sum(nil))
}
