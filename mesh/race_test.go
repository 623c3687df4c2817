//go:build race

package mesh

// The race detector makes stacks and allocations larger; memory bounds
// do not hold under it.
func init() { raceEnabled = true }
