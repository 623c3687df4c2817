package overlay

import (
	"log/slog"
	"net/netip"
	"time"

	"github.com/weavelab/weave/mesh/identity"
)

// fastRefreshInterval is how often the MAC table is refreshed from the
// bridge's record of fast-path traffic (see "How entries live").
const fastRefreshInterval = 2 * time.Second

// fastProgrammer keeps the kernel's forwarding entries equal to the wanted
// set. It belongs to the maintenance goroutine (no lock).
type fastProgrammer struct {
	fp          FastPath
	log         *slog.Logger
	programmed  map[uint64]netip.Addr // MAC -> peer underlay address
	failed      map[uint64]bool       // entries whose last change failed (logged once)
	lastRefresh time.Time
}

func newFastProgrammer(fp FastPath, log *slog.Logger) *fastProgrammer {
	return &fastProgrammer{fp: fp, log: log, programmed: map[uint64]netip.Addr{}, failed: map[uint64]bool{}}
}

// desiredEntries is the wanted set: every MAC the table gives to a peer in
// peers (MAC -> that peer's underlay address). Our own MACs and those of
// other peers stay on the TAP.
func desiredEntries(macs *macTable, peers map[identity.PeerName]netip.Addr) map[uint64]netip.Addr {
	want := map[uint64]netip.Addr{}
	if len(peers) == 0 {
		return want
	}
	macs.each(func(mac uint64, owner identity.PeerName) {
		if dst, ok := peers[owner]; ok {
			want[mac] = dst
		}
	})
	return want
}

func macBytes(mac uint64) [6]byte {
	return [6]byte{byte(mac >> 40), byte(mac >> 32), byte(mac >> 24), byte(mac >> 16), byte(mac >> 8), byte(mac)}
}

// apply removes the entries not in want (first, so that a MAC that moved
// never has two) and adds or changes the others. An entry whose change
// failed is retried at the next call.
func (p *fastProgrammer) apply(want map[uint64]netip.Addr) {
	for mac, dst := range p.programmed {
		if _, ok := want[mac]; ok {
			continue
		}
		if err := p.fp.DelEntry(macBytes(mac), dst); err != nil {
			p.logFailure(mac, "remove", err)
			continue
		}
		delete(p.programmed, mac)
		delete(p.failed, mac)
	}
	for mac, dst := range want {
		if cur, ok := p.programmed[mac]; ok && cur == dst {
			continue
		}
		if err := p.fp.SetEntry(macBytes(mac), dst); err != nil {
			p.logFailure(mac, "add", err)
			continue
		}
		p.programmed[mac] = dst
		delete(p.failed, mac)
	}
}

func (p *fastProgrammer) logFailure(mac uint64, op string, err error) {
	if p.failed[mac] {
		return
	}
	p.failed[mac] = true
	m := macBytes(mac)
	p.log.Warn("overlay: fast-path entry "+op+" failed", "mac", netHW(m[:]), "err", err)
}

func netHW(b []byte) string {
	const hex = "0123456789abcdef"
	out := make([]byte, 0, 17)
	for i, x := range b {
		if i > 0 {
			out = append(out, ':')
		}
		out = append(out, hex[x>>4], hex[x&15])
	}
	return string(out)
}

// refresh marks the programmed MACs the bridge forwarded to recently as
// seen at that time, so that the MAC table keeps them while traffic flows
// on the fast path (where the overlay does not see it).
func (p *fastProgrammer) refresh(macs *macTable, now time.Time) {
	p.lastRefresh = now
	if len(p.programmed) == 0 {
		return
	}
	ages, err := p.fp.EntryAges()
	if err != nil {
		p.log.Debug("overlay: fast-path entry ages", "err", err)
		return
	}
	for mac := range p.programmed {
		if age, ok := ages[macBytes(mac)]; ok {
			macs.touch(mac, now.Add(-age).UnixNano())
		}
	}
}

// clear removes every programmed entry (Close).
func (p *fastProgrammer) clear() { p.apply(nil) }

// syncFastPath brings the kernel's entries in line with the MAC table,
// connections and routes; run by the maintenance loop each tick.
func (o *Overlay) syncFastPath(now time.Time) {
	p := o.fastProg
	if p == nil {
		return
	}
	if now.Sub(p.lastRefresh) >= fastRefreshInterval {
		p.refresh(o.macs, now)
	}
	p.apply(desiredEntries(o.macs, o.fastPeers()))
}
