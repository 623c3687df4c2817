package topology

import (
	"cmp"
	"errors"
	"fmt"
	"slices"
	"unicode/utf8"

	"github.com/weavelab/weave/mesh/identity"
)

// Limits on what a peer may claim. They bound both the decoder (so hostile
// input cannot make us allocate much) and Merge.
const (
	// MaxPeers bounds the number of peers in one update or summary.
	MaxPeers = 16384
	// MaxConnsPerPeer bounds the connections one peer may report.
	MaxConnsPerPeer = 1024
	// MaxNickNameLen bounds a nickname in bytes.
	MaxNickNameLen = identity.MaxNickNameLen
	// MaxAddrLen bounds Conn.RemoteAddr in bytes (a host name of 253 bytes
	// plus brackets and ":65535" fits).
	MaxAddrLen = 262
	// MaxVersion bounds versions, so that bumping ours above another
	// entry's (see Topology.Merge) can never overflow.
	MaxVersion = 1<<63 - 1
)

// ErrInvalid is wrapped by every error about a malformed peer entry, update
// or summary, whether it came from the decoder or was passed to Merge.
var ErrInvalid = errors.New("invalid topology update")

// Conn is one connection as its owning peer reports it.
type Conn struct {
	Remote      identity.PeerName `json:"remote"`
	RemoteAddr  string            `json:"remote_addr,omitempty"` // host:port the owner reached it at, for discovery
	Outbound    bool              `json:"outbound"`
	Established bool              `json:"established"`
}

// Peer is one peer's state as gossiped: identity, a version that the peer
// itself bumps on every change, and its connections (sorted by Remote once
// stored in a Topology). In a signed topology (see NewSigned) Key is the
// peer's identity key, to which its name is bound, and Sig its signature of
// the rest of the entry (SignedBytes); only the peer itself can make one.
type Peer struct {
	identity.Peer
	Version uint64                       `json:"version"`
	Conns   []Conn                       `json:"conns"`
	Key     identity.PublicKey           `json:"-"`
	Sig     [identity.SignatureSize]byte `json:"-"`
}

// Clone returns a deep copy of p.
func (p Peer) Clone() Peer {
	p.Conns = slices.Clone(p.Conns)
	return p
}

// Beats reports whether entry p supersedes entry q for the same peer name:
// the higher version wins; on equal versions the higher UID wins (so two runs
// of one name that happen to share a version still resolve the same way on
// every peer). An entry never beats itself.
func (p Peer) Beats(q Peer) bool {
	if p.Version != q.Version {
		return p.Version > q.Version
	}
	return p.UID > q.UID
}

// Validate checks one peer entry: a non-zero name and UID, a version in
// [1, MaxVersion], a
// nickname and addresses within bounds and valid UTF-8, at most
// MaxConnsPerPeer connections, none to itself or to the zero name, and no
// remote listed twice. Errors wrap ErrInvalid.
func (p *Peer) Validate() error {
	switch {
	case p.Name == identity.UnknownPeer:
		return fmt.Errorf("%w: peer with zero name", ErrInvalid)
	case p.UID == 0:
		return fmt.Errorf("%w: peer %s: zero uid", ErrInvalid, p.Name)
	case p.Version == 0:
		return fmt.Errorf("%w: peer %s: version 0", ErrInvalid, p.Name)
	case p.Version > MaxVersion:
		return fmt.Errorf("%w: peer %s: version %d above max %d", ErrInvalid, p.Name, p.Version, uint64(MaxVersion))
	case len(p.NickName) > MaxNickNameLen:
		return fmt.Errorf("%w: peer %s: nickname longer than %d bytes", ErrInvalid, p.Name, MaxNickNameLen)
	case !utf8.ValidString(p.NickName):
		return fmt.Errorf("%w: peer %s: nickname not UTF-8", ErrInvalid, p.Name)
	case len(p.Conns) > MaxConnsPerPeer:
		return fmt.Errorf("%w: peer %s: %d connections, max %d", ErrInvalid, p.Name, len(p.Conns), MaxConnsPerPeer)
	}
	// Stored and well-formed entries list remotes ascending: then no
	// remote is listed twice, and no map is needed to tell.
	var seen map[identity.PeerName]struct{}
	if !connsAscending(p.Conns) {
		seen = make(map[identity.PeerName]struct{}, len(p.Conns))
	}
	for _, c := range p.Conns {
		switch {
		case c.Remote == identity.UnknownPeer:
			return fmt.Errorf("%w: peer %s: connection to zero name", ErrInvalid, p.Name)
		case c.Remote == p.Name:
			return fmt.Errorf("%w: peer %s: connection to itself", ErrInvalid, p.Name)
		case len(c.RemoteAddr) > MaxAddrLen:
			return fmt.Errorf("%w: peer %s: address of %s longer than %d bytes", ErrInvalid, p.Name, c.Remote, MaxAddrLen)
		case !utf8.ValidString(c.RemoteAddr):
			return fmt.Errorf("%w: peer %s: address of %s not UTF-8", ErrInvalid, p.Name, c.Remote)
		}
		if seen == nil {
			continue
		}
		if _, dup := seen[c.Remote]; dup {
			return fmt.Errorf("%w: peer %s: connection to %s listed twice", ErrInvalid, p.Name, c.Remote)
		}
		seen[c.Remote] = struct{}{}
	}
	return nil
}

// connsAscending reports whether conns lists remotes strictly ascending.
func connsAscending(conns []Conn) bool {
	for i := 1; i < len(conns); i++ {
		if conns[i].Remote <= conns[i-1].Remote {
			return false
		}
	}
	return true
}

// ValidateUpdate checks every entry of an update and that no peer name
// appears twice. Errors wrap ErrInvalid.
func ValidateUpdate(update []Peer) error {
	if len(update) > MaxPeers {
		return fmt.Errorf("%w: %d peers, max %d", ErrInvalid, len(update), MaxPeers)
	}
	// Senders list entries by name, ascending: no name twice, no map.
	var seen map[identity.PeerName]struct{}
	for i := 1; i < len(update); i++ {
		if update[i].Name <= update[i-1].Name {
			seen = make(map[identity.PeerName]struct{}, len(update))
			break
		}
	}
	for i := range update {
		if err := update[i].Validate(); err != nil {
			return err
		}
		if seen == nil {
			continue
		}
		if _, dup := seen[update[i].Name]; dup {
			return fmt.Errorf("%w: peer %s listed twice", ErrInvalid, update[i].Name)
		}
		seen[update[i].Name] = struct{}{}
	}
	return nil
}

// sortConns puts conns in canonical order (by Remote).
func sortConns(conns []Conn) {
	slices.SortFunc(conns, func(a, b Conn) int { return cmp.Compare(a.Remote, b.Remote) })
}

// ErrSignature is wrapped (together with ErrInvalid) by Merge's error when
// a signed topology is given an entry that its owner did not sign: no
// signature, a bad one, a key its name is not bound to, or a key other than
// the one the stored entry for that name has.
var ErrSignature = errors.New("entry not signed by its peer")

// SignedBytes is what an entry's owner signs: a label, then the entry in the
// update encoding without key and signature, connections in canonical order.
func (p *Peer) SignedBytes() []byte {
	q := *p
	if !slices.IsSortedFunc(q.Conns, func(a, b Conn) int { return cmp.Compare(a.Remote, b.Remote) }) {
		q.Conns = slices.Clone(q.Conns)
		sortConns(q.Conns)
	}
	return appendEntry([]byte("weave topology entry v1"), &q)
}

// sign sets p's key and signature; p.Conns must be sorted.
func (p *Peer) sign(k *identity.Key) {
	p.Key = k.Public()
	p.Sig = k.Sign(p.SignedBytes())
}

// verify checks that p is signed by the key its name is bound to.
func (p *Peer) verify() error {
	if p.Key.IsZero() {
		return fmt.Errorf("%w: %w: %s has no key", ErrInvalid, ErrSignature, p.Name)
	}
	if err := identity.CheckBinding(p.Name, p.Key); err != nil {
		return fmt.Errorf("%w: %w: %w", ErrInvalid, ErrSignature, err)
	}
	if !p.Key.Verify(p.SignedBytes(), p.Sig[:]) {
		return fmt.Errorf("%w: %w: bad signature on the entry of %s (version %d)", ErrInvalid, ErrSignature, p.Name, p.Version)
	}
	return nil
}
