package router

import (
	"encoding/json"
	"errors"
	"fmt"
	"github.com/moby/sys/atomicwriter"
	"net/netip"
	"os"
	"path/filepath"
	"slices"

	"github.com/weavelab/weave/router/netdev"
)

// stateFileName is the attachment table's file in Config.StateDir.
const stateFileName = "attachments.json"

const stateVersion = 1

// record is one attached container as persisted: enough to show it in ps
// after a restart, to recognise its namespace, and to delete its veth.
type record struct {
	ID string `json:"id"` // canonical container ref (a Docker container's full ID)
	// DockerPID is the init pid of a Docker container when attached (its
	// namespace is /proc/PID/ns/net); 0 for netns: and pid: containers.
	DockerPID int         `json:"docker_pid,omitempty"`
	NS        netdev.NSID `json:"netns"`
	// IfName is the container's interface when not ethwe (a CNI pod's eth0).
	IfName   string         `json:"ifname,omitempty"`
	HostVeth string         `json:"host_veth"`
	MAC      string         `json:"mac"`
	Addrs    []netip.Prefix `json:"addrs"`
}

func (r *record) clone() *record {
	c := *r
	c.Addrs = slices.Clone(r.Addrs)
	return &c
}

// ref is the container reference the record was attached by.
func (r *record) ref() (netdev.ContainerRef, error) {
	if r.DockerPID != 0 {
		ref := netdev.DockerContainer(r.ID, r.DockerPID)
		ref.IfName = r.IfName
		return ref, nil
	}
	ref, err := netdev.ParseContainer(r.ID)
	ref.IfName = r.IfName
	return ref, err
}

func (r *record) has(ip netip.Addr) bool {
	return slices.ContainsFunc(r.Addrs, func(p netip.Prefix) bool { return p.Addr() == ip })
}

type stateFile struct {
	Version     int       `json:"version"`
	Bridge      string    `json:"bridge"`
	Attachments []*record `json:"attachments"`
}

// loadState reads the attachment table; a missing file is an empty table.
func loadState(dir string) ([]*record, error) {
	if dir == "" {
		return nil, nil
	}
	path := filepath.Join(dir, stateFileName)
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read attachments: %w", err)
	}
	var st stateFile
	if err := json.Unmarshal(b, &st); err != nil {
		return nil, fmt.Errorf("read attachments %s: %w", path, err)
	}
	if st.Version != stateVersion {
		return nil, fmt.Errorf("read attachments %s: unsupported version %d", path, st.Version)
	}
	return st.Attachments, nil
}

// saveState writes the table atomically (temporary file, fsync, rename), so
// a crash leaves either the old or the new table. An empty dir saves nothing.
func saveState(dir, bridge string, recs []*record) error {
	if dir == "" {
		return nil
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("save attachments: %w", err)
	}
	b, err := json.MarshalIndent(stateFile{Version: stateVersion, Bridge: bridge, Attachments: recs}, "", "  ")
	if err != nil {
		return fmt.Errorf("save attachments: %w", err)
	}
	if err := atomicwriter.WriteFile(filepath.Join(dir, stateFileName), append(b, '\n'), 0o600); err != nil {
		return fmt.Errorf("save attachments: %w", err)
	}
	return nil
}

// removeState deletes the table (weave reset).
func removeState(dir string) error {
	if dir == "" {
		return nil
	}
	if err := os.Remove(filepath.Join(dir, stateFileName)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove attachments: %w", err)
	}
	return nil
}
