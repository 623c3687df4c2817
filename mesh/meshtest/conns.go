package meshtest

import (
	"errors"
	"net"
	"syscall"
	"testing"
	"time"
)

// Conns is a set of connections a test opened to a router (a flood), and
// which of them the router has closed. A nil connection was reset before
// its dial returned and counts as closed.
type Conns struct {
	conns  []net.Conn
	closed []bool
}

// NewConns tracks conns.
func NewConns(conns []net.Conn) *Conns {
	return &Conns{conns: conns, closed: make([]bool, len(conns))}
}

// Len is how many connections were dialled.
func (s *Conns) Len() int { return len(s.conns) }

// Closed returns how many connections the other end has closed, waiting
// up to wait (for all of them together) for news. Bytes received (a
// router's hello) are discarded.
func (s *Conns) Closed(wait time.Duration) int {
	deadline := time.Now().Add(wait)
	buf := make([]byte, 512)
	n := 0
	for i, c := range s.conns {
		if c == nil {
			s.closed[i] = true
		}
		if !s.closed[i] {
			// A deadline already past would fail the Read before it
			// looks at the socket.
			d := deadline
			if soon := time.Now().Add(time.Millisecond); soon.After(d) {
				d = soon
			}
			c.SetReadDeadline(d)
			for {
				if _, err := c.Read(buf); err != nil {
					s.closed[i] = !IsTimeout(err)
					break
				}
			}
		}
		if s.closed[i] {
			n++
		}
	}
	return n
}

// Close closes every connection.
func (s *Conns) Close() {
	for _, c := range s.conns {
		if c != nil {
			c.Close()
		}
	}
}

// IsTimeout says whether err is a deadline's.
func IsTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// RaiseFileLimit raises the soft limit on open files to n if it is lower
// (and the hard limit with it where that is lower and the process may),
// restoring both at cleanup. It skips the test when the hard limit is
// lower and cannot be raised (an unprivileged run).
func RaiseFileLimit(tb testing.TB, n uint64) {
	tb.Helper()
	var old syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &old); err != nil {
		tb.Fatal(err)
	}
	if old.Cur >= n {
		return
	}
	lim := syscall.Rlimit{Cur: n, Max: max(old.Max, n)}
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		if old.Max < n {
			tb.Skipf("open files limited to %d, need %d: %v", old.Max, n, err)
		}
		tb.Fatalf("raise the file limit from %d to %d: %v", old.Cur, n, err)
	}
	tb.Cleanup(func() { syscall.Setrlimit(syscall.RLIMIT_NOFILE, &old) })
}
