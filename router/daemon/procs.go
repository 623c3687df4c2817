package daemon

import "fmt"

// smallHostProcs is the CPU count (as GOMAXPROCS defaults to it: CPUs or
// the cgroup's CPU limit) below which the router runs its Go code on one
// processor.
const smallHostProcs = 4

// routerProcs decides the router's GOMAXPROCS. env is $GOMAXPROCS (the
// runtime has applied it already, and it wins) and procs the runtime's
// current value. It returns the value to set (0: leave it) and why, for
// the start-up log.
//
// Below smallHostProcs the data path does everything on the goroutine
// that read it (overlay.Config.Openers is 1), so a second processor buys
// no parallelism; what it costs is wake-ups: with an idle processor, a
// frame that arrives on one socket while the router works on the other
// wakes a second thread (and often the other CPU) instead of waiting for
// the running one to look. With one processor the router behaves as an
// event loop, and on the 2-CPU machine of the README's table that moved
// 12-19% more plain and 25-40% more encrypted traffic per second at
// 15-20% less CPU per Gbit (test/bench, alternating runs), and a relay
// lost 0-6% (mostly about 1%) of a 200 Mbit/s UDP stream at the TAP
// where it lost 14-21% with two (test/e2e TestTransfer multihop UDP).
func routerProcs(env string, procs int) (set int, why string) {
	switch {
	case env != "":
		return 0, fmt.Sprintf("GOMAXPROCS=%s from the environment", env)
	case procs < smallHostProcs && procs > 1:
		return 1, fmt.Sprintf("%d CPUs: the data path runs as one event loop (GOMAXPROCS=N overrides)", procs)
	default:
		return 0, fmt.Sprintf("%d CPUs", procs)
	}
}
