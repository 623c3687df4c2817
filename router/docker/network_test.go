package docker_test

import (
	"context"
	"encoding/json"
	"errors"
	"maps"
	"net"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/weavelab/weave/router/docker"
)

// TestNetworkEndpoints reads an Engine's record of a network as docker
// network inspect gives it: endpoints joined to a container under the
// container's ID, those not joined under "ep-" keys. Every endpoint is in
// All, only the joined ones in Containers; an unknown network is
// ErrNotFound.
func TestNetworkEndpoints(t *testing.T) {
	const cid = "4f2a9c0e1b3d5f7a9c0e1b3d5f7a9c0e1b3d5f7a9c0e1b3d5f7a9c0e1b3d5f7a"
	sock := filepath.Join(t.TempDir(), "docker.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.URL.Path == "/_ping":
			w.Header().Set("Api-Version", "1.41")
			w.Write([]byte("OK"))
		case strings.HasSuffix(r.URL.Path, "/networks/net1id"):
			w.Header().Set("Content-Type", "application/json")
			json.NewEncoder(w).Encode(map[string]any{"Name": "net1", "Id": "net1id", "Containers": map[string]any{
				cid:          map[string]any{"Name": "db", "EndpointID": "ep-joined"},
				"ep-ep-idle": map[string]any{"Name": "idle", "EndpointID": "ep-idle"},
			}})
		default:
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusNotFound)
			w.Write([]byte(`{"message":"network nope not found"}`))
		}
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	t.Setenv("DOCKER_HOST", "unix://"+sock)
	e, err := docker.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()

	ctx := context.Background()
	nw, err := e.NetworkEndpoints(ctx, "net1id")
	if err != nil {
		t.Fatal(err)
	}
	if nw.Name != "net1" || len(nw.Containers) != 1 || nw.Containers["ep-joined"] != cid {
		t.Errorf("record = %+v, want net1 with ep-joined's container", nw)
	}
	if got := slices.Sorted(maps.Keys(nw.All)); !slices.Equal(got, []string{"ep-idle", "ep-joined"}) {
		t.Errorf("All = %v, want both endpoints", got)
	}
	if _, err := e.NetworkEndpoints(ctx, "nope"); !errors.Is(err, docker.ErrNotFound) {
		t.Errorf("unknown network: %v, want ErrNotFound", err)
	}
}
