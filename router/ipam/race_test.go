//go:build race

package ipam

// raceEnabled tells that the race detector is on. It slows the
// simulations (one goroutine, nothing to detect) about tenfold, so they
// run fewer seeds then; the plain go test runs them all.
const raceEnabled = true
