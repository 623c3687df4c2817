package main

import (
	"log/slog"
	"sync"
)

// cleanups is a stack of undo steps: each setup step pushes its undo as
// soon as it has succeeded, and run undoes everything in reverse order.
// Undo steps must not depend on the (possibly cancelled) context of the
// setup: they make their own. Safe for concurrent use.
type cleanups struct {
	log *slog.Logger
	mu  sync.Mutex
	fns []cleanup
}

type cleanup struct {
	what string
	fn   func() error
}

func newCleanups(log *slog.Logger) *cleanups { return &cleanups{log: log} }

// push adds an undo step; what names it in the log when it fails.
func (c *cleanups) push(what string, fn func() error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.fns = append(c.fns, cleanup{what, fn})
}

// run undoes every step pushed so far, newest first, logging failures
// and going on. The stack is empty afterwards.
func (c *cleanups) run() {
	c.mu.Lock()
	fns := c.fns
	c.fns = nil
	c.mu.Unlock()
	for i := len(fns) - 1; i >= 0; i-- {
		c.log.Debug("cleanup", "step", fns[i].what)
		if err := fns[i].fn(); err != nil {
			c.log.Warn("cleanup failed", "step", fns[i].what, "err", err)
		}
	}
}
