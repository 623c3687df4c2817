package api

import (
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"text/tabwriter"

	"github.com/weavelab/weave/mesh/identity"
)

// ErrUnknownSection is returned (wrapped) by CheckSection for a name that
// is no status section.
var ErrUnknownSection = errors.New("unknown status section")

// ErrNotAvailable is returned (wrapped) by CheckSection for a section of
// the CLI contract whose feature this version does not have yet.
var ErrNotAvailable = errors.New("not available in this version")

// CheckSection validates a `weave status` section name ("" is the summary).
func CheckSection(s string) error {
	if s == "" || slices.Contains(Sections, s) {
		return nil
	}
	if feature, ok := unavailableSections[s]; ok {
		return fmt.Errorf("weave status %s: %s is %w", s, feature, ErrNotAvailable)
	}
	if len(unavailableSections) == 0 {
		return fmt.Errorf("%w %q: want one of %s", ErrUnknownSection, s, strings.Join(Sections, ", "))
	}
	return fmt.Errorf("%w %q: want one of %s (%s: %s)", ErrUnknownSection, s, strings.Join(Sections, ", "),
		strings.Join(slices.Sorted(maps.Keys(unavailableSections)), " and "), ErrNotAvailable)
}

// Section returns the part of st that GET /status/SECTION and
// `weave status SECTION --json` show.
func Section(st Status, section string) (any, error) {
	if err := CheckSection(section); err != nil {
		return nil, err
	}
	switch section {
	case "peers":
		return nonNil(st.Peers), nil
	case "connections":
		return nonNil(st.Connections), nil
	case "targets":
		return nonNil(st.Targets), nil
	case "ipam":
		if st.IPAM == nil {
			return &IPAM{State: "off", Peers: []IPAMPeer{}}, nil
		}
		return st.IPAM, nil
	case "dns":
		if st.DNS == nil {
			return &DNS{Upstreams: []string{}, Entries: []DNSEntry{}}, nil
		}
		return st.DNS, nil
	}
	return st, nil
}

func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}

// FormatStatus writes the text form of one status section ("" for the
// summary) to w, as `weave status [SECTION]` prints it.
func FormatStatus(w io.Writer, st Status, section string) error {
	if err := CheckSection(section); err != nil {
		return err
	}
	switch section {
	case "peers":
		return FormatPeers(w, st)
	case "connections":
		return FormatConnections(w, st)
	case "targets":
		return FormatTargets(w, st)
	case "ipam":
		return FormatIPAM(w, st)
	case "dns":
		return FormatDNS(w, st)
	}
	return FormatSummary(w, st)
}

// FormatSummary writes the summary that plain `weave status` prints.
func FormatSummary(w io.Writer, st Status) error {
	enc := "disabled"
	switch {
	case st.Encryption && st.Salt == SaltNetwork:
		enc = "enabled (password stretched with Argon2id, per-network salt)"
	case st.Encryption && st.Salt == SaltDefault:
		enc = "enabled (password stretched with Argon2id, default salt: set --network-salt on every peer)"
	case st.Encryption:
		enc = "enabled"
	}
	if st.Encryption && st.Cipher != "" {
		hw := "no AES hardware: prefers chacha20-poly1305"
		if st.HardwareAES {
			hw = "AES hardware: prefers aes-256-gcm"
		}
		if st.Cipher != "auto" {
			hw = "forced"
		}
		enc += fmt.Sprintf("; data cipher %s (%s)", st.Cipher, hw)
	}
	if st.Encryption {
		if used := cipherBreakdown(st.Connections); used != "" {
			enc += "; in use: " + used
		}
	}
	disc := "disabled"
	if st.Discovery {
		disc = "enabled"
	}
	established := 0
	for _, p := range st.Peers {
		for _, c := range p.Conns {
			if c.Established {
				established++
			}
		}
	}
	rows := [][2]string{
		{"Version", st.Version},
		{"Name", st.Peer.String()},
		{"Encryption", enc},
		{"PeerDiscovery", disc},
		{"Port", fmt.Sprint(st.Port)},
	}
	if st.MTU > 0 {
		rows = append(rows, [2]string{"MTU", fmt.Sprint(st.MTU)})
	}
	rows = append(rows,
		[2]string{"Targets", fmt.Sprint(len(st.Targets))},
		[2]string{"Connections", fmt.Sprintf("%d%s", len(st.Connections), connBreakdown(st.Connections))},
		[2]string{"Peers", fmt.Sprintf("%d (with %d established connections)", len(st.Peers), established)},
	)
	if d := st.DNS; d != nil {
		rows = append(rows, [2]string{"DNS", fmt.Sprintf("%s at %s, %d entries", d.Domain, d.Address, len(d.Entries))})
	}
	if p := st.Plugin; p != nil {
		rows = append(rows, [2]string{"Plugin", fmt.Sprintf("%s at %s, %d networks, %d endpoints", p.Name, p.Socket, p.Networks, p.Endpoints)})
	}
	if ip := st.IPAM; ip != nil {
		rows = append(rows,
			[2]string{"Range", ip.Range},
			[2]string{"DefaultSubnet", ip.DefaultSubnet},
			[2]string{"IPAM", ipamState(ip)})
	}
	var b strings.Builder
	for _, r := range rows {
		fmt.Fprintf(&b, "%15s: %s\n", r[0], r[1])
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// cipherBreakdown returns how many established connections use each data
// cipher suite, "2 aes-256-gcm, 1 chacha20-poly1305", or "" for none (a
// connection's own suite is in `weave status connections`).
func cipherBreakdown(conns []Connection) string {
	counts := map[string]int{}
	for _, c := range conns {
		if c.State == StateEstablished && c.Cipher != "" {
			counts[c.Cipher]++
		}
	}
	var parts []string
	for _, s := range slices.Sorted(maps.Keys(counts)) {
		parts = append(parts, fmt.Sprintf("%d %s", counts[s], s))
	}
	return strings.Join(parts, ", ")
}

// connBreakdown returns " (2 established, 1 failed)" or "".
func connBreakdown(conns []Connection) string {
	counts := map[string]int{}
	for _, c := range conns {
		counts[c.State]++
	}
	if len(counts) == 0 {
		return ""
	}
	order := []string{StateEstablished, StateHandshake, StateConnecting, StateFailed}
	var parts []string
	for _, s := range order {
		if counts[s] > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", counts[s], s))
			delete(counts, s)
		}
	}
	for _, s := range slices.Sorted(maps.Keys(counts)) {
		parts = append(parts, fmt.Sprintf("%d %s", counts[s], s))
	}
	return " (" + strings.Join(parts, ", ") + ")"
}

// FormatPeers writes every peer as NAME(nickname), each followed by the
// connections it reports.
func FormatPeers(w io.Writer, st Status) error {
	// Align the columns across all peers (tabwriter would restart its
	// columns at each peer's line).
	addrW, peerW := 0, 0
	for _, p := range st.Peers {
		for _, c := range p.Conns {
			addrW = max(addrW, len(orDash(c.Addr)))
			peerW = max(peerW, len(peerString(c.Remote)))
		}
	}
	var b strings.Builder
	for _, p := range st.Peers {
		fmt.Fprintf(&b, "%s\n", p.Peer)
		for _, c := range p.Conns {
			state := "pending"
			if c.Established {
				state = StateEstablished
			}
			fmt.Fprintf(&b, "   %s %-*s  %-*s  %s\n", arrow(c.Outbound), addrW, orDash(c.Addr), peerW, peerString(c.Remote), state)
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// FormatConnections writes our connections: direction, address, state,
// peer, then the failure reason or the data-plane counters.
func FormatConnections(w io.Writer, st Status) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	for _, c := range st.Connections {
		detail := c.Reason
		if c.Path != "" {
			p := c.Path
			if c.PathReason != "" {
				p += " (" + c.PathReason + ")"
			}
			if detail != "" {
				detail += "; "
			}
			detail += p
		}
		if c.Cipher != "" {
			if detail != "" {
				detail += "; "
			}
			detail += c.Cipher
		}
		if c.Stats != nil {
			s := formatStats(*c.Stats)
			if detail != "" {
				detail += "; "
			}
			detail += s
		}
		peer := "-"
		if c.Peer != nil {
			peer = peerString(*c.Peer)
		}
		fmt.Fprintf(tw, "%s %s\t%s\t%s\t%s\n", arrow(c.Outbound), orDash(c.Addr), c.State, peer, detail)
	}
	return tw.Flush()
}

// FormatTargets writes the targets given by connect or launch, one address
// a line.
func FormatTargets(w io.Writer, st Status) error {
	var b strings.Builder
	for _, t := range st.Targets {
		b.WriteString(t.Addr)
		b.WriteByte('\n')
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// ipamState is the allocator's state in one line.
func ipamState(ip *IPAM) string {
	s := ip.State
	switch ip.State {
	case "ready":
		s = fmt.Sprintf("ready, %d allocated here", ip.Allocated)
		if ip.Held > 0 {
			s += fmt.Sprintf(", %d held for containers that died", ip.Held)
		}
	case "awaiting consensus":
		s = fmt.Sprintf("awaiting consensus: %d of %d peers needed take part", len(ip.Participants), ip.Quorum)
	case "idle":
		s = "idle: the range is divided among peers at the first allocation"
	case "observer":
		s = "observer: waiting for another peer to divide the range"
	}
	if ip.Pending > 0 {
		s += fmt.Sprintf(", %d requests waiting for space", ip.Pending)
	}
	return s
}

// FormatIPAM writes `weave status ipam`: the allocator's state, then each
// peer's share of the range.
func FormatIPAM(w io.Writer, st Status) error {
	ip := st.IPAM
	if ip == nil {
		ip = &IPAM{State: "off"}
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%15s: %s\n%15s: %s\n%15s: %s\n", "Range", ip.Range, "DefaultSubnet", ip.DefaultSubnet, "State", ipamState(ip))
	if len(ip.Seeds) > 0 {
		seeds := make([]string, len(ip.Seeds))
		for i, p := range ip.Seeds {
			seeds[i] = peerString(p)
		}
		fmt.Fprintf(&b, "%15s: %s\n", "Seeded by", strings.Join(seeds, " "))
	}
	var total uint64
	for _, p := range ip.Peers {
		total += p.Size
	}
	tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
	for _, p := range ip.Peers {
		pct := 0.0
		if total > 0 {
			pct = 100 * float64(p.Size) / float64(total)
		}
		note := ""
		if !p.Reachable {
			note = "\tunreachable!"
		}
		fmt.Fprintf(tw, "%s\t%d IPs (%.1f%% of total)\t%d used\t%d free%s\n", peerString(p.Peer), p.Size, pct, p.Size-min(p.Free, p.Size), p.Free, note)
	}
	tw.Flush()
	_, err := io.WriteString(w, b.String())
	return err
}

// FormatDNS writes `weave status dns`: where weaveDNS listens, then one
// line per entry: NAME ADDR CONTAINER ORIGIN.
func FormatDNS(w io.Writer, st Status) error {
	d := st.DNS
	if d == nil {
		_, err := io.WriteString(w, "weaveDNS is off (--no-dns)\n")
		return err
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%15s: %s\n%15s: %s\n%15s: %s\n%15s: %d\n", "Domain", d.Domain, "Address", d.Address,
		"Upstreams", strings.Join(d.Upstreams, " "), "Entries", len(d.Entries))
	tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
	for _, e := range d.Entries {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", e.Name, e.Addr, shortID(e.Container), peerString(e.Origin))
	}
	tw.Flush()
	_, err := io.WriteString(w, b.String())
	return err
}

// FormatContainers writes `weave ps` lines: ID MAC IP/prefix..., Docker
// containers by their short (12-digit) ID.
func FormatContainers(w io.Writer, cs []Container) error {
	var b strings.Builder
	for _, c := range cs {
		b.WriteString(strings.Join(append([]string{shortID(c.ID), c.MAC}, c.Addrs...), " "))
		b.WriteByte('\n')
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func formatStats(s PeerStats) string {
	out := fmt.Sprintf("in %d frames %s, out %d frames %s", s.FramesIn, bytesString(s.BytesIn), s.FramesOut, bytesString(s.BytesOut))
	var total uint64
	for _, n := range s.Drops {
		total += n
	}
	if total > 0 {
		var parts []string
		for _, r := range slices.Sorted(maps.Keys(s.Drops)) {
			if s.Drops[r] > 0 {
				parts = append(parts, fmt.Sprintf("%s %d", r, s.Drops[r]))
			}
		}
		out += fmt.Sprintf(", dropped %d (%s)", total, strings.Join(parts, ", "))
	}
	if s.PMTU > 0 {
		out += fmt.Sprintf(", pmtu %d", s.PMTU)
	}
	return out
}

func bytesString(n uint64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%dB", n)
	}
	div, exp := uint64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f%ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

func arrow(outbound bool) string {
	if outbound {
		return "->"
	}
	return "<-"
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func peerString(p identity.Peer) string {
	if p.Name == identity.UnknownPeer {
		return "-"
	}
	if p.NickName == "" {
		return p.Name.String()
	}
	return p.String()
}

// shortID shortens a full 64-digit Docker container ID to 12 digits, as
// docker ps shows it; other IDs are returned as they are.
func shortID(id string) string {
	if len(id) != 64 {
		return id
	}
	for _, r := range id {
		if !(r >= '0' && r <= '9' || r >= 'a' && r <= 'f') {
			return id
		}
	}
	return id[:12]
}
