package handshake

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net"
	"time"
	"unicode/utf8"

	"github.com/gtank/ristretto255"

	"github.com/weavelab/weave/mesh/identity"
)

// longAgo is a deadline in the past, set to unblock pending I/O.
var longAgo = time.Unix(1, 0)

// run performs the handshake on conn for either role. Message order (both
// ends send each step at once, then read the other's):
//
//  1. hello (versions, name, identity key, UDP port, nonce, CPace share if
//     password)
//  2. auth: signature of the transcript with the identity key, then with a
//     password the 32-byte key confirmation MAC
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
	ours.Identity = cfg.Key.Public()
	var secret *ristretto255.Scalar
	if cfg.PSK != nil {
		if secret, ours.Element, err = cpaceShare(cpaceGenerator(cfg.PSK)); err != nil {
			return nil, fmt.Errorf("handshake: %w", err)
		}
		ours.Password = true
		ours.Suites = offerFor(cfg.Cipher, hardwareAES())
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

	if err := identity.CheckBinding(theirs.Peer.Name, theirs.Identity); err != nil {
		return nil, fmt.Errorf("peer %s: %w: %w", who, ErrIdentity, err)
	}
	var suite Suite
	if cfg.PSK != nil {
		if suite, err = negotiateSuite(ours.Suites, theirs.Suites); err != nil {
			return nil, fmt.Errorf("peer %s: %w", who, err)
		}
	}

	clientRaw, serverRaw := ourRaw, theirRaw
	if !isClient {
		clientRaw, serverRaw = theirRaw, ourRaw
	}
	th := transcriptHash(clientRaw, serverRaw)
	res := Result{
		Remote:        theirs.Peer,
		RemoteUDPPort: int(theirs.UDPPort),
		RemoteKey:     theirs.Identity,
		Suite:         suite,
		ConnID:        connID(th),
		Version:       version,
	}
	s := newSession(conn, res, cfg, isClient)
	keys, err := authenticate(conn, cfg, secret, theirs, th, isClient)
	if err != nil {
		return nil, fmt.Errorf("peer %s: %w", who, err)
	}
	if keys != nil {
		s.setKeys(*keys)
	}
	if theirs.Peer.Name == cfg.Local.Name && theirs.Peer.UID == cfg.Local.UID {
		// Proven (the remote signed with our key): we dialled ourselves.
		// Both ends get here, since each has read all the other sent.
		return nil, fmt.Errorf("peer %s: %w", who, ErrSelf)
	}
	if !stop() {
		return nil, fmt.Errorf("peer %s: handshake: %w", who, context.Cause(ctx))
	}
	if err := conn.SetDeadline(time.Time{}); err != nil {
		return nil, fmt.Errorf("peer %s: clear deadline: %w", who, err)
	}
	s.startKX()
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

// authenticate runs step 2. Each end signs the transcript with its identity
// key (proving that it holds the key its name is bound to) and, with a
// password, derives the session keys from the CPace secret and appends its
// key confirmation MAC. Each side sends before checking the other's, so both
// sides learn of a failure. It returns the keys, nil without a password.
func authenticate(conn net.Conn, cfg Config, secret *ristretto255.Scalar, theirs *hello, th [32]byte, isClient bool) (*sessionKeys, error) {
	var keys *sessionKeys
	sig := cfg.Key.Sign(authMessage(th, isClient))
	out := sig[:]
	if cfg.PSK != nil {
		k, err := cpaceSecret(secret, theirs.Element)
		if err != nil {
			return nil, err
		}
		sk := deriveKeys(cfg.PSK, k, th)
		clear(k)
		keys = &sk
		ourKey := keys.confirmC2S
		if !isClient {
			ourKey = keys.confirmS2C
		}
		mac := confirmMAC(ourKey, th)
		out = append(out, mac[:]...)
	}
	in := make([]byte, len(out))
	err := exchange(conn, out, func() error {
		_, err := io.ReadFull(conn, in)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("authentication: %w", err)
	}
	if keys != nil {
		theirKey := keys.confirmS2C
		if !isClient {
			theirKey = keys.confirmC2S
		}
		want := confirmMAC(theirKey, th)
		if !hmac.Equal(in[identity.SignatureSize:], want[:]) {
			return nil, ErrWrongPassword
		}
	}
	if !theirs.Identity.Verify(authMessage(th, !isClient), in[:identity.SignatureSize]) {
		return nil, fmt.Errorf("%w: bad signature of the handshake", ErrIdentity)
	}
	return keys, nil
}

// authMessage is what the client (or server) signs: a label naming its
// role, then the transcript hash, so a signature from one connection or role
// is worthless in any other.
func authMessage(th [32]byte, client bool) []byte {
	role := "server"
	if client {
		role = "client"
	}
	return append([]byte("weave handshake auth v2 "+role+" "), th[:]...)
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
	case cfg.Key == nil:
		return errors.New("handshake: config has no identity key")
	case cfg.Key.Name() != cfg.Local.Name:
		return fmt.Errorf("handshake: local name %s is not the name of the identity key (%s)", cfg.Local.Name, cfg.Key.Name())
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
	if _, err := ParseCipherPolicy(string(cfg.Cipher)); err != nil {
		return fmt.Errorf("handshake: %w", err)
	}
	if cfg.KeyExchangeInterval <= 0 {
		cfg.KeyExchangeInterval = DefaultKeyExchangeInterval
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return nil
}
