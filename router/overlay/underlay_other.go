//go:build !linux

package overlay

import (
	"errors"
	"net/netip"
)

// DetectUnderlayMTU is implemented on Linux only.
func DetectUnderlayMTU(netip.Addr) (int, error) {
	return 0, errors.New("underlay mtu: detection needs Linux")
}
