// Package replicate owns the replication of weaveDNS's name table between
// routers: one hashicorp/memberlist per router, for its broadcast queue,
// its push/pull exchange of full state and its failure detection, carried
// over the mesh's gossip channels instead of sockets of its own. So
// replication follows the mesh's routes across several hops, is encrypted
// whenever the mesh is, and needs no new port.
//
// The pieces:
//   - Transport is a memberlist.NodeAwareTransport over any message fabric
//     with best-effort, normally in-order unicast (a Sender, and Deliver
//     for input); streams are built on it with sequence numbers and credit.
//   - Replicator runs memberlist on a Transport and bridges it to State, the
//     name table's view of replication: full state for push/pull, deltas
//     for broadcasts, OnLeave when a peer is declared dead or has left and
//     OnJoin when one is counted alive.
//   - PeerAddr maps peer names to the synthetic addresses memberlist needs.
//
// Wiring in the daemon:
//
//	rep, err := replicate.New(replicate.Config{ ... ,
//		Connect: func(g mesh.Gossiper) replicate.Sender {
//			return router.NewGossipChannel("dns", g)
//		},
//	})
//	// whenever the mesh's reachable peers change:
//	go rep.Join(reachable)
package replicate
