package main

import (
	"fmt"
	"io"
	"os"
)

// helperCmd, as the first argument, makes the program one of the bench's
// own helper processes instead of the benchmark: the dns scenario starts
// its own executable inside a namespace (`ip netns exec NS SELF helper
// ROLE ...`) for the load generator and the upstream resolver, so that
// each runs in the namespace it measures from or serves in, as a process
// of its own whose PID the bench knows. Not meant to be run by hand.
const helperCmd = "helper"

// Helper roles.
const (
	helperDNSLoad     = "dns-load"     // see runDNSLoad
	helperDNSUpstream = "dns-upstream" // see runDNSUpstream
)

// runHelper runs the helper role args[0] with the rest of args and returns
// its exit code.
func runHelper(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprintf(stderr, "bench %s: missing role (%s or %s)\n", helperCmd, helperDNSLoad, helperDNSUpstream)
		return 2
	}
	switch args[0] {
	case helperDNSLoad:
		return runDNSLoad(args[1:], stdout, stderr)
	case helperDNSUpstream:
		return runDNSUpstream(args[1:], stderr)
	}
	fmt.Fprintf(stderr, "bench %s: unknown role %q\n", helperCmd, args[0])
	return 2
}

// selfExecutable is the path of this program, for starting helpers.
func selfExecutable() (string, error) {
	p, err := os.Executable()
	if err != nil {
		return "", fmt.Errorf("path of the bench executable (to start helpers): %w", err)
	}
	return p, nil
}
