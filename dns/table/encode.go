package table

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"time"

	"github.com/weavelab/weave/mesh/identity"
)

// Wire format of a message of entries (a delta or a full state):
//
//	format     byte = 1
//	count      uvarint              number of entries, <= the receiver's limit
//	count ×    origin    6 bytes     big-endian 48-bit peer name, not zero
//	           version   uvarint     1..MaxVersion
//	           flags     byte        bit0 tombstone, bit1 IPv6; no other bits
//	           addr      4 bytes, or 16 with bit1 (never IPv4-mapped)
//	           namelen   uvarint, name bytes: canonical (CanonicalName), <= MaxNameLen
//	           idlen     uvarint, container ID bytes: 1..MaxContainerLen (ValidateContainer)
//	           deleted   uvarint     only with bit0: unix seconds, 1..year 9999
//
// Every varint must be minimal and no key may appear twice, so a message
// has exactly one encoding and Encode(Decode(b)) == b for any b that
// decodes. A decoder rejects formats it does not know, unknown flag bits
// and trailing bytes: a new format gets a new format byte.
const (
	entriesFormat byte = 1

	flagTombstone byte = 1 << 0
	flagIPv6      byte = 1 << 1
	knownFlags         = flagTombstone | flagIPv6

	// minEntryLen is the fewest bytes an entry takes: origin, version,
	// flags, an IPv4 address, a two-byte name ("a.") and a one-byte ID.
	minEntryLen = 6 + 1 + 1 + 4 + 1 + 2 + 1 + 1
)

// Encode encodes entries in the wire format. They must be valid (as the
// table's are) with no key twice, and no more than the receiver accepts
// (split a full state with slices.Chunk); Decode rejects anything else.
func Encode(entries []Entry) []byte {
	size := 1 + binary.MaxVarintLen64
	for i := range entries {
		e := &entries[i]
		size += 6 + 1 + 16 + 3*binary.MaxVarintLen64 + 2 + len(e.Name) + len(e.Container)
	}
	b := make([]byte, 0, size)
	b = append(b, entriesFormat)
	b = binary.AppendUvarint(b, uint64(len(entries)))
	for i := range entries {
		e := &entries[i]
		b = identity.AppendName(b, e.Origin)
		b = binary.AppendUvarint(b, e.Version)
		var f byte
		if e.Tombstone {
			f |= flagTombstone
		}
		if e.Addr.Is6() {
			f |= flagIPv6
		}
		b = append(b, f)
		if e.Addr.Is4() {
			a := e.Addr.As4()
			b = append(b, a[:]...)
		} else {
			a := e.Addr.As16()
			b = append(b, a[:]...)
		}
		b = appendString(b, e.Name)
		b = appendString(b, e.Container)
		if e.Tombstone {
			b = binary.AppendUvarint(b, uint64(e.DeletedAt.Unix()))
		}
	}
	return b
}

// Decode decodes and validates a message of at most maxEntries entries
// (DefaultMaxEntriesPerMessage if maxEntries < 1). It is meant for bytes
// from other routers: it never panics, allocates in proportion to len(b) at
// most, and returns only valid entries (Entry.Validate) with no key twice.
// Errors wrap ErrInvalid.
func Decode(b []byte, maxEntries int) ([]Entry, error) {
	if maxEntries < 1 {
		maxEntries = DefaultMaxEntriesPerMessage
	}
	d := decoder{b: b}
	if f := d.byte(); d.err == nil && f != entriesFormat {
		return nil, fmt.Errorf("decode dns entries: %w: unknown format %d", ErrInvalid, f)
	}
	n := d.count(maxEntries)
	entries := make([]Entry, 0, n)
	seen := make(map[Key]struct{}, n)
	for i := 0; i < n && d.err == nil; i++ {
		var e Entry
		e.Origin = d.origin()
		e.Version = d.uvarint()
		f := d.byte()
		if f&^knownFlags != 0 {
			d.fail("entry %d: unknown flags %#x", i, f)
		}
		e.Tombstone = f&flagTombstone != 0
		if f&flagIPv6 != 0 {
			e.Addr = netip.AddrFrom16([16]byte(d.take(16)))
		} else {
			e.Addr = netip.AddrFrom4([4]byte(d.take(4)))
		}
		e.Name = d.string(MaxNameLen, "name")
		e.Container = d.string(MaxContainerLen, "container id")
		if e.Tombstone {
			if s := d.uvarint(); s <= maxUnix {
				e.DeletedAt = time.Unix(int64(s), 0).UTC()
			} else {
				d.fail("entry %d: deletion time %d out of range", i, s)
			}
		}
		if d.err != nil {
			break
		}
		if err := e.Validate(); err != nil {
			d.err = fmt.Errorf("entry %d: %w", i, err)
			break
		}
		if _, dup := seen[e.Key]; dup {
			d.fail("entry %d: %s %s of %s from %s listed twice", i, e.Name, e.Addr, e.Container, e.Origin)
			break
		}
		seen[e.Key] = struct{}{}
		entries = append(entries, e)
	}
	if err := d.finish(); err != nil {
		return nil, fmt.Errorf("decode dns entries: %w", err)
	}
	return entries, nil
}

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

// decoder reads from b; after the first error every read returns zero
// values (take returns a zeroed buffer of the size asked for, so that
// callers may convert it to an array) and the error sticks.
type decoder struct {
	b   []byte
	err error
	// zero backs take's answers after an error.
	zero [16]byte
}

func (d *decoder) fail(format string, args ...any) {
	if d.err == nil {
		d.err = fmt.Errorf("%w: "+format, append([]any{ErrInvalid}, args...)...)
	}
}

// take returns the next n (<= 16 after an error) bytes.
func (d *decoder) take(n int) []byte {
	if d.err == nil && n > len(d.b) {
		d.fail("truncated: want %d bytes, have %d", n, len(d.b))
	}
	if d.err != nil {
		return d.zero[:n]
	}
	v := d.b[:n]
	d.b = d.b[n:]
	return v
}

func (d *decoder) byte() byte { return d.take(1)[0] }

func (d *decoder) origin() identity.PeerName {
	return identity.ReadName(d.take(identity.NameLen))
}

// uvarint reads a minimal unsigned varint.
func (d *decoder) uvarint() uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b)
	switch {
	case n <= 0:
		d.fail("bad varint")
		return 0
	case n > 1 && d.b[n-1] == 0:
		d.fail("varint not minimally encoded")
		return 0
	}
	d.b = d.b[n:]
	return v
}

// count reads the entry count and checks it against max and against the
// bytes left, so that a hostile count cannot make us allocate more than
// the input justifies.
func (d *decoder) count(max int) int {
	v := d.uvarint()
	if d.err != nil {
		return 0
	}
	if v > uint64(max) {
		d.fail("%d entries, max %d", v, max)
		return 0
	}
	if v > uint64(len(d.b))/minEntryLen {
		d.fail("truncated: %d entries need at least %d bytes each, have %d", v, minEntryLen, len(d.b))
		return 0
	}
	return int(v)
}

func (d *decoder) string(max int, what string) string {
	n := d.uvarint()
	if d.err != nil {
		return ""
	}
	if n > uint64(max) {
		d.fail("%s of %d bytes, max %d", what, n, max)
		return ""
	}
	if n > uint64(len(d.b)) {
		d.fail("truncated: %s of %d bytes, have %d", what, n, len(d.b))
		return ""
	}
	s := string(d.b[:n])
	d.b = d.b[n:]
	return s
}

func (d *decoder) finish() error {
	if d.err == nil && len(d.b) != 0 {
		d.fail("%d trailing bytes", len(d.b))
	}
	return d.err
}
