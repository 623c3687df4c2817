package harness

import (
	"strings"
)

// Container is a namespace on a host standing for a container.
type Container struct {
	Netns
	Host  *Host
	CName string
}

// Ref is how the weave CLI names the container: netns:NAME.
func (c *Container) Ref() string { return "netns:" + c.Name }

// Attach runs `weave attach ADDR... netns:NAME` on the container's host,
// failing the test on error, and returns the addresses it printed.
func (c *Container) Attach(addrs ...string) []string {
	c.Host.lan.t.Helper()
	out := c.Host.MustWeave(append(append([]string{"attach"}, addrs...), c.Ref())...)
	return strings.Fields(out)
}
