package overlay

import (
	"context"
	"time"

	"github.com/weavelab/weave/mesh/clock"
)

// maintain runs the periodic work on each tick of t (made by Start on
// cfg.Clock, every HeartbeatInterval; maintain stops it): the coarse clock
// for the MAC table, each connection's heartbeat, timeout and path MTU
// search, the fast path, and MAC expiry (every MACExpiry/4, counted from
// since). Every timeout is checked here, against the tick's time, so none
// is kept more precisely than one interval. Key epochs are not its
// business: they come only from the mesh (conn.Rekey).
func (o *Overlay) maintain(ctx context.Context, t clock.Ticker, since time.Time) {
	defer t.Stop()
	if o.fastProg != nil {
		// Frames to the peers' MACs go back to the TAP, whose reader
		// stops too; a restarted router starts from a fresh device.
		defer o.fastProg.clear()
	}
	lastExpiry := since
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C():
			o.coarse.Store(now.UnixNano())
			for _, c := range o.conns.all() {
				c.tick(now)
				c.fastTick(now)
			}
			o.syncFastPath(now)
			if now.Sub(lastExpiry) >= o.cfg.MACExpiry/4 {
				lastExpiry = now
				if n := o.macs.expire(now.Add(-o.cfg.MACExpiry).UnixNano()); n > 0 {
					o.cfg.Logger.Debug("overlay: expired MAC addresses", "count", n)
				}
			}
		}
	}
}
