package docker

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"syscall"
	"testing"

	cerrdefs "github.com/containerd/errdefs"
)

func TestMapError(t *testing.T) {
	const addr = "unix:///var/run/docker.sock"
	dialErr := fmt.Errorf("dial unix /var/run/docker.sock: connect: %w", syscall.ECONNREFUSED)
	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	for _, tc := range []struct {
		name    string
		ctx     context.Context
		dialErr error
		err     error
		is      error
		want    string
	}{
		{
			name: "not found",
			err:  fmt.Errorf("Error response from daemon: %w", cerrdefs.ErrNotFound.WithMessage("No such container: db")),
			is:   ErrNotFound,
			want: "inspect db: no such container",
		},
		{
			name:    "connection failed with the dial error known",
			dialErr: dialErr,
			err:     connectionFailed(t),
			is:      ErrUnavailable,
			want:    "inspect db: docker is not reachable at " + addr + ": dial unix /var/run/docker.sock: connect: connection refused",
		},
		{
			name: "connection failed, cause unknown",
			err:  connectionFailed(t),
			is:   ErrUnavailable,
			want: "inspect db: docker is not reachable at " + addr + ": Cannot connect to the Docker daemon at unix:///nonexistent.sock. Is the docker daemon running?",
		},
		{
			name: "cancelled",
			ctx:  cancelled,
			err:  fmt.Errorf("wrapped: %w", context.Canceled),
			is:   context.Canceled,
			want: "inspect db: wrapped: context canceled",
		},
		{
			name: "daemon error on two lines",
			err:  cerrdefs.ErrInvalidArgument.WithMessage("Error response from daemon: multiple IDs found with provided prefix: ab\nmore"),
			is:   cerrdefs.ErrInvalidArgument,
			want: "inspect db: multiple IDs found with provided prefix: ab; more",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := tc.ctx
			if ctx == nil {
				ctx = context.Background()
			}
			err := mapError(ctx, addr, tc.dialErr, "inspect db", tc.err)
			if !errors.Is(err, tc.is) {
				t.Errorf("%v is not %v", err, tc.is)
			}
			if err.Error() != tc.want {
				t.Errorf("error\n %q, want\n %q", err, tc.want)
			}
			if strings.Contains(err.Error(), "\n") {
				t.Errorf("error on more than one line: %q", err)
			}
		})
	}
}

// connectionFailed gets the docker client's own connection error by
// pinging a socket that does not exist.
func connectionFailed(t *testing.T) error {
	t.Helper()
	t.Setenv("DOCKER_HOST", "unix:///nonexistent.sock")
	e, err := New(nil)
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	_, err = e.cli.Ping(context.Background())
	if err == nil {
		t.Fatal("ping of unix:///nonexistent.sock succeeded")
	}
	return err
}
