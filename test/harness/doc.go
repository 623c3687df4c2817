// Package harness builds many weave "hosts" on one machine for end-to-end
// tests: each host is a network namespace with a veth to an isolated LAN (a
// Linux bridge inside a namespace of the test's own), runs the freshly built
// weave binary with its own WEAVE_RUN_DIR and WEAVE_STATE_DIR, and may hold
// "containers" (more namespaces) attached with `weave attach netns:NAME`.
//
// Everything a test makes is removed by t.Cleanup, also when the test fails;
// on failure the tail of each router's log and its `weave status` are
// written to the test log first. The harness needs root and says so with
// t.Fatal rather than skipping.
//
// Names are unique per test process and per LAN (prefix "h8" + pid + LAN
// number), so tests of several processes can run side by side. Kernel
// interface names are created inside the test's own namespaces only, never
// in the machine's root namespace.
package harness
