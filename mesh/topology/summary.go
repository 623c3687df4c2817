package topology

import (
	"cmp"
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

// NamedStamp is one entry of a summary: a name and the stamp of the entry
// held for it. Lists of them (sorted by name, no name twice) are what the
// gossip engine passes around, where a Summary would cost a map per
// message.
type NamedStamp struct {
	Name identity.PeerName
	Stamp
}

// Sorted returns s as a list sorted by name.
func (s Summary) Sorted() []NamedStamp {
	out := make([]NamedStamp, 0, len(s))
	for n, st := range s {
		out = append(out, NamedStamp{Name: n, Stamp: st})
	}
	slices.SortFunc(out, func(a, b NamedStamp) int { return cmp.Compare(a.Name, b.Name) })
	return out
}

func summaryOf(list []NamedStamp) Summary {
	s := make(Summary, len(list))
	for _, e := range list {
		s[e.Name] = e.Stamp
	}
	return s
}

// StampOf returns the stamp of entry p.
func StampOf(p *Peer) Stamp { return stampOf(p) }

// Beats reports whether an entry with stamp s supersedes one with stamp o
// (see Peer.Beats).
func (s Stamp) Beats(o Stamp) bool { return s.beats(o) }

func stampOf(p *Peer) Stamp { return Stamp{Version: p.Version, UID: p.UID} }

func (s Stamp) beats(o Stamp) bool {
	if s.Version != o.Version {
		return s.Version > o.Version
	}
	return s.UID > o.UID
}

// Summary returns the stamps of all our entries, ours included.
func (t *Topology) Summary() Summary {
	s := make(Summary, t.count)
	for p := range t.All() {
		s[p.Name] = stampOf(p)
	}
	return s
}

// NewerThan returns copies of our entries that the holder of s lacks or holds
// an older entry for (by the Merge rule), sorted by name: the update to send
// back to a neighbour that sent us s.
func (t *Topology) NewerThan(s Summary) []Peer {
	var out []Peer
	for p := range t.All() {
		if theirs, ok := s[p.Name]; !ok || stampOf(p).beats(theirs) {
			out = append(out, p.Clone())
		}
	}
	slices.SortFunc(out, func(a, b Peer) int { return cmp.Compare(a.Name, b.Name) })
	return out
}

// Wants reports whether s holds an entry that we lack or that would beat
// ours, so that we should ask its holder for an update (send it our own
// Summary). Together with NewerThan this makes one anti-entropy round
// symmetric.
func (t *Topology) Wants(s Summary) bool {
	for name, theirs := range s {
		p, ok := t.lookup(name)
		if !ok || theirs.beats(stampOf(p)) {
			return true
		}
	}
	return false
}

// Stamps returns the stamps of all our entries, ours included, sorted by
// name.
func (t *Topology) Stamps() []NamedStamp { return t.StampsOf(AllBuckets) }

// StampsOf returns the stamps of our entries in the buckets set in buckets
// (bit i for bucket i), sorted by name.
func (t *Topology) StampsOf(buckets uint64) []NamedStamp {
	var out []NamedStamp
	if buckets == AllBuckets {
		out = make([]NamedStamp, 0, t.count)
	}
	for p := range t.All() {
		if buckets == AllBuckets || buckets&(1<<BucketOf(p.Name)) != 0 {
			out = append(out, NamedStamp{Name: p.Name, Stamp: stampOf(p)})
		}
	}
	slices.SortFunc(out, func(a, b NamedStamp) int { return cmp.Compare(a.Name, b.Name) })
	return out
}

// Buckets is the number of parts into which names are hashed (BucketOf) for
// anti-entropy: two neighbours whose digests differ compare the digests of
// the buckets (8·Buckets bytes), then exchange the stamps of the buckets
// that differ, not of the whole topology.
const Buckets = 64

// AllBuckets is the bucket set (bit i for bucket i) covering every name.
const AllBuckets = ^uint64(0)

// BucketOf returns the bucket of name, in [0, Buckets).
func BucketOf(name identity.PeerName) int { return int(mix64(uint64(name)) % Buckets) }

// BucketDigests returns the digest of each bucket (see Digest).
func (t *Topology) BucketDigests() [Buckets]uint64 { return t.buckets }

// SummaryOf returns the stamps of our entries in the buckets set in
// buckets (bit i for bucket i).
func (t *Topology) SummaryOf(buckets uint64) Summary {
	if buckets == AllBuckets {
		return t.Summary()
	}
	s := make(Summary)
	for p := range t.All() {
		if buckets&(1<<BucketOf(p.Name)) != 0 {
			s[p.Name] = stampOf(p)
		}
	}
	return s
}

// Digest returns a short hash of the summary: two topologies with the same
// entries (by name, version and UID) have the same digest, so neighbours can
// skip a round of anti-entropy when their digests agree. It is cached until
// the topology changes.
func (t *Topology) Digest() uint64 { return t.digest }

// Digest returns a short hash of s, independent of map order: the sum of
// the entries' stampHash, so that a Topology can keep its digest up to
// date in O(1) per changed entry. It only lets neighbours skip a round of
// anti-entropy, so a collision costs a delay, not correctness (a forged one
// needs an authenticated peer, which can do worse).
func (s Summary) Digest() uint64 {
	var d uint64
	for n, st := range s {
		d += stampHash(n, st)
	}
	return d
}

// stampHash mixes one entry's name, version and UID into 64 bits.
func stampHash(n identity.PeerName, st Stamp) uint64 {
	h := mix64(uint64(n) ^ 0x9e3779b97f4a7c15)
	h = mix64(h ^ st.Version)
	return mix64(h ^ uint64(st.UID))
}

// mix64 is the splitmix64 finaliser.
func mix64(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	return x ^ x>>31
}
