package dns

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// resolvMarker starts every resolv.conf that weave writes.
const resolvMarker = "# weaveDNS: written by weave"

// ResolvConf returns a resolv.conf that sends every query to the router at
// ns, searching domain first, and keeping the search domains and options of
// old (the container's previous resolv.conf, nil for none). Its other name
// servers are dropped: weaveDNS forwards every name outside its domain to
// the host's resolvers itself.
func ResolvConf(old []byte, ns netip.Addr, domain string) []byte {
	domain = strings.TrimSuffix(domain, ".")
	search := []string{domain}
	var options []string
	sc := bufio.NewScanner(bytes.NewReader(old))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 2 {
			continue
		}
		switch f[0] {
		case "search", "domain":
			for _, d := range f[1:] {
				if d = strings.TrimSuffix(d, "."); !slices.Contains(search, d) {
					search = append(search, d)
				}
			}
		case "options":
			for _, o := range f[1:] {
				if !slices.Contains(options, o) {
					options = append(options, o)
				}
			}
		}
	}
	var b bytes.Buffer
	fmt.Fprintf(&b, "%s\nsearch %s\nnameserver %s\n", resolvMarker, strings.Join(search, " "), ns)
	if len(options) > 0 {
		fmt.Fprintf(&b, "options %s\n", strings.Join(options, " "))
	}
	return b.Bytes()
}

// WriteResolvConf points the resolv.conf at path at weaveDNS (see
// ResolvConf). It writes in place rather than by rename, because Docker
// bind-mounts a container's resolv.conf and a renamed file would not be
// seen inside. A file weave wrote before is rewritten from scratch.
func WriteResolvConf(path string, ns netip.Addr, domain string) error {
	old, err := os.ReadFile(path)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("resolv.conf: %w", err)
	}
	if bytes.HasPrefix(old, []byte(resolvMarker)) {
		old = nil
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("resolv.conf: %w", err)
	}
	if err := os.WriteFile(path, ResolvConf(old, ns, domain), 0o644); err != nil {
		return fmt.Errorf("resolv.conf: %w", err)
	}
	return nil
}

// RemoveResolvConf deletes the resolv.conf at path if weave wrote it (a
// netns container's, under /etc/netns, on detach).
func RemoveResolvConf(path string) error {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if !bytes.HasPrefix(b, []byte(resolvMarker)) {
		return nil
	}
	if err := os.Remove(path); err != nil {
		return err
	}
	// The per-namespace directory we made goes too, once empty (a
	// directory with other files in it stays: os.Remove refuses).
	if dir := filepath.Dir(path); filepath.Dir(dir) == "/etc/netns" {
		os.Remove(dir)
	}
	return nil
}

// NetnsResolvConf is the resolv.conf that `ip netns exec NAME` shows a
// named namespace's processes.
func NetnsResolvConf(name string) string {
	return filepath.Join("/etc/netns", name, "resolv.conf")
}
