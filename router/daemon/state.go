package daemon

import (
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/moby/sys/atomicwriter"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/weavelab/weave/mesh/identity"
)

// Files the daemon keeps in the state dir. Other packages (the container
// network) keep their own files next to these.
const (
	identityFile = "identity.key"
	targetsFile  = "targets.json"
)

// State is the part of the state dir the daemon owns: the identity key
// (which names the router) and the targets. Not safe for concurrent use; the daemon serialises its calls.
type State struct {
	dir string
}

// OpenState creates dir (0700) if needed.
func OpenState(dir string) (*State, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("state dir: %w", err)
	}
	return &State{dir: dir}, nil
}

// Dir returns the state directory.
func (s *State) Dir() string { return s.dir }

// Identity returns the router's identity key, creating it (mode 0600) at
// the first start. The router's name is the key's name (identity.NameOf),
// so it is as stable as the state dir. want, when not empty (--name), must
// be that name: a name cannot be chosen, only checked.
func (s *State) Identity(want string) (*identity.Key, error) {
	path := filepath.Join(s.dir, identityFile)
	key, err := s.loadIdentity(path)
	if err != nil {
		return nil, err
	}
	if want != "" {
		n, err := identity.ParsePeerName(want)
		if err != nil {
			return nil, err
		}
		if n != key.Name() {
			return nil, fmt.Errorf("--name %s: this router's name is %s, the name of its identity key (%s); names are derived from keys, so drop --name or use the state dir that holds %s's key", n, key.Name(), path, n)
		}
	}
	return key, nil
}

func (s *State) loadIdentity(path string) (*identity.Key, error) {
	b, err := os.ReadFile(path)
	switch {
	case err == nil:
		fi, err := os.Stat(path)
		if err != nil {
			return nil, fmt.Errorf("identity key: %w", err)
		}
		if fi.Mode().Perm()&0o077 != 0 {
			return nil, fmt.Errorf("identity key %s is readable by others (mode %04o): chmod 600 it", path, fi.Mode().Perm())
		}
		seed, err := hex.DecodeString(strings.TrimSpace(string(b)))
		if err != nil {
			return nil, fmt.Errorf("identity key %s: not hex: %w", path, err)
		}
		k, err := identity.KeyFromSeed(seed)
		if err != nil {
			return nil, fmt.Errorf("identity key %s: %w", path, err)
		}
		return k, nil
	case !errors.Is(err, fs.ErrNotExist):
		return nil, fmt.Errorf("identity key: %w", err)
	}
	k, err := identity.GenerateKey()
	if err != nil {
		return nil, err
	}
	if err := atomicwriter.WriteFile(path, []byte(hex.EncodeToString(k.Seed())+"\n"), 0o600); err != nil {
		return nil, fmt.Errorf("identity key: %w", err)
	}
	return k, nil
}

// Targets returns the stored targets (none when the file is missing).
func (s *State) Targets() ([]string, error) {
	path := filepath.Join(s.dir, targetsFile)
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read targets: %w", err)
	}
	var t []string
	if err := json.Unmarshal(b, &t); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return t, nil
}

// SetTargets replaces the stored targets.
func (s *State) SetTargets(targets []string) error {
	if targets == nil {
		targets = []string{}
	}
	b, err := json.Marshal(targets)
	if err != nil {
		return err
	}
	if err := atomicwriter.WriteFile(filepath.Join(s.dir, targetsFile), append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("save targets: %w", err)
	}
	return nil
}
