package netdev

import (
	"errors"
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
)

// ContainerIfName is the name of a container's interface on the network.
const ContainerIfName = "ethwe"

// NetnsDir is where `ip netns` keeps named network namespaces.
const NetnsDir = "/var/run/netns"

// Kinds of container reference.
const (
	KindNetns  = "netns"
	KindPID    = "pid"
	KindDocker = "docker"
)

// ErrNotNamespaceRef is returned by ParseContainer for anything that is not
// netns:... or pid:...: the caller may resolve it as a Docker container.
var ErrNotNamespaceRef = errors.New("not a namespace reference (netns:NAME, netns:PATH or pid:N)")

// NSID identifies a network namespace by its nsfs device and inode, so two
// references to one namespace (netns:NAME and pid:N) are recognised.
type NSID struct {
	Dev uint64 `json:"dev"`
	Ino uint64 `json:"ino"`
}

// String is "dev:ino".
func (id NSID) String() string { return fmt.Sprintf("%d:%d", id.Dev, id.Ino) }

// ContainerRef names a container by its network namespace: netns:NAME (a
// namespace under /var/run/netns), netns:/PATH (a namespace file), or pid:N
// (the namespace of process N).
type ContainerRef struct {
	Kind string // KindNetns or KindPID
	Name string // NAME for netns:NAME, else empty
	PID  int    // N for pid:N, else 0
	Path string // the namespace file
	// IfName is the container's interface on the network; empty means
	// ContainerIfName. It is not part of the container's identity (String):
	// a CNI runtime names it (eth0), everything else uses ethwe.
	IfName string
}

// IfaceName is the name of the container's interface on the network.
func (c ContainerRef) IfaceName() string {
	if c.IfName == "" {
		return ContainerIfName
	}
	return c.IfName
}

// ParseContainer parses a CONTAINER argument. Its errors do not repeat s:
// callers add it as context.
func ParseContainer(s string) (ContainerRef, error) {
	kind, rest, ok := strings.Cut(s, ":")
	switch {
	case s == "":
		return ContainerRef{}, errors.New("no container given")
	case ok && kind == KindNetns:
		if rest == "" {
			return ContainerRef{}, errors.New("empty namespace name")
		}
		if strings.Contains(rest, "/") {
			if !filepath.IsAbs(rest) {
				return ContainerRef{}, errors.New("namespace path must be absolute")
			}
			return ContainerRef{Kind: KindNetns, Path: filepath.Clean(rest)}, nil
		}
		if rest == "." || rest == ".." {
			return ContainerRef{}, errors.New("invalid namespace name")
		}
		return ContainerRef{Kind: KindNetns, Name: rest, Path: filepath.Join(NetnsDir, rest)}, nil
	case ok && kind == KindPID:
		pid, err := strconv.Atoi(rest)
		if err != nil || pid <= 0 {
			return ContainerRef{}, errors.New("pid must be a positive integer")
		}
		return ContainerRef{Kind: KindPID, PID: pid, Path: "/proc/" + strconv.Itoa(pid) + "/ns/net"}, nil
	default:
		return ContainerRef{}, ErrNotNamespaceRef
	}
}

// DockerContainer refers to a running Docker container's namespace by the
// container's full ID and its init process's pid (resolved by the caller).
func DockerContainer(id string, pid int) ContainerRef {
	return ContainerRef{Kind: KindDocker, Name: id, PID: pid, Path: "/proc/" + strconv.Itoa(pid) + "/ns/net"}
}

// String is the canonical form: netns:NAME, netns:/PATH, pid:N, or a Docker
// container's full ID.
func (c ContainerRef) String() string {
	switch {
	case c.Kind == KindDocker:
		return c.Name
	case c.Kind == KindPID:
		return KindPID + ":" + strconv.Itoa(c.PID)
	case c.Name != "":
		return KindNetns + ":" + c.Name
	default:
		return KindNetns + ":" + c.Path
	}
}
