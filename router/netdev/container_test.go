package netdev

import (
	"errors"
	"testing"
)

func TestParseContainer(t *testing.T) {
	tests := []struct {
		in      string
		want    ContainerRef
		str     string
		wantErr bool
	}{
		{in: "netns:c1", want: ContainerRef{Kind: KindNetns, Name: "c1", Path: "/var/run/netns/c1"}, str: "netns:c1"},
		{in: "netns:/run/netns/x/../c2", want: ContainerRef{Kind: KindNetns, Path: "/run/netns/c2"}, str: "netns:/run/netns/c2"},
		{in: "pid:42", want: ContainerRef{Kind: KindPID, PID: 42, Path: "/proc/42/ns/net"}, str: "pid:42"},
		{in: "", wantErr: true},
		{in: "netns:", wantErr: true},
		{in: "netns:..", wantErr: true},
		{in: "netns:rel/path", wantErr: true},
		{in: "pid:0", wantErr: true},
		{in: "pid:-3", wantErr: true},
		{in: "pid:abc", wantErr: true},
		{in: "pid:", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseContainer(tt.in)
			if tt.wantErr {
				if err == nil {
					t.Fatalf("ParseContainer(%q) = %+v, want error", tt.in, got)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseContainer(%q): %v", tt.in, err)
			}
			if got != tt.want {
				t.Errorf("ParseContainer(%q) = %+v, want %+v", tt.in, got, tt.want)
			}
			if got.String() != tt.str {
				t.Errorf("String() = %q, want %q", got.String(), tt.str)
			}
		})
	}
}

func TestParseContainerDocker(t *testing.T) {
	for _, in := range []string{"web", "3f2a9c", "docker:web"} {
		_, err := ParseContainer(in)
		if !errors.Is(err, ErrNotNamespaceRef) {
			t.Errorf("ParseContainer(%q) = %v, want ErrNotNamespaceRef", in, err)
		}
	}
}
