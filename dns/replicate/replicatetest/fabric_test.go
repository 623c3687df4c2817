package replicatetest_test

import (
	"errors"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/weavelab/weave/dns/replicate/replicatetest"
	"github.com/weavelab/weave/mesh"
	"github.com/weavelab/weave/mesh/identity"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

type inbox struct {
	mu  sync.Mutex
	got []byte
}

func (in *inbox) deliver(_ identity.PeerName, msg []byte) error {
	in.mu.Lock()
	defer in.mu.Unlock()
	in.got = append(in.got, msg[0])
	return nil
}

func (in *inbox) len() int {
	in.mu.Lock()
	defer in.mu.Unlock()
	return len(in.got)
}

func TestFabric(t *testing.T) {
	for _, tc := range []struct {
		name    string
		opts    replicatetest.Options
		inOrder bool
	}{
		{"immediate", replicatetest.Options{}, true},
		{"delayed", replicatetest.Options{Delay: time.Millisecond}, true},
		{"jittered", replicatetest.Options{Jitter: 5 * time.Millisecond, Seed: 3}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := replicatetest.New(tc.opts)
			defer f.Close()
			a, b := f.Endpoint(1), f.Endpoint(2)
			var in inbox
			b.Bind(in.deliver)
			for i := range 200 {
				if err := a.Unicast(2, []byte{byte(i)}); err != nil {
					t.Fatal(err)
				}
			}
			deadline := time.Now().Add(5 * time.Second)
			for in.len() < 200 {
				if time.Now().After(deadline) {
					t.Fatalf("%d of 200 delivered", in.len())
				}
				time.Sleep(time.Millisecond)
			}
			ordered := true
			for i, v := range in.got {
				ordered = ordered && v == byte(i)
			}
			if tc.inOrder && !ordered {
				t.Fatal("messages reordered without jitter")
			}
			if !tc.inOrder && ordered {
				t.Fatal("jitter reordered nothing")
			}
		})
	}
}

func TestFabricPartitionAndLoss(t *testing.T) {
	f := replicatetest.New(replicatetest.Options{})
	defer f.Close()
	a := f.Endpoint(1)
	f.Endpoint(2)
	if err := a.Unicast(3, []byte("x")); !errors.Is(err, mesh.ErrNoRoute) {
		t.Fatalf("unicast to nobody: %v", err)
	}
	f.Partition([]identity.PeerName{1}, []identity.PeerName{2})
	if err := a.Unicast(2, []byte("x")); !errors.Is(err, mesh.ErrNoRoute) {
		t.Fatalf("unicast across a partition: %v", err)
	}
	f.Heal()
	f.SetOptions(replicatetest.Options{Loss: 1})
	if err := a.Unicast(2, []byte("x")); err != nil {
		t.Fatal(err)
	}
	if sent, lost := f.Stats(); sent != 1 || lost != 1 {
		t.Fatalf("sent %d, lost %d", sent, lost)
	}
}
