package proxy_test

import (
	"fmt"
	"os"
	"testing"

	"go.uber.org/goleak"

	"github.com/weavelab/weave/test/harness"
)

// TestMain runs the tests of both packages (proxy and proxy_test), removes
// the weave binary the harness built and checks for leaked goroutines.
// The tests that need the harness are in proxy_test: the harness imports
// the daemon, which imports proxy.
func TestMain(m *testing.M) {
	code := harness.Main(m)
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintf(os.Stderr, "goleak: %v\n", err)
			code = 1
		}
	}
	os.Exit(code)
}
