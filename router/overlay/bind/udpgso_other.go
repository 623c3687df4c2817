//go:build !linux

package bind

import "net"

const udpSegmentOOBLen = 0

func udpGSOSupported(*net.UDPConn) bool { return false }

func gsoRefused(error) bool { return true }

func putUDPSegment(b []byte, _ int) []byte { return b }

const groOOBLen = 0

func enableUDPGRO(*net.UDPConn) bool { return false }

func groSize([]byte) int { return 0 }
