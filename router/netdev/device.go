// Package netdev owns the host's kernel devices for the overlay: the `weave`
// bridge, the router's TAP port on it, and the veth pairs that put
// containers (network namespaces) on the bridge.
package netdev

// Device is a frame device the router reads from and writes to: the TAP port
// on the bridge, or a fake in tests. Methods move batches so that a TAP
// opened with IFF_VNET_HDR (segmentation offload) can slot in later.
//
// Read and Write may be called concurrently with each other, but each from
// one goroutine at a time. Close unblocks a pending Read, which then returns
// an error wrapping net.ErrClosed (or os.ErrClosed).
type Device interface {
	// Read reads up to len(bufs) Ethernet frames, frame i into
	// bufs[i][offset:], its length into sizes[i]. It blocks until at least
	// one frame is read and returns how many were.
	Read(bufs [][]byte, sizes []int, offset int) (n int, err error)
	// Write writes each bufs[i][offset:] as one frame. It may overwrite
	// bufs[i][:offset]: a device that puts a header in front of each frame
	// (VNetTAP's virtio header) writes it there when offset leaves room for
	// it, instead of copying the frame.
	Write(bufs [][]byte, offset int) (n int, err error)
	// BatchSize is the most frames one Read returns.
	BatchSize() int
	Name() string
	MTU() int
	Close() error
}
