package plugin

import (
	"cmp"
	"slices"
)

// Joined returns copies of the endpoints that are joined to a container:
// those the Engine has called Join for and not yet Leave, sorted by
// network and endpoint ID. It is what `weave ps` lists; an endpoint that
// was created but not joined has no container yet and is left out. The
// plugin knows a container only by its sandbox (Endpoint.Sandbox): which
// container that is, the Engine says (docker network inspect). Safe for
// concurrent use; it changes nothing.
func (s *Server) Joined() []Endpoint {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []Endpoint
	for _, ep := range s.endpoints {
		if ep.Sandbox == "" {
			continue
		}
		c := *ep
		c.MAC = slices.Clone(ep.MAC)
		c.Link.MAC = slices.Clone(ep.Link.MAC)
		out = append(out, c)
	}
	slices.SortFunc(out, func(a, b Endpoint) int {
		return cmp.Or(cmp.Compare(a.NetworkID, b.NetworkID), cmp.Compare(a.EndpointID, b.EndpointID))
	})
	return out
}
