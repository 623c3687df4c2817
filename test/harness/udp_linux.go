package harness

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"math/rand/v2"
	"net"
	"os"
	"syscall"
	"time"
)

// UDPConfig says what UDPTransfer sends.
type UDPConfig struct {
	Bytes int64 // data to move, cut into datagrams
	// Datagram is the UDP payload size (a 16-byte header and data);
	// 0 means 1200, which fits the overlay's default MTU over IPv4 and
	// IPv6 alike.
	Datagram int
	// Rate paces the sender, in bits per second of UDP payload; 0 sends
	// as fast as the socket takes datagrams. UDP has no flow control, so
	// an unpaced sender mostly measures the receiver's socket buffer.
	Rate    float64
	Seed    uint64        // picks the data; use a fresh one per transfer
	Timeout time.Duration // bound on the whole transfer
}

// UDPResult is what a UDPTransfer saw. Loss, lateness, duplicates and
// reordering are counted, not errors; Corrupt datagrams are errors.
type UDPResult struct {
	Datagrams uint64 // sent
	Received  uint64 // distinct datagrams received intact, in time
	// ReceivedBytes is the data those datagrams carried.
	ReceivedBytes int64
	Lost          uint64 // sent but not received in time
	Late          uint64 // received after the receiver had counted them lost
	Duplicates    uint64
	Reordered     uint64 // received after a datagram sent later
	Corrupt       uint64 // wrong length, foreign tag, sequence out of range or wrong content
	// FirstCorrupt describes the first corrupt datagram.
	FirstCorrupt string
	// SentSum is the SHA-256 of all the data sent; ReceivedSum that of the
	// data the receiver put back in order (lost datagrams left out);
	// ExpectedSum that of the data sent less the lost datagrams, which
	// ReceivedSum must equal (it is SentSum when nothing was lost).
	SentSum, ReceivedSum, ExpectedSum [32]byte
	Took                              time.Duration
}

// LossRate is Lost over Datagrams.
func (r UDPResult) LossRate() float64 {
	if r.Datagrams == 0 {
		return 0
	}
	return float64(r.Lost) / float64(r.Datagrams)
}

// String summarises the result for test logs.
func (r UDPResult) String() string {
	return fmt.Sprintf("%d datagrams in %v: %d received, %d lost (%.3f%%), %d late, %d duplicate, %d reordered, %d corrupt; SHA-256 %x",
		r.Datagrams, r.Took.Round(time.Millisecond), r.Received, r.Lost, 100*r.LossRate(), r.Late, r.Duplicates, r.Reordered, r.Corrupt, r.ReceivedSum[:8])
}

const (
	udpHeader    = 16                     // sequence number, run tag
	udpWindow    = 1024                   // datagrams held while one before them is missing
	udpQuiet     = 2 * time.Second        // after the sender's last datagram
	udpIdle      = 500 * time.Millisecond // with nothing received, once the sender is done
	defaultDgram = 1200
)

// udpStream is the data of one transfer: datagram seq carries data bytes
// [seq*chunk, seq*chunk+len) of the stream, a function of the seed and seq
// only, so the receiver can check each datagram on its own, in any order.
type udpStream struct {
	seed  uint64
	tag   uint64
	size  int64
	chunk int
	count uint64
}

func newUDPStream(cfg UDPConfig) (udpStream, error) {
	dg := cfg.Datagram
	if dg == 0 {
		dg = defaultDgram
	}
	if dg <= udpHeader || dg > 65507 || cfg.Bytes <= 0 {
		return udpStream{}, fmt.Errorf("udp transfer: datagram of %d bytes, %d bytes of data", dg, cfg.Bytes)
	}
	s := udpStream{seed: cfg.Seed, tag: cfg.Seed ^ 0x6838_7564_7074_6167, size: cfg.Bytes, chunk: dg - udpHeader}
	s.count = uint64((cfg.Bytes + int64(s.chunk) - 1) / int64(s.chunk))
	return s, nil
}

func (s udpStream) chunkLen(seq uint64) int {
	if seq == s.count-1 {
		return int(s.size - int64(seq)*int64(s.chunk))
	}
	return s.chunk
}

// fill writes datagram seq into b (at least udpHeader+chunk bytes) and
// returns its length.
func (s udpStream) fill(b []byte, seq uint64) int {
	binary.BigEndian.PutUint64(b[0:], seq)
	binary.BigEndian.PutUint64(b[8:], s.tag)
	n := udpHeader + s.chunkLen(seq)
	rand.NewChaCha8(chachaSeed(s.seed, seq+1)).Read(b[udpHeader:n])
	return n
}

// UDPTransfer sends cfg.Bytes of data in datagrams from namespace from to
// a socket in namespace to on toIP, and checks each datagram that arrives
// (sequence number in range, this transfer's tag, exact content) and the
// SHA-256 of the data put back in order against the data sent less what
// was lost. It returns an error for any corrupt datagram, a checksum
// mismatch, or a transfer that does not finish within cfg.Timeout; loss
// is only counted. It blocks until the receiver has every datagram, or
// the sender is done and either nothing has arrived for 500 ms or 2 s have
// passed since its last datagram.
func UDPTransfer(from, to Netns, toIP string, cfg UDPConfig) (UDPResult, error) {
	var res UDPResult
	s, err := newUDPStream(cfg)
	if err != nil {
		return res, err
	}
	res.Datagrams = s.count
	pc, err := to.ListenPacket("udp", net.JoinHostPort(toIP, "0"))
	if err != nil {
		return res, fmt.Errorf("listen in %s: %w", to.Name, err)
	}
	defer pc.Close()
	_ = pc.(*net.UDPConn).SetReadBuffer(4 << 20)
	c, err := from.Dial("udp", pc.LocalAddr().String(), 10*time.Second)
	if err != nil {
		return res, fmt.Errorf("dial %s from %s: %w", pc.LocalAddr(), from.Name, err)
	}
	defer c.Close()
	_ = c.(*net.UDPConn).SetWriteBuffer(4 << 20)

	deadline := time.Now().Add(cfg.Timeout)
	sentc := make(chan time.Time, 1) // when the sender finished
	recvc := make(chan error, 1)
	rx := newUDPReceiver(s, &res)
	go func() { recvc <- rx.run(pc.(*net.UDPConn), sentc, deadline) }()

	start := time.Now()
	serr := sendUDP(c, s, cfg.Rate, deadline, &res.SentSum)
	sentc <- time.Now()
	rerr := <-recvc
	res.Took = time.Since(start)
	if serr != nil {
		return res, fmt.Errorf("send from %s to %s: %w", from.Name, pc.LocalAddr(), serr)
	}
	if rerr != nil {
		return res, fmt.Errorf("receive in %s: %w", to.Name, rerr)
	}
	copy(res.ReceivedSum[:], rx.h.Sum(nil))
	res.ExpectedSum = res.SentSum
	if res.Lost > 0 {
		res.ExpectedSum = s.sumWithout(rx.lost)
	}
	if res.Corrupt > 0 {
		return res, fmt.Errorf("%d corrupt datagrams in %s (first: %s)", res.Corrupt, to.Name, res.FirstCorrupt)
	}
	if res.ReceivedSum != res.ExpectedSum {
		return res, fmt.Errorf("receiver in %s put together data with SHA-256 %x, want %x (%d datagrams lost)", to.Name, res.ReceivedSum[:8], res.ExpectedSum[:8], res.Lost)
	}
	return res, nil
}

// sendUDP sends every datagram of s in order, paced to rate bits/s, and
// writes the SHA-256 of the data into sum.
func sendUDP(c net.Conn, s udpStream, rate float64, deadline time.Time, sum *[32]byte) error {
	h := sha256.New()
	b := make([]byte, udpHeader+s.chunk)
	start := time.Now()
	var sent int64
	for seq := uint64(0); seq < s.count; seq++ {
		n := s.fill(b, seq)
		h.Write(b[udpHeader:n])
		if rate > 0 {
			due := start.Add(time.Duration(float64(sent) * 8 / rate * float64(time.Second)))
			if d := time.Until(due); d > time.Millisecond {
				time.Sleep(d)
			}
		}
		for {
			if time.Now().After(deadline) {
				return fmt.Errorf("timed out after %d of %d datagrams", seq, s.count)
			}
			_, err := c.Write(b[:n])
			if err == nil {
				break
			}
			// A full device queue, or an ICMP error for an earlier
			// datagram: the datagram may be dropped, which the receiver
			// counts; anything else ends the transfer.
			if !errors.Is(err, syscall.ENOBUFS) && !errors.Is(err, syscall.EAGAIN) && !errors.Is(err, syscall.ECONNREFUSED) {
				return err
			}
			time.Sleep(time.Millisecond)
		}
		sent += int64(n)
	}
	copy(sum[:], h.Sum(nil))
	return nil
}

// sumWithout is the SHA-256 of the stream's data less the datagrams in
// lost.
func (s udpStream) sumWithout(lost map[uint64]bool) [32]byte {
	h := sha256.New()
	b := make([]byte, udpHeader+s.chunk)
	for seq := uint64(0); seq < s.count; seq++ {
		if !lost[seq] {
			n := s.fill(b, seq)
			h.Write(b[udpHeader:n])
		}
	}
	var sum [32]byte
	copy(sum[:], h.Sum(nil))
	return sum
}

// udpReceiver checks datagrams and hashes their data in sequence order,
// holding (in a ring of udpWindow slots, so without allocating) those that
// arrive ahead of a missing one; a datagram still missing when the window
// has moved past it is lost. Not safe for concurrent use.
type udpReceiver struct {
	s       udpStream
	res     *UDPResult
	next    uint64 // lowest sequence number not yet hashed or given up
	maxSeen uint64
	slots   [][]byte // data of held datagram seq at seq%udpWindow
	held    []bool
	lost    map[uint64]bool
	h       hash.Hash
	want    []byte
}

func newUDPReceiver(s udpStream, res *UDPResult) *udpReceiver {
	r := &udpReceiver{s: s, res: res, lost: map[uint64]bool{}, h: sha256.New(),
		want: make([]byte, udpHeader+s.chunk), held: make([]bool, udpWindow), slots: make([][]byte, udpWindow)}
	store := make([]byte, udpWindow*s.chunk)
	for i := range r.slots {
		r.slots[i] = store[i*s.chunk : (i+1)*s.chunk]
	}
	return r
}

// run reads datagrams until it has them all, the deadline passes (an
// error), or the sender is done (its time of finishing arrives on sentc)
// and either nothing has come for udpIdle or udpQuiet has passed since.
func (r *udpReceiver) run(pc *net.UDPConn, sentc <-chan time.Time, deadline time.Time) error {
	buf := make([]byte, 65536)
	var sentAt, lastRead, lastDeadline time.Time
	for r.next < r.s.count {
		now := time.Now()
		if sentAt.IsZero() {
			select {
			case sentAt = <-sentc:
			default:
			}
		}
		if !sentAt.IsZero() && (now.Sub(sentAt) > udpQuiet || now.Sub(sentAt) > udpIdle && now.Sub(lastRead) > udpIdle) {
			break
		}
		if now.After(deadline) {
			return fmt.Errorf("did not finish: %d of %d datagrams dealt with", r.next, r.s.count)
		}
		if now.Sub(lastDeadline) > 100*time.Millisecond {
			pc.SetReadDeadline(now.Add(250 * time.Millisecond))
			lastDeadline = now
		}
		n, err := pc.Read(buf)
		if err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) {
				continue
			}
			return err
		}
		lastRead = time.Now()
		r.take(buf[:n])
	}
	// The sender is done and quiet: what is missing is lost.
	for r.next < r.s.count {
		r.advance()
	}
	return nil
}

func (r *udpReceiver) corrupt(format string, args ...any) {
	r.res.Corrupt++
	if r.res.FirstCorrupt == "" {
		r.res.FirstCorrupt = fmt.Sprintf(format, args...)
	}
}

// take checks one datagram, then hashes or holds it.
func (r *udpReceiver) take(b []byte) {
	if len(b) < udpHeader {
		r.corrupt("%d-byte datagram", len(b))
		return
	}
	seq, tag := binary.BigEndian.Uint64(b[0:]), binary.BigEndian.Uint64(b[8:])
	switch {
	case tag != r.s.tag:
		r.corrupt("datagram %d with tag %x, want %x", seq, tag, r.s.tag)
		return
	case seq >= r.s.count:
		r.corrupt("datagram %d of %d", seq, r.s.count)
		return
	}
	n := r.s.fill(r.want, seq)
	if len(b) != n {
		r.corrupt("datagram %d: %d bytes, want %d", seq, len(b), n)
		return
	}
	if i := firstDiff(b, r.want[:n]); i >= 0 {
		r.corrupt("datagram %d: content differs from byte %d of %d", seq, i, n)
		return
	}
	if seq < r.next {
		if r.lost[seq] {
			r.res.Late++
		} else {
			r.res.Duplicates++
		}
		return
	}
	for seq >= r.next+udpWindow {
		r.advance()
	}
	slot := seq % udpWindow
	if r.held[slot] {
		r.res.Duplicates++
		return
	}
	r.res.Received++
	r.res.ReceivedBytes += int64(n - udpHeader)
	if seq < r.maxSeen {
		r.res.Reordered++
	}
	r.maxSeen = max(r.maxSeen, seq)
	if seq == r.next {
		r.h.Write(b[udpHeader:])
		r.next++
		r.drain()
		return
	}
	r.slots[slot] = r.slots[slot][:copy(r.slots[slot][:cap(r.slots[slot])], b[udpHeader:])]
	r.held[slot] = true
}

// advance deals with r.next: hashes it if held, else counts it lost.
func (r *udpReceiver) advance() {
	if slot := r.next % udpWindow; r.held[slot] {
		r.h.Write(r.slots[slot])
		r.held[slot] = false
	} else {
		r.lost[r.next] = true
		r.res.Lost++
	}
	r.next++
	r.drain()
}

// drain hashes the held datagrams that follow on from r.next.
func (r *udpReceiver) drain() {
	for r.next < r.s.count && r.held[r.next%udpWindow] {
		slot := r.next % udpWindow
		r.h.Write(r.slots[slot])
		r.held[slot] = false
		r.next++
	}
}

func firstDiff(a, b []byte) int {
	if bytes.Equal(a, b) {
		return -1
	}
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}
