package proxy

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"
)

// killTimeout bounds killing a container whose attach failed.
const killTimeout = 10 * time.Second

// afterStart attaches the container the Engine has just started, if it is
// managed. On failure it kills the container (whose process is still
// waiting for ethwe) and returns the error for the client. For a container
// that was running already (a start answered 304) a failure is only
// logged: it is most likely attached already, and killing it would be
// wrong.
func (p *Proxy) afterStart(sr startReq, running bool) error {
	// The attach must finish even if the client goes away: a managed
	// container left unattached would wait for ethwe for ever. Close
	// cancels it.
	ctx, cancel := context.WithTimeout(p.ctx, AttachTimeout)
	defer cancel()
	c, err := p.engine.inspectContainer(ctx, sr.prefix, sr.id)
	if err != nil {
		p.log.Warn("inspect after start failed", "container", sr.id, "err", err)
		return nil // not ours to fail: the Engine did start it
	}
	if c.Config.Labels[ManagedLabel] == "" {
		return nil
	}
	name := strings.TrimPrefix(c.Name, "/")
	if name == "" {
		name = sr.id
	}
	log := p.log.With("container", name, "id", c.ID)
	addrs, skip, err := AddrsFromEnv(c.Config.Env)
	if skip {
		// Labelled by hand, not by the proxy (which leaves these alone).
		return nil
	}
	var got []string
	if err == nil {
		start := time.Now()
		got, err = p.cfg.Attacher.Attach(ctx, c.ID, addrs)
		if err == nil {
			log.Info("attached", "addr", strings.Join(got, " "), "took", time.Since(start).Round(time.Microsecond))
			return nil
		}
	}
	if running {
		log.Info("running container not attached again", "err", err)
		return nil
	}
	// The attacher may name the container by its ID; the user knows it by
	// its name.
	msg := strings.TrimPrefix(err.Error(), "attach "+c.ID+": ")
	msg = "weave: attach " + name + ": " + msg
	log.Error("attach failed; killing the container", "err", err)
	kctx, kcancel := context.WithTimeout(context.WithoutCancel(ctx), killTimeout)
	defer kcancel()
	if kerr := p.engine.kill(kctx, sr.prefix, c.ID); kerr != nil {
		var ae *apiError
		// 409: it is not running any more (the wait binary gave up).
		if !errors.As(kerr, &ae) || ae.Status != 409 {
			log.Error("kill after failed attach", "err", kerr)
			msg += fmt.Sprintf(" (and killing it failed: %v)", kerr)
		}
	}
	return errors.New(msg)
}
