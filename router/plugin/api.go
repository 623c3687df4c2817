package plugin

// The wire types of Docker's remote plugin API (libnetwork's
// docs/remote.md and docs/ipam.md). Every answer may carry Err; an answer
// with Err set changes nothing.

// errResponse is the answer to a failed call. The network driver API
// reads Err, the IPAM driver API Error: both carry the message.
type errResponse struct {
	Err   string `json:"Err"`
	Error string `json:"Error"`
}

type activateResponse struct {
	Implements []string `json:"Implements"`
}

// Network driver.

type capabilitiesResponse struct {
	Scope             string `json:"Scope"`
	ConnectivityScope string `json:"ConnectivityScope"`
}

type ipamData struct {
	AddressSpace string            `json:"AddressSpace"`
	Pool         string            `json:"Pool"`
	Gateway      string            `json:"Gateway"`
	AuxAddresses map[string]string `json:"AuxAddresses"`
}

type createNetworkRequest struct {
	NetworkID string         `json:"NetworkID"`
	Options   map[string]any `json:"Options"`
	IPv4Data  []ipamData     `json:"IPv4Data"`
	IPv6Data  []ipamData     `json:"IPv6Data"`
}

type networkRequest struct {
	NetworkID string `json:"NetworkID"`
}

type endpointInterface struct {
	Address     string `json:"Address"`
	AddressIPv6 string `json:"AddressIPv6"`
	MacAddress  string `json:"MacAddress"`
}

type createEndpointRequest struct {
	NetworkID  string             `json:"NetworkID"`
	EndpointID string             `json:"EndpointID"`
	Interface  *endpointInterface `json:"Interface"`
	Options    map[string]any     `json:"Options"`
}

type createEndpointResponse struct {
	Interface *endpointInterface `json:"Interface,omitempty"`
}

type endpointRequest struct {
	NetworkID  string `json:"NetworkID"`
	EndpointID string `json:"EndpointID"`
}

type endpointInfoResponse struct {
	Value map[string]any `json:"Value"`
}

type joinRequest struct {
	NetworkID  string         `json:"NetworkID"`
	EndpointID string         `json:"EndpointID"`
	SandboxKey string         `json:"SandboxKey"`
	Options    map[string]any `json:"Options"`
}

type interfaceName struct {
	SrcName   string `json:"SrcName"`
	DstPrefix string `json:"DstPrefix"`
}

// Route types of a static route in a Join answer.
const (
	routeNextHop   = 0
	routeConnected = 1
)

type staticRoute struct {
	Destination string `json:"Destination"`
	RouteType   int    `json:"RouteType"`
	NextHop     string `json:"NextHop,omitempty"`
}

type joinResponse struct {
	InterfaceName         interfaceName `json:"InterfaceName"`
	Gateway               string        `json:"Gateway,omitempty"`
	StaticRoutes          []staticRoute `json:"StaticRoutes,omitempty"`
	DisableGatewayService bool          `json:"DisableGatewayService"`
}

type allocateNetworkResponse struct {
	Options map[string]string `json:"Options"`
}

// IPAM driver.

type ipamCapabilitiesResponse struct {
	RequiresMACAddress    bool `json:"RequiresMACAddress"`
	RequiresRequestReplay bool `json:"RequiresRequestReplay"`
}

type addressSpacesResponse struct {
	LocalDefaultAddressSpace  string `json:"LocalDefaultAddressSpace"`
	GlobalDefaultAddressSpace string `json:"GlobalDefaultAddressSpace"`
}

type requestPoolRequest struct {
	AddressSpace string            `json:"AddressSpace"`
	Pool         string            `json:"Pool"`
	SubPool      string            `json:"SubPool"`
	Options      map[string]string `json:"Options"`
	V6           bool              `json:"V6"`
}

type requestPoolResponse struct {
	PoolID string            `json:"PoolID"`
	Pool   string            `json:"Pool"`
	Data   map[string]string `json:"Data"`
}

type poolRequest struct {
	PoolID string `json:"PoolID"`
}

type requestAddressRequest struct {
	PoolID  string            `json:"PoolID"`
	Address string            `json:"Address"`
	Options map[string]string `json:"Options"`
}

type requestAddressResponse struct {
	Address string            `json:"Address"`
	Data    map[string]string `json:"Data"`
}

type releaseAddressRequest struct {
	PoolID  string `json:"PoolID"`
	Address string `json:"Address"`
}

// Option keys Docker sends.
const (
	optGeneric         = "com.docker.network.generic"
	optEnableIPv6      = "com.docker.network.enable_ipv6"
	optRequestAddrType = "RequestAddressType"
	addrTypeGateway    = "com.docker.network.gateway"
)
