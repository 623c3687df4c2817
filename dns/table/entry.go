package table

import (
	"cmp"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/weavelab/weave/mesh/identity"
)

// Limits on what an entry may hold. They bound the decoder (so hostile
// input cannot make us allocate much) and every way into the table.
const (
	// MaxNameLen bounds a canonical name in bytes, trailing dot included:
	// 253 bytes of presentation form, the most a DNS name can carry.
	MaxNameLen = 254
	// MaxLabelLen bounds one label of a name.
	MaxLabelLen = 63
	// MaxContainerLen bounds a container ID: "netns:" plus a 255-byte
	// namespace name (NAME_MAX) is the longest form we produce; a Docker ID
	// is 64 bytes.
	MaxContainerLen = len("netns:") + 255
	// MaxVersion bounds versions. It is well below 1<<64 so that bumping
	// our counter above another entry's version (see Table.Merge) cannot
	// overflow; reaching it takes 2^62 changes or a peer that lies.
	MaxVersion = 1 << 62
	// DefaultMaxEntriesPerMessage is the default bound on entries in one
	// encoded message (see Decode).
	DefaultMaxEntriesPerMessage = 1 << 14
)

// Container IDs of names added by hand rather than for a container.
const (
	// ContainerExpose marks the host's own names (`weave expose -h FQDN`).
	ContainerExpose = "weave:expose"
	// ContainerExtern marks names for addresses outside any container
	// (`weave dns-add IP... -h FQDN`).
	ContainerExtern = "weave:extern"
)

var (
	// ErrInvalid is wrapped by every error about a malformed name, address,
	// container ID, entry or message, whether from the decoder or a caller.
	ErrInvalid = errors.New("invalid dns entry")
	// ErrVersionExhausted is wrapped when our counter would pass MaxVersion,
	// which only a peer claiming absurd versions for us can cause.
	ErrVersionExhausted = errors.New("dns entry version counter exhausted")
)

// Key identifies an entry. Only the origin peer creates, changes or
// tombstones entries with its name as Origin.
type Key struct {
	Origin    identity.PeerName `json:"origin"`
	Container string            `json:"container"` // Docker ID, "netns:NAME", ContainerExpose or ContainerExtern
	Name      string            `json:"name"`      // canonical: lower case with a trailing dot, see CanonicalName
	Addr      netip.Addr        `json:"addr"`      // IPv4 or IPv6, no zone, never IPv4-mapped IPv6
}

// Entry is one (name, address) record as replicated between routers.
type Entry struct {
	Key
	// Version comes from the origin's counter, bumped on every change the
	// origin makes; for one key the higher version wins.
	Version uint64 `json:"version"`
	// Tombstone marks a removed entry. It is kept (see Table.GC) so that it
	// beats older copies of the live entry still travelling the mesh.
	Tombstone bool `json:"tombstone,omitempty"`
	// DeletedAt is when the origin made the tombstone, in whole seconds
	// (UTC); zero for live entries. Routers expire tombstones by it.
	DeletedAt time.Time `json:"deleted_at,omitzero"`
}

// beats reports whether e supersedes cur, an entry with the same key: the
// higher version wins; at equal versions a tombstone beats a live entry
// (two runs of one origin that reused a version then resolve the same way
// everywhere until the origin re-asserts). DeletedAt does not count, so two
// copies of one tombstone never displace each other.
func (e *Entry) beats(cur *Entry) bool {
	if e.Version != cur.Version {
		return e.Version > cur.Version
	}
	return e.Tombstone && !cur.Tombstone
}

// same reports whether e and o say the same thing about one key.
func (e *Entry) same(o *Entry) bool {
	return e.Version == o.Version && e.Tombstone == o.Tombstone
}

// Validate checks an entry: a non-zero 48-bit origin, a valid container ID,
// a canonical name, a valid address, a version in [1, MaxVersion], and a
// DeletedAt in whole seconds after 1970 that is set exactly on tombstones.
// Errors wrap ErrInvalid.
func (e *Entry) Validate() error {
	if e.Origin == identity.UnknownPeer || e.Origin > 1<<48-1 {
		return fmt.Errorf("%w: origin %#x is not a peer name", ErrInvalid, uint64(e.Origin))
	}
	if err := ValidateContainer(e.Container); err != nil {
		return err
	}
	if c, err := CanonicalName(e.Name); err != nil {
		return err
	} else if c != e.Name {
		return fmt.Errorf("%w: name %q is not canonical (want %q)", ErrInvalid, e.Name, c)
	}
	if err := validateAddr(e.Addr); err != nil {
		return err
	}
	if e.Version == 0 || e.Version > MaxVersion {
		return fmt.Errorf("%w: %s: version %d outside [1, %d]", ErrInvalid, e.Name, e.Version, uint64(MaxVersion))
	}
	switch {
	case !e.Tombstone && !e.DeletedAt.IsZero():
		return fmt.Errorf("%w: %s: live entry with a deletion time", ErrInvalid, e.Name)
	case e.Tombstone && (e.DeletedAt.Unix() <= 0 || e.DeletedAt.Unix() > maxUnix):
		return fmt.Errorf("%w: %s: tombstone deletion time %v out of range", ErrInvalid, e.Name, e.DeletedAt)
	case e.Tombstone && e.DeletedAt.Nanosecond() != 0:
		return fmt.Errorf("%w: %s: tombstone deletion time %v not in whole seconds", ErrInvalid, e.Name, e.DeletedAt)
	}
	return nil
}

// maxUnix is the last second of year 9999, a bound on deletion times.
const maxUnix = 253402300799

// deletionTime is how tombstones record now: whole seconds, UTC, no
// monotonic reading, the form that survives encoding unchanged. A clock
// before 1970 (a caller's bug) still yields a valid time.
func deletionTime(now time.Time) time.Time {
	return time.Unix(min(max(now.Unix(), 1), maxUnix), 0).UTC()
}

// CanonicalName returns the form in which the table stores a DNS name: lower
// case, with a trailing dot ("DB.weave.local" -> "db.weave.local."). The
// name must have labels of 1 to 63 letters, digits, '-' or '_' that
// neither start nor end with '-', and at most 253 bytes without the trailing
// dot. Errors wrap ErrInvalid.
func CanonicalName(name string) (string, error) {
	if name == "" || name == "." {
		return "", fmt.Errorf("%w: empty name", ErrInvalid)
	}
	if !strings.HasSuffix(name, ".") {
		name += "."
	}
	if len(name) > MaxNameLen {
		return "", fmt.Errorf("%w: name of %d bytes, max %d", ErrInvalid, len(name)-1, MaxNameLen-1)
	}
	start := 0
	for i := 0; i < len(name); i++ {
		c := name[i]
		switch {
		case c == '.':
			label := name[start:i]
			switch {
			case label == "":
				return "", fmt.Errorf("%w: name %q has an empty label", ErrInvalid, name)
			case len(label) > MaxLabelLen:
				return "", fmt.Errorf("%w: name %q has a label of %d bytes, max %d", ErrInvalid, name, len(label), MaxLabelLen)
			case label[0] == '-' || label[len(label)-1] == '-':
				return "", fmt.Errorf("%w: name %q has a label starting or ending with '-'", ErrInvalid, name)
			}
			start = i + 1
		case 'a' <= c && c <= 'z', '0' <= c && c <= '9', c == '-', c == '_', 'A' <= c && c <= 'Z':
		default:
			return "", fmt.Errorf("%w: name %q has character %q (want letters, digits, '-', '_')", ErrInvalid, name, c)
		}
	}
	return lowerASCII(name), nil
}

// lookupName turns a query into the canonical form without validating it:
// a name that is not valid is simply not in the table.
func lookupName(name string) string {
	name = lowerASCII(name)
	if !strings.HasSuffix(name, ".") {
		name += "."
	}
	return name
}

// lowerASCII lower-cases ASCII letters, returning s itself (no allocation)
// when there is nothing to change.
func lowerASCII(s string) string {
	for i := 0; i < len(s); i++ {
		if 'A' <= s[i] && s[i] <= 'Z' {
			b := []byte(s)
			for j := i; j < len(b); j++ {
				if 'A' <= b[j] && b[j] <= 'Z' {
					b[j] += 'a' - 'A'
				}
			}
			return string(b)
		}
	}
	return s
}

// ValidateContainer checks a container ID: 1 to MaxContainerLen bytes of
// UTF-8 with no spaces or control characters. Errors wrap ErrInvalid.
func ValidateContainer(id string) error {
	switch {
	case id == "":
		return fmt.Errorf("%w: empty container id", ErrInvalid)
	case len(id) > MaxContainerLen:
		return fmt.Errorf("%w: container id of %d bytes, max %d", ErrInvalid, len(id), MaxContainerLen)
	case printableASCII(id):
		return nil
	case !utf8.ValidString(id):
		return fmt.Errorf("%w: container id %q is not UTF-8", ErrInvalid, id)
	case strings.IndexFunc(id, func(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) }) >= 0:
		return fmt.Errorf("%w: container id %q has spaces or control characters", ErrInvalid, id)
	}
	return nil
}

// printableASCII reports whether s is all ASCII with no spaces or control
// characters, the common case that ValidateContainer checks fast.
func printableASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] <= ' ' || s[i] >= 0x7f {
			return false
		}
	}
	return true
}

// canonicalAddr is how the table stores addresses: IPv4-mapped IPv6
// unmapped, so that one address has one key.
func canonicalAddr(a netip.Addr) netip.Addr { return a.Unmap() }

func validateAddr(a netip.Addr) error {
	switch {
	case !a.IsValid():
		return fmt.Errorf("%w: no address", ErrInvalid)
	case a.Zone() != "":
		return fmt.Errorf("%w: address %s has a zone", ErrInvalid, a)
	case a.Is4In6():
		return fmt.Errorf("%w: address %s is IPv4-mapped IPv6", ErrInvalid, a)
	case a.IsUnspecified():
		return fmt.Errorf("%w: unspecified address %s", ErrInvalid, a)
	}
	return nil
}

// compareEntries orders entries by name, address, container, then origin:
// the order of every list the table returns.
func compareEntries(a, b *Entry) int {
	if c := strings.Compare(a.Name, b.Name); c != 0 {
		return c
	}
	if c := a.Addr.Compare(b.Addr); c != 0 {
		return c
	}
	if c := strings.Compare(a.Container, b.Container); c != 0 {
		return c
	}
	return cmp.Compare(a.Origin, b.Origin)
}

// NamesOf returns the distinct names in entries, sorted: what a delta
// from Table.Remove or Table.RemoveContainer touched, for logs and replies.
func NamesOf(entries []Entry) []string {
	seen := make(map[string]bool, len(entries))
	var out []string
	for i := range entries {
		if n := entries[i].Name; !seen[n] {
			seen[n] = true
			out = append(out, n)
		}
	}
	slices.Sort(out)
	return out
}
