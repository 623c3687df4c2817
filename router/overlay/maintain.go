package overlay

import (
	"context"
	"time"
)

// maintain runs the periodic work: the coarse clock for the MAC table,
// each connection's heartbeat, timeout and path MTU search, and MAC
// expiry. Key epochs are not its business: they come only from the mesh
// (conn.Rekey).
func (o *Overlay) maintain(ctx context.Context) {
	t := time.NewTicker(o.cfg.HeartbeatInterval)
	defer t.Stop()
	if o.fastProg != nil {
		// Frames to the peers' MACs go back to the TAP, whose reader
		// stops too; a restarted router starts from a fresh device.
		defer o.fastProg.clear()
	}
	lastExpiry := time.Now()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			o.clock.Store(now.UnixNano())
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
