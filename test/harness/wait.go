package harness

import (
	"testing"
	"time"
)

// WaitFor polls cond every 100 ms until it returns true, and fails the
// test with cond's last message when timeout passes first. The timeout is
// a bound on a hang, not a timing assertion: pick it generously.
func WaitFor(t testing.TB, timeout time.Duration, cond func() (bool, string)) {
	t.Helper()
	start := time.Now()
	deadline := start.Add(timeout)
	for {
		ok, msg := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("gave up after %v: %s", timeout, msg)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// Eventually is WaitFor returning false instead of failing the test.
func Eventually(timeout time.Duration, cond func() (bool, string)) (bool, string) {
	deadline := time.Now().Add(timeout)
	for {
		ok, msg := cond()
		if ok || time.Now().After(deadline) {
			return ok, msg
		}
		time.Sleep(100 * time.Millisecond)
	}
}
