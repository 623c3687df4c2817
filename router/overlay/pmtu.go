package overlay

import (
	"crypto/rand"
	"encoding/binary"
	"errors"
	"syscall"
	"time"

	"github.com/weavelab/weave/router/overlay/encap"
)

// Path MTU discovery, per connection. Once a connection is established,
// and again every PMTUInterval, when the remote's address moves or when a
// send fails with EMSGSIZE, the sender searches the largest IP packet that
// reaches the remote: rounds of probe datagrams with DF set (sent on a raw
// socket so the data socket keeps letting the kernel fragment), each of a
// candidate size and padded to it, which the remote acknowledges with a
// small probe-ack. A round holds up to probesPerRound sizes spread over the
// open interval, the largest first being the upper bound itself, so the
// common case (the whole underlay MTU passes) settles in one round and a
// narrower path in about four. A round ends when its answer is known (the
// largest unresolved size was acknowledged, or all failed locally with
// EMSGSIZE) or after the probe timeout; unanswered sizes count as too big,
// so a lost probe only makes the result smaller until the next search.
//
// The result is published only when a search settles; until the first one
// does, the connection uses the announced maximum (min of both underlays)
// and the kernel fragments if the path is narrower (data is sent without
// DF), so nothing is lost meanwhile.

const probesPerRound = 8

// pmtuSearch is the state of one search; sizes are IP packet sizes. Not
// safe for concurrent use (the conn's pmtuMu guards it).
type pmtuSearch struct {
	lo, hi int // lo is known to pass (or is the floor), hi known to fail (or the maximum + 1)
	round  uint32
	n      int // probes in the current round
	sizes  [probesPerRound]int
	// ids are the probes' cookies: random per probe, echoed by the ack.
	// Only an ack carrying one of the current round's ids counts, for the
	// size we probed with it, so a spoofed ack (the old ids were
	// round<<8|index) can neither invent nor inflate a path MTU.
	ids    [probesPerRound]uint64
	acked  [probesPerRound]bool
	failed [probesPerRound]bool // refused locally (EMSGSIZE)
	answer bool                 // some probe was acknowledged in this search
}

func newPMTUSearch(floor, max int) pmtuSearch {
	if max < floor {
		max = floor
	}
	return pmtuSearch{lo: floor, hi: max + 1}
}

// next folds in the current round's answers and plans the next round. It
// returns false when the search is over (the result is lo).
func (s *pmtuSearch) next() bool {
	if s.n > 0 {
		largest := -1
		for k := range s.n {
			if s.acked[k] && s.sizes[k] > s.lo {
				s.lo = s.sizes[k]
				largest = k
			}
		}
		for k := largest + 1; k < s.n; k++ {
			if !s.acked[k] && s.sizes[k] > s.lo && s.sizes[k] < s.hi {
				s.hi = s.sizes[k]
				break
			}
		}
	}
	s.n = 0
	s.acked, s.failed = [probesPerRound]bool{}, [probesPerRound]bool{}
	gap := s.hi - 1 - s.lo
	if gap <= 0 {
		return false
	}
	s.round++
	n := min(gap, probesPerRound)
	var cookies [8 * probesPerRound]byte
	rand.Read(cookies[:])
	for k := range n {
		// ascending, the last one the largest candidate (hi - 1)
		s.sizes[k] = s.lo + (gap*(k+1)+n-1)/n
		s.ids[k] = binary.LittleEndian.Uint64(cookies[8*k:])
	}
	s.n = n
	return true
}

// ack records the acknowledgement of the current round's probe with the
// given id, which reached the remote as an IP packet of size bytes (0:
// unknown). An unknown id (spoofed, or from an earlier round) changes
// nothing, nor does an ack reporting less than the size probed.
func (s *pmtuSearch) ack(id uint64, size int) {
	for k := range s.n {
		if s.ids[k] == id {
			if size != 0 && size < s.sizes[k] {
				return
			}
			s.acked[k] = true
			s.answer = true
			return
		}
	}
}

// decided says whether waiting longer cannot change the round's answer:
// the largest probe not refused locally was acknowledged.
func (s *pmtuSearch) decided() bool {
	for k := s.n - 1; k >= 0; k-- {
		if s.acked[k] {
			return true
		}
		if !s.failed[k] {
			return false
		}
	}
	return true
}

// pmtuState is a connection's prober; guarded by conn.pmtuMu.
type pmtuState struct {
	active  bool
	search  pmtuSearch
	started time.Time // when the current round was sent
	next    time.Time // when the next search is due
	probed  bool      // a search has settled at least once
}

// maxPathMTU is the largest IP packet the connection may use: our
// underlay MTU, or the remote's if smaller (from its hello).
func (c *conn) maxPathMTU() int {
	m := c.o.cfg.UnderlayMTU
	if r := int(c.remoteMax.Load()); r != 0 && r+ipv4Header+udpHeader < m {
		m = r + ipv4Header + udpHeader
	}
	return m
}

// pathMTU is the connection's effective path MTU: the last settled search,
// or the announced maximum before one settled.
func (c *conn) pathMTU() int {
	if v := int(c.pmtu.Load()); v != 0 {
		return v
	}
	return c.maxPathMTU()
}

// frameMTU is the largest IP packet inside a container frame that crosses
// this connection in one unfragmented datagram (the MTU to put in ICMP
// "fragmentation needed").
func (c *conn) frameMTU() int { return c.maxFrame() - ethHeader }

// probeTimeout is how long a round waits for acknowledgements.
func (c *conn) probeTimeout() time.Duration {
	return max(c.o.cfg.HeartbeatInterval, 3*time.Duration(c.rtt.Load()))
}

// requestProbe asks for a new search at the next tick (e.g. after
// EMSGSIZE). Safe from any goroutine.
func (c *conn) requestProbe() { c.reprobe.Store(true) }

// pmtuTick drives the prober from the maintenance loop; the connection is
// established.
func (c *conn) pmtuTick(now time.Time) {
	if c.o.prober == nil {
		return
	}
	c.pmtuMu.Lock()
	defer c.pmtuMu.Unlock()
	p := &c.probe
	if p.active {
		if !p.search.decided() && now.Sub(p.started) < c.probeTimeout() {
			return
		}
		c.advanceLocked(now)
		return
	}
	if now.Before(p.next) && !c.reprobe.Load() {
		return
	}
	c.reprobe.Store(false)
	p.search = newPMTUSearch(MinPathMTU, c.maxPathMTU())
	p.active = true
	c.advanceLocked(now)
}

// onProbeAck handles an authenticated probe-ack.
func (c *conn) onProbeAck(payload []byte) {
	if len(payload) < 8 {
		c.o.stats.drop(c.ctr, dropMalformed, 1)
		return
	}
	id, size := getUint64(payload), 0
	if len(payload) >= 10 {
		size = int(payload[8])<<8 | int(payload[9])
	}
	c.pmtuMu.Lock()
	defer c.pmtuMu.Unlock()
	p := &c.probe
	if !p.active {
		return
	}
	p.search.ack(id, size)
	if p.search.decided() {
		c.advanceLocked(c.o.cfg.Clock.Now())
	}
}

// advanceLocked ends the current round and sends the next, or publishes
// the result. Needs pmtuMu.
func (c *conn) advanceLocked(now time.Time) {
	p := &c.probe
	s := &p.search
	if !s.next() {
		p.active = false
		p.next = now.Add(c.o.cfg.PMTUInterval)
		if !s.answer {
			// Not even the smallest probe came back: the remote does not
			// answer probes (or they are filtered), rather than a path
			// narrower than 576 bytes. Keep what we use; try again later.
			c.o.cfg.Logger.Warn("overlay: no answer to path MTU probes; keeping the current MTU", "peer", c.remote.String(),
				"addr", c.addr.Load().String(), "conn", c.localIndex, "pmtu", c.pathMTU())
			return
		}
		old := c.pathMTU()
		if s.lo < old {
			// Lost probes (a loaded host, a burst of loss) make a search
			// err low, the first one too: confirm a drop soon.
			p.next = now.Add(min(c.o.cfg.PMTUInterval, 30*time.Second))
		}
		c.pmtu.Store(int32(s.lo))
		if !p.probed || old != s.lo {
			c.o.cfg.Logger.Info("overlay: path MTU", "peer", c.remote.String(), "addr", c.addr.Load().String(),
				"conn", c.localIndex, "pmtu", s.lo, "frame_mtu", c.frameMTU())
		}
		p.probed = true
		return
	}
	p.started = now
	for k := range 2 * s.n { // each size twice, so one lost probe does not count
		k := k % s.n
		if s.failed[k] {
			continue
		}
		if err := c.sendProbe(s.sizes[k], s.ids[k]); err != nil {
			s.failed[k] = true
			if !errors.Is(err, syscall.EMSGSIZE) {
				c.o.cfg.Logger.Debug("overlay: probe send failed", "peer", c.remote.String(), "size", s.sizes[k], "err", err)
			}
		}
	}
	if s.decided() {
		c.advanceLocked(now) // every probe refused locally
	}
}

// sendProbe sends a probe datagram padded so that its IP packet is size
// bytes, with DF set, on the raw socket.
func (c *conn) sendProbe(size int, id uint64) error {
	ri := c.remoteIndex.Load()
	if ri == 0 || c.stopped.Load() {
		return errors.New("connection not ready")
	}
	pkt := make([]byte, size)
	dg := pkt[ipv4Header+udpHeader:]
	plen := len(dg)
	if c.sealer != nil {
		plen -= encap.TagLen
	}
	if plen < encap.HeaderLen+8 {
		return errors.New("probe size too small")
	}
	h := encap.Header{Type: encap.TypeProbe, Receiver: ri, Sender: c.o.cfg.Peer}
	h.Put(dg)
	putUint64(dg[encap.HeaderLen:], id)
	d := dg[:plen]
	if err := c.seal(&d); err != nil {
		return err
	}
	return c.o.prober.send(pkt, c.o.lad.Port(), c.addr.Load().AddrPort())
}

// onProbe answers an authenticated probe with a probe-ack carrying its id
// and the datagram's size.
func (c *conn) onProbe(payload []byte, size int) {
	if len(payload) < 8 {
		c.o.stats.drop(c.ctr, dropMalformed, 1)
		return
	}
	ri := c.remoteIndex.Load()
	if ri == 0 || c.stopped.Load() {
		return
	}
	var buf [encap.HeaderLen + 10 + encap.TagLen]byte
	h := encap.Header{Type: encap.TypeProbeAck, Receiver: ri, Sender: c.o.cfg.Peer}
	h.Put(buf[:])
	copy(buf[encap.HeaderLen:], payload[:8])
	buf[encap.HeaderLen+8], buf[encap.HeaderLen+9] = byte(size>>8), byte(size)
	d := buf[:encap.HeaderLen+10]
	if err := c.seal(&d); err != nil {
		return
	}
	if err := c.o.writeTo(d, c.addr.Load().AddrPort()); err != nil {
		c.o.cfg.Logger.Debug("overlay: probe-ack send failed", "peer", c.remote.String(), "err", err)
	}
}

// pmtuProbed says whether a path MTU search has settled.
func (c *conn) pmtuProbed() bool {
	c.pmtuMu.Lock()
	defer c.pmtuMu.Unlock()
	return c.probe.probed
}
