package main

import (
	"bufio"
	"crypto/ecdh"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"
)

// The wireguard-go scenario is a reference row, not weave: the userspace
// WireGuard implementation (golang.zx2c4.com/wireguard) between the same
// two hosts, so that weave's userspace path can be set beside the fastest
// public userspace tunnel measured in the same run on the same lab.
const (
	// wireGuardGoModule is the wireguard-go version the bench builds
	// (go install) when -wireguard-go does not name a binary.
	wireGuardGoModule = "golang.zx2c4.com/wireguard@v0.0.0-20260522210424-ecfc5a8d5446"
	// wireGuardGoBuildTimeout bounds the go install (a download the first
	// time).
	wireGuardGoBuildTimeout = 5 * time.Minute
	// wireGuardCipher is WireGuard's one data-plane cipher suite.
	wireGuardCipher = "chacha20-poly1305"
	// wireGuardUAPIDir holds wireguard-go's control sockets, IFNAME.sock.
	// The directory is the mount namespace's, shared by every network
	// namespace: each host's device needs a name of its own.
	wireGuardUAPIDir = "/var/run/wireguard"
)

// wgKeyLen is the length of a WireGuard (X25519) key.
const wgKeyLen = 32

// wgKeyPair is an X25519 key pair as WireGuard uses it.
type wgKeyPair struct {
	private, public []byte
}

// newWGKeyPair makes a random key pair. WireGuard clamps the private
// scalar itself, as X25519 does.
func newWGKeyPair() (wgKeyPair, error) {
	k, err := ecdh.X25519().GenerateKey(rand.Reader)
	if err != nil {
		return wgKeyPair{}, fmt.Errorf("wireguard key: %w", err)
	}
	return wgKeyPair{private: k.Bytes(), public: k.PublicKey().Bytes()}, nil
}

// wgKeyHex is a key as the UAPI wants it: 64 lower-case hex digits (not
// the base64 of wg(8) and its config files).
func wgKeyHex(k []byte) (string, error) {
	if len(k) != wgKeyLen {
		return "", fmt.Errorf("wireguard key of %d bytes, want %d", len(k), wgKeyLen)
	}
	return hex.EncodeToString(k), nil
}

// wgPeer is one peer of a wireguard-go device.
type wgPeer struct {
	publicKey  []byte
	endpoint   string   // IP:PORT
	allowedIPs []string // CIDRs routed to the peer and accepted from it
}

// wgDevice is the configuration the bench gives a wireguard-go device.
type wgDevice struct {
	privateKey []byte
	listenPort int
	peers      []wgPeer
}

// uapiSet is the UAPI request that configures the device, replacing
// every peer it had: set=1, the key=value lines, and the empty line that
// ends the request.
func (d wgDevice) uapiSet() (string, error) {
	priv, err := wgKeyHex(d.privateKey)
	if err != nil {
		return "", fmt.Errorf("private key: %w", err)
	}
	if d.listenPort < 1 || d.listenPort > 65535 {
		return "", fmt.Errorf("listen port %d", d.listenPort)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "set=1\nprivate_key=%s\nlisten_port=%d\nreplace_peers=true\n", priv, d.listenPort)
	for i, p := range d.peers {
		pub, err := wgKeyHex(p.publicKey)
		if err != nil {
			return "", fmt.Errorf("peer %d: public key: %w", i+1, err)
		}
		fmt.Fprintf(&b, "public_key=%s\n", pub)
		if p.endpoint != "" {
			fmt.Fprintf(&b, "endpoint=%s\n", p.endpoint)
		}
		for _, ip := range p.allowedIPs {
			fmt.Fprintf(&b, "allowed_ip=%s\n", ip)
		}
	}
	b.WriteString("\n")
	return b.String(), nil
}

// readUAPIReply reads one UAPI reply, key=value lines up to an empty
// line, and returns its lines but the errno one. A missing or non-zero
// errno is an error.
func readUAPIReply(r *bufio.Reader) ([]string, error) {
	var lines []string
	errno := ""
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			if errors.Is(err, io.EOF) {
				return lines, fmt.Errorf("uapi reply ended before its empty line (after %d lines)", len(lines))
			}
			return lines, fmt.Errorf("uapi reply: %w", err)
		}
		line = strings.TrimSuffix(line, "\n")
		if line == "" {
			break
		}
		if v, ok := strings.CutPrefix(line, "errno="); ok {
			errno = v
			continue
		}
		lines = append(lines, line)
	}
	switch n, err := strconv.Atoi(errno); {
	case errno == "":
		return lines, errors.New("uapi reply without errno")
	case err != nil:
		return lines, fmt.Errorf("uapi reply: errno=%q", errno)
	case n != 0:
		return lines, fmt.Errorf("uapi: errno=%d", n)
	}
	return lines, nil
}

// uapiExchange writes request to the UAPI connection c and reads the
// reply's lines (see readUAPIReply).
func uapiExchange(c io.ReadWriter, request string) ([]string, error) {
	if _, err := io.WriteString(c, request); err != nil {
		return nil, fmt.Errorf("uapi request: %w", err)
	}
	return readUAPIReply(bufio.NewReader(c))
}
