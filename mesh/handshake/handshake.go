package handshake

import (
	"context"
	"crypto/ecdh"
	"crypto/hmac"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net"
	"time"
	"unicode/utf8"

	"github.com/weavelab/weave/mesh/identity"
)

// longAgo is a deadline in the past, set to unblock pending I/O.
var longAgo = time.Unix(1, 0)

// run performs the handshake on conn for either role. Message order (both
// ends send each step at once, then read the other's):
//
//  1. hello (versions, identity, UDP port, nonce, ephemeral key if password)
//  2. with a password only: 32-byte key confirmation MAC
func run(ctx context.Context, conn net.Conn, cfg Config, isClient bool) (_ Session, err error) {
	defer func() {
		if err != nil {
			conn.Close()
			if cause := ctxCause(ctx); cause != nil && !errors.Is(err, cause) {
				err = fmt.Errorf("%w (%w)", err, cause)
			}
		}
	}()
	if err := validateConfig(&cfg); err != nil {
		return nil, err
	}
	deadline := time.Now().Add(cfg.Timeout)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	if err := conn.SetDeadline(deadline); err != nil {
		return nil, fmt.Errorf("handshake with %s: %w", conn.RemoteAddr(), err)
	}
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(longAgo) })
	defer stop()

	ours := &hello{
		MinVersion: MinVersion,
		MaxVersion: MaxVersion,
		Peer:       cfg.Local,
		UDPPort:    uint16(cfg.UDPPort),
	}
	if _, err := rand.Read(ours.Nonce[:]); err != nil {
		return nil, fmt.Errorf("handshake: nonce: %w", err)
	}
	var eph *ecdh.PrivateKey
	if cfg.PSK != nil {
		if eph, err = ecdh.X25519().GenerateKey(rand.Reader); err != nil {
			return nil, fmt.Errorf("handshake: ephemeral key: %w", err)
		}
		ours.Password = true
		ours.Ephemeral = [32]byte(eph.PublicKey().Bytes())
	}
	ourRaw := ours.encode()

	var theirs *hello
	var theirRaw []byte
	err = exchange(conn, ourRaw, func() (err error) {
		theirs, theirRaw, err = readHello(conn)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("handshake with %s: %w", conn.RemoteAddr(), err)
	}
	who := theirs.Peer.String()
	if theirs.Peer.Name == identity.UnknownPeer {
		who = conn.RemoteAddr().String()
	}
	version, err := negotiate(MinVersion, MaxVersion, theirs.MinVersion, theirs.MaxVersion)
	if err != nil {
		return nil, fmt.Errorf("peer %s: %w", who, err)
	}
	switch {
	case ours.Password && !theirs.Password:
		return nil, fmt.Errorf("peer %s: %w: we have a password and the peer has none", who, ErrPasswordMismatch)
	case !ours.Password && theirs.Password:
		return nil, fmt.Errorf("peer %s: %w: the peer has a password and we have none", who, ErrPasswordMismatch)
	}

	clientRaw, serverRaw := ourRaw, theirRaw
	if !isClient {
		clientRaw, serverRaw = theirRaw, ourRaw
	}
	th := transcriptHash(clientRaw, serverRaw)
	res := Result{
		Remote:        theirs.Peer,
		RemoteUDPPort: int(theirs.UDPPort),
		ConnID:        connID(th),
		Version:       version,
	}
	s := newSession(conn, res, cfg)
	if cfg.PSK != nil {
		keys, err := agreeKeys(conn, cfg.PSK, eph, theirs.Ephemeral, th, isClient)
		if err != nil {
			return nil, fmt.Errorf("peer %s: %w", who, err)
		}
		s.setKeys(keys, isClient)
	}
	if !stop() {
		return nil, fmt.Errorf("peer %s: handshake: %w", who, context.Cause(ctx))
	}
	if err := conn.SetDeadline(time.Time{}); err != nil {
		return nil, fmt.Errorf("peer %s: clear deadline: %w", who, err)
	}
	return s, nil
}

// ctxCause says why ctx ended, also when its deadline passed an instant
// ago and the conn deadline fired before ctx noticed.
func ctxCause(ctx context.Context) error {
	if ctx.Err() != nil {
		return context.Cause(ctx)
	}
	if d, ok := ctx.Deadline(); ok && !time.Now().Before(d) {
		return context.DeadlineExceeded
	}
	return nil
}

// agreeKeys derives the session keys and runs key confirmation in both
// directions. Each side sends its MAC before checking the other's, so both
// sides learn of a wrong password.
func agreeKeys(conn net.Conn, psk *PSK, eph *ecdh.PrivateKey, theirEph [32]byte, th [32]byte, isClient bool) (sessionKeys, error) {
	pub, err := ecdh.X25519().NewPublicKey(theirEph[:])
	if err != nil {
		return sessionKeys{}, fmt.Errorf("%w: bad ephemeral key: %w", ErrProtocol, err)
	}
	dh, err := eph.ECDH(pub)
	if err != nil { // low-order point: the shared secret would be zero
		return sessionKeys{}, fmt.Errorf("%w: bad ephemeral key: %w", ErrProtocol, err)
	}
	keys := deriveKeys(psk, dh, th)
	clear(dh)
	ourKey, theirKey := keys.confirmC2S, keys.confirmS2C
	if !isClient {
		ourKey, theirKey = theirKey, ourKey
	}
	ourMAC := confirmMAC(ourKey, th)
	var theirMAC [32]byte
	err = exchange(conn, ourMAC[:], func() error {
		_, err := io.ReadFull(conn, theirMAC[:])
		return err
	})
	if err != nil {
		return sessionKeys{}, fmt.Errorf("key confirmation: %w", err)
	}
	want := confirmMAC(theirKey, th)
	if !hmac.Equal(theirMAC[:], want[:]) {
		return sessionKeys{}, ErrWrongPassword
	}
	return keys, nil
}

// exchange writes out while read runs, so that two ends that both speak
// first do not deadlock on an unbuffered transport such as net.Pipe. It
// returns when both have finished; a failed read unblocks the write.
func exchange(conn net.Conn, out []byte, read func() error) error {
	werr := make(chan error, 1)
	go func() {
		_, err := conn.Write(out)
		werr <- err
	}()
	rerr := read()
	if rerr != nil {
		conn.SetDeadline(longAgo)
	}
	if err := <-werr; rerr == nil && err != nil {
		return fmt.Errorf("write: %w", err)
	}
	return rerr
}

// validateConfig checks cfg and fills in defaults.
func validateConfig(cfg *Config) error {
	switch {
	case cfg.Local.Name == identity.UnknownPeer:
		return errors.New("handshake: config has no local peer name")
	case cfg.Local.UID == 0:
		return errors.New("handshake: config has no local uid")
	case len(cfg.Local.NickName) > identity.MaxNickNameLen:
		return fmt.Errorf("handshake: nickname of %d bytes exceeds %d", len(cfg.Local.NickName), identity.MaxNickNameLen)
	case !utf8.ValidString(cfg.Local.NickName):
		return fmt.Errorf("handshake: nickname %q is not UTF-8", cfg.Local.NickName)
	case cfg.UDPPort < 0 || cfg.UDPPort > 65535:
		return fmt.Errorf("handshake: udp port %d out of range", cfg.UDPPort)
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultTimeout
	}
	if cfg.RekeyMessages == 0 {
		cfg.RekeyMessages = DefaultRekeyMessages
	}
	if cfg.RekeyInterval <= 0 {
		cfg.RekeyInterval = DefaultRekeyInterval
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return nil
}
