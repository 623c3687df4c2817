//go:build !race

package ipam

// raceEnabled tells that the race detector is on: see race_test.go.
const raceEnabled = false
