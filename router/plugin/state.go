package plugin

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

// stateFile is what the state file holds.
type stateFile struct {
	Networks  []*Network  `json:"networks"`
	Endpoints []*Endpoint `json:"endpoints"`
}

// load reads the state file, if any.
func (s *Server) load() error {
	if s.cfg.StateFile == "" {
		return nil
	}
	b, err := os.ReadFile(s.cfg.StateFile)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("plugin state: %w", err)
	}
	var st stateFile
	if err := json.Unmarshal(b, &st); err != nil {
		return fmt.Errorf("plugin state %s: %w", s.cfg.StateFile, err)
	}
	for _, n := range st.Networks {
		s.networks[n.ID] = n
		s.restoredNets[n.ID] = n
	}
	for _, ep := range st.Endpoints {
		s.endpoints[ep.EndpointID] = ep
		s.restoredEps[ep.EndpointID] = ep
	}
	return nil
}

// saveLocked writes the state file (atomically). s.mu must be held.
func (s *Server) saveLocked() error {
	if s.cfg.StateFile == "" {
		return nil
	}
	st := stateFile{Networks: []*Network{}, Endpoints: []*Endpoint{}}
	for _, n := range s.networks {
		st.Networks = append(st.Networks, n)
	}
	for _, ep := range s.endpoints {
		st.Endpoints = append(st.Endpoints, ep)
	}
	b, err := json.Marshal(st)
	if err != nil {
		return err
	}
	tmp := s.cfg.StateFile + ".new"
	if err := os.MkdirAll(filepath.Dir(tmp), 0o755); err != nil {
		return fmt.Errorf("plugin state: %w", err)
	}
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return fmt.Errorf("plugin state: %w", err)
	}
	if err := os.Rename(tmp, s.cfg.StateFile); err != nil {
		return fmt.Errorf("plugin state: %w", err)
	}
	return nil
}
