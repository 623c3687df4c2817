package daemon

import (
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
	peerNameFile = "peer-name"
	targetsFile  = "targets.json"
)

// State is the part of the state dir the daemon owns: the peer name and the
// targets. Not safe for concurrent use; the daemon serialises its calls.
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

// PeerName returns the peer name to use: override when not empty (and it
// is then remembered), else the stored one, else a new random one that is
// stored for the next start.
func (s *State) PeerName(override string) (identity.PeerName, error) {
	path := filepath.Join(s.dir, peerNameFile)
	if override != "" {
		n, err := identity.ParsePeerName(override)
		if err != nil {
			return 0, err
		}
		return n, atomicwriter.WriteFile(path, []byte(n.String()+"\n"), 0o644)
	}
	b, err := os.ReadFile(path)
	switch {
	case err == nil:
		n, err := identity.ParsePeerName(strings.TrimSpace(string(b)))
		if err != nil {
			return 0, fmt.Errorf("%s: %w (remove it or pass --name)", path, err)
		}
		return n, nil
	case !errors.Is(err, fs.ErrNotExist):
		return 0, fmt.Errorf("read peer name: %w", err)
	}
	n, err := identity.RandomPeerName()
	if err != nil {
		return 0, err
	}
	return n, atomicwriter.WriteFile(path, []byte(n.String()+"\n"), 0o644)
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
