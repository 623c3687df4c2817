package netdevtest

import (
	"crypto/rand"
	"encoding/hex"
	"os"
	"runtime"
	"testing"

	"github.com/vishvananda/netns"
)

// RequireRoot fails the test (loudly, never a skip) unless it runs as root,
// which creating namespaces and links needs.
func RequireRoot(tb testing.TB) {
	tb.Helper()
	if os.Geteuid() != 0 {
		tb.Fatal("this test needs root (it creates network namespaces, bridges, veths and TAPs); run it with sudo")
	}
}

// UniqueName returns prefix followed by random hex, at most 15 bytes long
// when prefix is at most 7, so it fits an interface name.
func UniqueName(prefix string) string {
	b := make([]byte, 4)
	rand.Read(b)
	return prefix + hex.EncodeToString(b)
}

// EnterIsolatedHost locks the calling goroutine to its OS thread and moves
// that thread into a fresh, unnamed network namespace that stands for the
// host, so bridges, TAPs and veths made by the test never touch the
// machine's own namespace (and its firewall). The thread is never unlocked:
// when the test's goroutine ends, the runtime discards it. Call it first,
// from the test's own goroutine; kernel calls made from other goroutines run
// in the machine's namespace.
func EnterIsolatedHost(tb testing.TB) netns.NsHandle {
	tb.Helper()
	RequireRoot(tb)
	runtime.LockOSThread()
	ns, err := netns.New()
	if err != nil {
		tb.Fatalf("create host namespace: %v", err)
	}
	tb.Cleanup(func() { ns.Close() })
	return ns
}

// NewNamedNetns creates a named network namespace (/var/run/netns/NAME,
// NAME = prefix + random hex) standing for a container, without moving the
// calling thread, and deletes it in Cleanup. It returns the name and a
// handle.
func NewNamedNetns(tb testing.TB, prefix string) (string, netns.NsHandle) {
	tb.Helper()
	RequireRoot(tb)
	name := UniqueName(prefix)
	runtime.LockOSThread()
	defer runtime.UnlockOSThread() // nested locks are counted: an outer lock stays
	orig, err := netns.Get()
	if err != nil {
		tb.Fatalf("get namespace: %v", err)
	}
	defer orig.Close()
	ns, err := netns.NewNamed(name)
	if serr := netns.Set(orig); serr != nil {
		// This thread is now in the wrong namespace; keep it locked so
		// the runtime discards it, and stop.
		runtime.LockOSThread()
		tb.Fatalf("return to namespace: %v", serr)
	}
	if err != nil {
		tb.Fatalf("create namespace %s: %v", name, err)
	}
	tb.Cleanup(func() {
		ns.Close()
		if err := netns.DeleteNamed(name); err != nil && !os.IsNotExist(err) {
			tb.Errorf("delete namespace %s: %v", name, err)
		}
	})
	return name, ns
}
