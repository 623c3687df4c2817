package docker_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/weavelab/weave/router/docker"
)

const (
	id1 = "1111111111111111111111111111111111111111111111111111111111111111"
	id2 = "2222222222222222222222222222222222222222222222222222222222222222"
	id3 = "2223333333333333333333333333333333333333333333333333333333333333"
)

func TestShortID(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{id1, "111111111111"},
		{"abc", "abc"},
		{"", ""},
	} {
		if got := docker.ShortID(tc.in); got != tc.want {
			t.Errorf("ShortID(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestIsFullID(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want bool
	}{
		{id1, true},
		{strings.Repeat("ab", 32), true},
		{strings.Repeat("AB", 32), false},
		{id1[:63], false},
		{id1 + "1", false},
		{strings.Repeat("g", 64), false},
		{"", false},
	} {
		if got := docker.IsFullID(tc.in); got != tc.want {
			t.Errorf("IsFullID(%q) = %v, want %v", tc.in, got, tc.want)
		}
	}
}

func TestNetnsPath(t *testing.T) {
	p, err := docker.Container{ID: id1, Name: "db", PID: 42, Running: true}.NetnsPath()
	if err != nil || p != "/proc/42/ns/net" {
		t.Errorf("running: %q, %v", p, err)
	}
	for _, c := range []docker.Container{
		{ID: id1, Name: "db"},
		{ID: id1, Running: true}, // no pid: do not hand out /proc/0
	} {
		_, err := c.NetnsPath()
		if !errors.Is(err, docker.ErrNotRunning) {
			t.Errorf("%+v: err %v, want ErrNotRunning", c, err)
		}
	}
	_, err = docker.Container{ID: id1, Name: "db"}.NetnsPath()
	if got, want := err.Error(), "container db: container is not running"; got != want {
		t.Errorf("error %q, want %q", got, want)
	}
}
