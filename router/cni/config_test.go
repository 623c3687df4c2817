package cni

import (
	"errors"
	"testing"

	"github.com/containernetworking/cni/pkg/types"
)

// code returns the CNI error code of err, or 0 when it is not a
// *types.Error.
func code(err error) uint {
	var te *types.Error
	if errors.As(err, &te) {
		return te.Code
	}
	return 0
}

func TestParseConf(t *testing.T) {
	tests := []struct {
		name      string
		in        string
		code      uint
		delegated bool
		dns       bool
		subnet    string
	}{
		{name: "minimal", in: `{"cniVersion":"1.0.0","name":"weave","type":"weave-net"}`},
		{name: "no type", in: `{"cniVersion":"1.0.0","name":"weave"}`},
		{name: "weave ipam with subnet", in: `{"cniVersion":"1.1.0","name":"weave","type":"weave-net","registerDNS":true,"ipam":{"type":"weave-ipam","subnet":"10.32.1.0/24","routes":[{"dst":"0.0.0.0/0"}]}}`, dns: true, subnet: "10.32.1.0/24"},
		{name: "host-local", in: `{"cniVersion":"0.4.0","name":"weave","type":"weave-net","ipam":{"type":"host-local","ranges":[[{"subnet":"10.9.0.0/24"}]]}}`, delegated: true},
		{name: "not json", in: `{"name":`, code: types.ErrDecodingFailure},
		{name: "no name", in: `{"cniVersion":"1.0.0","type":"weave-net"}`, code: types.ErrInvalidNetworkConfig},
		{name: "other type", in: `{"cniVersion":"1.0.0","name":"n","type":"bridge"}`, code: types.ErrInvalidNetworkConfig},
		{name: "bad subnet", in: `{"cniVersion":"1.0.0","name":"n","ipam":{"subnet":"10.32.1.1/24"}}`, code: types.ErrInvalidNetworkConfig},
		{name: "ipv6 subnet", in: `{"cniVersion":"1.0.0","name":"n","ipam":{"subnet":"fd00::/64"}}`, code: types.ErrInvalidNetworkConfig},
		{name: "subnet for host-local", in: `{"cniVersion":"1.0.0","name":"n","ipam":{"type":"host-local","subnet":"10.9.0.0/24"}}`, code: types.ErrInvalidNetworkConfig},
		{name: "route without dst", in: `{"cniVersion":"1.0.0","name":"n","ipam":{"routes":[{"gw":"10.0.0.1"}]}}`, code: types.ErrInvalidNetworkConfig},
		{name: "bad route", in: `{"cniVersion":"1.0.0","name":"n","ipam":{"routes":[{"dst":"nonsense"}]}}`, code: types.ErrDecodingFailure},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := ParseConf([]byte(tt.in))
			if tt.code != 0 {
				if code(err) != tt.code {
					t.Fatalf("ParseConf: %v (code %d), want code %d", err, code(err), tt.code)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseConf: %v", err)
			}
			if c.Delegated() != tt.delegated || c.RegisterDNS != tt.dns || c.IPAM.Subnet != tt.subnet {
				t.Errorf("got delegated=%v dns=%v subnet=%q, want %v %v %q", c.Delegated(), c.RegisterDNS, c.IPAM.Subnet, tt.delegated, tt.dns, tt.subnet)
			}
		})
	}
}

func TestParseArgs(t *testing.T) {
	a, err := ParseArgs("IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=DB-0;K8S_POD_INFRA_CONTAINER_ID=abc")
	if err != nil {
		t.Fatal(err)
	}
	if a.PodName != "DB-0" || a.PodNamespace != "default" {
		t.Errorf("got %+v", a)
	}
	if got := a.DNSName("weave.local."); got != "db-0.weave.local." {
		t.Errorf("DNSName = %q", got)
	}
	if got := (PodArgs{}).DNSName("weave.local."); got != "" {
		t.Errorf("DNSName without a pod name = %q, want empty", got)
	}
	if a, err := ParseArgs(""); err != nil || a != (PodArgs{}) {
		t.Errorf("empty CNI_ARGS: %+v %v", a, err)
	}
	if _, err := ParseArgs("K8S_POD_NAME"); code(err) != types.ErrInvalidEnvironmentVariables {
		t.Errorf("malformed CNI_ARGS: %v, want code %d", err, types.ErrInvalidEnvironmentVariables)
	}
}
