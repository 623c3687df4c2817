//go:build !linux

package overlay

import (
	"errors"
	"net/netip"
)

func newProber(netip.Addr) (prober, error) {
	return nil, errors.New("path MTU probes need Linux")
}
