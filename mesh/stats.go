package mesh

import "sync/atomic"

// Stats are cumulative counters of the control plane.
type Stats struct {
	MessagesSent     uint64 `json:"messages_sent"`
	BytesSent        uint64 `json:"bytes_sent"`
	MessagesReceived uint64 `json:"messages_received"`
	BytesReceived    uint64 `json:"bytes_received"`
	// TopologyBytesSent counts topology gossip (entries, stamps, digests;
	// see gossip.go), about the size of each change once per peer.
	TopologyBytesSent uint64 `json:"topology_bytes_sent"`
	// Dropped counts messages dropped because a send queue was full.
	Dropped uint64 `json:"dropped"`
}

type counters struct {
	msgsSent, bytesSent, msgsRecv, bytesRecv, topoBytes, dropped atomic.Uint64
}

func (c *counters) sent(m []byte) {
	c.msgsSent.Add(1)
	c.bytesSent.Add(uint64(len(m)))
	if isTopology(m[0]) {
		c.topoBytes.Add(uint64(len(m)))
	}
}

func (c *counters) received(m []byte) {
	c.msgsRecv.Add(1)
	c.bytesRecv.Add(uint64(len(m)))
}

// Stats returns the router's counters (payload bytes of session messages,
// without framing).
func (r *Router) Stats() Stats {
	return Stats{
		MessagesSent:      r.stats.msgsSent.Load(),
		BytesSent:         r.stats.bytesSent.Load(),
		MessagesReceived:  r.stats.msgsRecv.Load(),
		BytesReceived:     r.stats.bytesRecv.Load(),
		TopologyBytesSent: r.stats.topoBytes.Load(),
		Dropped:           r.stats.dropped.Load(),
	}
}
