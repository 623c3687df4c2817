//go:build tools

package main

import (
	_ "github.com/prometheus/client_golang/prometheus"
	_ "github.com/songgao/water"
	_ "github.com/spf13/cobra"
	_ "github.com/vishvananda/netlink"
	_ "github.com/vishvananda/netns"
	_ "go.uber.org/goleak"
	_ "golang.org/x/crypto/argon2"
	_ "golang.org/x/crypto/chacha20poly1305"
	_ "golang.org/x/crypto/curve25519"
	_ "golang.org/x/crypto/hkdf"
	_ "golang.org/x/net/ipv4"
	_ "golang.org/x/sys/unix"
)
