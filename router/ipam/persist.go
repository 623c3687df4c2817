package ipam

import (
	"encoding/json"
	"errors"
	"fmt"
	"github.com/moby/sys/atomicwriter"
	"os"
	"path/filepath"

	"github.com/weavelab/weave/mesh/identity"
)

// StateFile is the allocator's file in the state directory.
const StateFile = "ipam.json"

const persistVersion = 1

// persisted is what survives a restart: the ring as we last knew it (our
// own entries are only ever newer here than anywhere else, because we save
// before we send), our consensus claims (an acceptor must not forget a
// promise), and our allocations.
type persisted struct {
	Version int               `json:"version"`
	Peer    identity.PeerName `json:"peer"`
	Ring    *Ring             `json:"ring"`
	Claims  *Claims           `json:"claims,omitempty"`
	Allocs  []Alloc           `json:"allocs"`
}

// snapshot returns what to persist.
func (c *Core) snapshot() persisted {
	p := persisted{Version: persistVersion, Peer: c.cfg.Us, Ring: c.ring.Clone(), Allocs: c.Allocs()}
	if own, ok := c.cons.known[c.cfg.Us]; ok && !c.ring.Seeded() {
		p.Claims = &own
	}
	return p
}

// restore loads persisted state into a fresh Core. A file of another peer
// name is ignored (the caller logs it); one of another range is an error.
func (c *Core) restore(p persisted) error {
	if p.Ring == nil {
		return errors.New("no ring")
	}
	if err := p.Ring.validate(); err != nil {
		return err
	}
	if p.Ring.Range != c.rng {
		return fmt.Errorf("the state dir holds addresses of allocation range %s but --ipalloc-range is %s: launch with that range, or weave reset to start afresh", p.Ring.Range, c.rng)
	}
	c.ring = p.Ring.Clone()
	if p.Claims != nil && !c.ring.Seeded() {
		c.cons.known[c.cfg.Us] = *p.Claims
	}
	for _, a := range p.Allocs {
		if !a.Addr.Is4() || !c.rng.Contains(AddrFrom(a.Addr)) {
			continue
		}
		al := a
		c.allocs[AddrFrom(a.Addr)] = &al
	}
	c.updateFree()
	c.out = nil // nothing to send before we are connected
	return nil
}

// loadFile reads the state file; a missing file is (zero, false, nil).
func loadFile(dir string) (persisted, bool, error) {
	var p persisted
	if dir == "" {
		return p, false, nil
	}
	path := filepath.Join(dir, StateFile)
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return p, false, nil
	}
	if err != nil {
		return p, false, fmt.Errorf("read %s: %w", path, err)
	}
	if err := json.Unmarshal(b, &p); err != nil {
		return p, false, fmt.Errorf("read %s: %w", path, err)
	}
	if p.Version != persistVersion {
		return p, false, fmt.Errorf("read %s: unsupported version %d", path, p.Version)
	}
	return p, true, nil
}

// saveFile writes the state atomically: temporary file, fsync, rename.
func saveFile(dir string, p persisted) error {
	if dir == "" {
		return nil
	}
	b, err := json.Marshal(p)
	if err != nil {
		return fmt.Errorf("save ipam state: %w", err)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("save ipam state: %w", err)
	}
	if err := atomicwriter.WriteFile(filepath.Join(dir, StateFile), b, 0o600); err != nil {
		return fmt.Errorf("save ipam state: %w", err)
	}
	return nil
}
