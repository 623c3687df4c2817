package replicate_test

import (
	"fmt"
	"os"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// TestMain checks for leaked goroutines, waiting longer than goleak's own
// retries (about two seconds): memberlist's Shutdown does not wait for
// its goroutines, and a probe in flight ends only at its timeout (the
// probe interval, scaled up to eight times when memberlist thinks itself
// unhealthy) and a push/pull at TCPTimeout. Goroutines that outlive that
// are leaks.
func TestMain(m *testing.M) {
	code := m.Run()
	if code == 0 {
		var err error
		for deadline := time.Now().Add(15 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
			if err = goleak.Find(); err == nil {
				break
			}
		}
		if err != nil {
			fmt.Fprintf(os.Stderr, "goleak: %v\n", err)
			code = 1
		}
	}
	os.Exit(code)
}
