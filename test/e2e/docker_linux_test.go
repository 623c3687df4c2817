package e2e

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/weavelab/weave/test/harness"
)

// The Docker scenarios share the machine's one Docker Engine between all the
// harness's hosts: each router acts only on the containers it attached. Every
// container a test starts carries a label unique to the test (dockerLabel),
// by which its cleanup finds them and the bad-input checks make sure that a
// failed weave run left nothing behind.

// defaultRange is the default --ipalloc-range.
var defaultRange = netip.MustParsePrefix("10.32.0.0/12")

var macRE = regexp.MustCompile(`^([0-9a-f]{2}:){5}[0-9a-f]{2}$`)

// dockerLabel returns a docker label (KEY=VALUE) unique to this test for
// every container it starts, and registers the removal (docker rm -f, by
// ID) of all containers that carry it.
func dockerLabel(t *testing.T, l *harness.LAN) string {
	t.Helper()
	label := "weave-e2e=" + l.ID()
	t.Cleanup(func() {
		for _, id := range labelled(t, label) {
			harness.RemoveContainer(t, id)
		}
	})
	return label
}

// labelled returns the IDs of all containers (running or not) that carry
// label.
func labelled(t *testing.T, label string) []string {
	t.Helper()
	r := harness.Docker(context.Background(), "ps", "-a", "-q", "--no-trunc", "--filter", "label="+label)
	if !r.OK() {
		t.Errorf("list containers labelled %s: %s", label, r)
		return nil
	}
	return strings.Fields(r.Stdout)
}

// weaveRun runs `weave run ADDR... --label LABEL DOCKER-ARGS...` on h and
// fails the test unless it succeeds and prints a full container ID, which
// it returns.
func weaveRun(t *testing.T, h *harness.Host, label string, addrs []string, dockerArgs ...string) string {
	t.Helper()
	r := h.Weave(runArgs(label, addrs, dockerArgs...)...)
	id := strings.TrimSpace(r.Stdout)
	if !r.OK() || !isFullID(id) {
		t.Fatalf("%s: weave run: want exit 0 and a 64-hex container ID", r)
	}
	return id
}

func runArgs(label string, addrs []string, dockerArgs ...string) []string {
	args := append([]string{"run"}, addrs...)
	return append(append(args, "--label", label), dockerArgs...)
}

func isFullID(s string) bool {
	return len(s) == 64 && strings.Trim(s, "0123456789abcdef") == ""
}

// psEntry is one line of `weave ps`.
type psEntry struct {
	ID    string
	MAC   string
	Addrs []netip.Prefix
}

// weavePS runs `weave ps [CONTAINER...]` on h and parses its lines.
func weavePS(h *harness.Host, containers ...string) ([]psEntry, error) {
	r := h.WeaveQuiet(append([]string{"ps"}, containers...)...)
	if !r.OK() {
		return nil, fmt.Errorf("%s", r)
	}
	var out []psEntry
	for _, line := range strings.Split(strings.TrimSpace(r.Stdout), "\n") {
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		if len(f) < 2 {
			return nil, fmt.Errorf("weave ps: malformed line %q", line)
		}
		e := psEntry{ID: f[0], MAC: f[1]}
		for _, s := range f[2:] {
			p, err := netip.ParsePrefix(s)
			if err != nil {
				return nil, fmt.Errorf("weave ps: line %q: %v", line, err)
			}
			e.Addrs = append(e.Addrs, p)
		}
		out = append(out, e)
	}
	return out, nil
}

// containerAddr returns the one address `weave ps ID` on h gives the
// Docker container id, failing the test unless the line shows its short
// ID, a MAC and a single address in the default range.
func containerAddr(t *testing.T, h *harness.Host, id string) netip.Addr {
	t.Helper()
	return containerAddrAs(t, h, id, id)
}

// containerAddrAs is containerAddr with the container named by ref (its
// name, say) on the command line.
func containerAddrAs(t *testing.T, h *harness.Host, ref, id string) netip.Addr {
	t.Helper()
	ps, err := weavePS(h, ref)
	if err != nil {
		t.Fatal(err)
	}
	if len(ps) != 1 {
		t.Fatalf("%s: weave ps %s: %+v, want one line", h.HostName, ref, ps)
	}
	checkPSEntry(t, ps[0], id)
	return ps[0].Addrs[0].Addr()
}

func checkPSEntry(t *testing.T, e psEntry, id string) {
	t.Helper()
	if e.ID != id[:12] || !macRE.MatchString(e.MAC) || len(e.Addrs) != 1 ||
		e.Addrs[0] != netip.PrefixFrom(e.Addrs[0].Addr(), 12) || !defaultRange.Contains(e.Addrs[0].Addr()) {
		t.Fatalf("weave ps entry %+v: want ID %s, a MAC and one address/12 in %s", e, id[:12], defaultRange)
	}
}

// httpGet fetches url with a connection made inside namespace n.
func httpGet(n harness.Netns, url string) (int, string, error) {
	c := http.Client{
		Timeout: 5 * time.Second,
		Transport: &http.Transport{
			DisableKeepAlives: true,
			DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
				return n.Dial(network, addr, 3*time.Second)
			},
		},
	}
	resp, err := c.Get(url)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}

// waitGet waits until GET url from n answers 200 with body want.
func waitGet(t *testing.T, n harness.Netns, url, want string) {
	t.Helper()
	harness.WaitFor(t, reachTimeout, func() (bool, string) {
		code, body, err := httpGet(n, url)
		return err == nil && code == http.StatusOK && body == want,
			fmt.Sprintf("GET %s from %s = %d %q, %v; want 200 %q", url, n.Name, code, body, err, want)
	})
}

// TestDockerWebDB: a db container started with weave run on h1 and a web
// container on h2 that calls the db by its weave address; a namespace on
// h2 reaches the db through the web, across hosts. weave ps on h1 lists
// the db by short ID. A docker restart of the db keeps its address without
// a new allocation, and it is reachable again.
func TestDockerWebDB(t *testing.T) {
	t.Parallel()
	l := harness.New(t)
	img := harness.DockerImage(t)
	label := dockerLabel(t, l)
	h1, h2 := meshedPair(t, l)

	db := weaveRun(t, h1, label, nil, "--name", "db-"+l.ID(), img, "db")
	dbIP := containerAddr(t, h1, db)
	web := weaveRun(t, h2, label, nil, "--name", "web-"+l.ID(), img, "web", "-db", dbIP.String()+":7000")
	webIP := containerAddr(t, h2, web)
	if webIP == dbIP {
		t.Fatalf("db and web both got %s", dbIP)
	}

	// By name too, and the full listing of h1 holds the db; h2's does not.
	if byName := containerAddrAs(t, h1, "db-"+l.ID(), db); byName != dbIP {
		t.Errorf("weave ps db-%s = %s, by ID %s", l.ID(), byName, dbIP)
	}
	all, err := weavePS(h1)
	if err != nil {
		t.Fatal(err)
	}
	if i := slices.IndexFunc(all, func(e psEntry) bool { return e.ID == db[:12] }); i < 0 {
		t.Errorf("weave ps on h1 = %+v: no line for db %s", all, db[:12])
	} else {
		checkPSEntry(t, all[i], db)
	}
	if all2, err := weavePS(h2); err != nil || slices.ContainsFunc(all2, func(e psEntry) bool { return e.ID == db[:12] }) {
		t.Errorf("weave ps on h2 = %+v, %v: want it without h1's db", all2, err)
	}

	client := l.AddContainer(h2, "client")
	client.Attach()
	greeting := fmt.Sprintf("db %s %s\n", db[:12], dbIP)
	waitGet(t, client.Netns, "http://"+webIP.String()+"/", "web "+web[:12]+"\n")
	waitGet(t, client.Netns, "http://"+webIP.String()+"/db", greeting)

	// docker restart: same address, re-attached, no new allocation.
	before := ipamStatus(t, h1)
	harness.MustDocker(t, "restart", "-t", "5", db)
	harness.WaitFor(t, reachTimeout, func() (bool, string) {
		ps, err := weavePS(h1, db)
		if err != nil {
			return false, err.Error()
		}
		return len(ps) == 1 && len(ps[0].Addrs) == 1 && ps[0].Addrs[0].Addr() == dbIP,
			fmt.Sprintf("weave ps db after restart = %+v, want %s", ps, dbIP)
	})
	waitGet(t, client.Netns, "http://"+webIP.String()+"/db", greeting)
	after := ipamStatus(t, h1)
	if after.Allocated != before.Allocated || after.Held != 0 {
		t.Errorf("h1 ipam after restart: allocated %d held %d; before allocated %d: want the same, none held",
			after.Allocated, after.Held, before.Allocated)
	}
}

// TestDockerRunConcurrent: 30 weave runs at once, 15 on each of two hosts,
// all succeed with 30 distinct addresses, which are reachable.
func TestDockerRunConcurrent(t *testing.T) {
	t.Parallel()
	l := harness.New(t)
	img := harness.DockerImage(t)
	label := dockerLabel(t, l)
	h1, h2 := meshedPair(t, l)

	const n = 30
	hosts := []*harness.Host{h1, h2}
	results := make([]harness.Result, n)
	var wg sync.WaitGroup
	start := time.Now()
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i] = hosts[i%2].WeaveQuiet(runArgs(label, nil, img, "sleep")...)
		}()
	}
	wg.Wait()
	t.Logf("%d concurrent weave runs took %v", n, time.Since(start).Round(time.Millisecond))
	ids := map[*harness.Host][]string{}
	for i, r := range results {
		id := strings.TrimSpace(r.Stdout)
		if !r.OK() || !isFullID(id) {
			t.Errorf("%s: %s: want exit 0 and a container ID", hosts[i%2].HostName, r)
			continue
		}
		ids[hosts[i%2]] = append(ids[hosts[i%2]], id)
	}
	if t.Failed() {
		t.FailNow()
	}

	seen := map[netip.Addr]string{}
	for _, h := range hosts {
		ps, err := weavePS(h, ids[h]...)
		if err != nil {
			t.Fatal(err)
		}
		if len(ps) != len(ids[h]) {
			t.Fatalf("%s: weave ps of its %d containers gave %d lines: %+v", h.HostName, len(ids[h]), len(ps), ps)
		}
		for i, e := range ps {
			checkPSEntry(t, e, ids[h][i])
			ip := e.Addrs[0].Addr()
			if other, dup := seen[ip]; dup {
				t.Errorf("%s and %s both have %s", other, e.ID, ip)
			}
			seen[ip] = e.ID
		}
		if st := ipamStatus(t, h); st.Allocated != n/2 {
			t.Errorf("%s: ipam allocated %d, want %d", h.HostName, st.Allocated, n/2)
		}
	}
	if len(seen) != n {
		t.Fatalf("%d distinct addresses, want %d", len(seen), n)
	}
	// And they are on the network: a namespace on h1 reaches one of h2's.
	c := l.AddContainer(h1, "c")
	c.Attach()
	far := containerAddr(t, h2, ids[h2][0])
	harness.WaitFor(t, reachTimeout, func() (bool, string) { return c.Reaches(far.String()) })
}

// TestDockerGrace: the address of a killed container is held for the
// grace period (here 4 s): meanwhile an allocation gets another address,
// a static claim of it fails and `weave status ipam` counts it held; once
// released, the next allocation hands it out again (the lowest free
// address comes first).
//
// The hold begins after the kill, so until killStart+grace it is certainly
// in force: checks of the held state are made only when they ended before
// that (a loaded machine, where docker run can take seconds, only makes
// them void, never wrong); the namespace attaches, which take
// milliseconds, come first. The held state itself lasts a whole grace
// period from the die event on, so polling for it cannot miss it.
func TestDockerGrace(t *testing.T) {
	t.Parallel()
	const grace = 4 * time.Second
	l := harness.New(t)
	img := harness.DockerImage(t)
	label := dockerLabel(t, l)
	h := l.AddHost("h1")
	h.Launch("--ipalloc-grace", grace.String())

	x := weaveRun(t, h, label, nil, img, "sleep")
	xIP := containerAddr(t, h, x)
	killStart := time.Now()
	harness.MustDocker(t, "kill", x)
	inGrace := func(what string) bool {
		if d := time.Since(killStart); d >= grace {
			t.Logf("%s ended %v after the kill, past the grace period: not checked", what, d.Round(time.Millisecond))
			return false
		}
		return true
	}

	harness.WaitFor(t, reachTimeout, func() (bool, string) {
		st := ipamStatus(t, h)
		return st.Held == 1, fmt.Sprintf("ipam %+v: want 1 held (x's)", st)
	})
	c1 := l.AddContainer(h, "c1")
	c1Got := c1.Attach()
	if inGrace("allocation") && slices.Contains(c1Got, xIP.String()) {
		t.Errorf("%s got %v, the address of killed x, within the grace period", c1.Ref(), c1Got)
	}
	c2 := l.AddContainer(h, "c2")
	r := h.Weave("attach", "ip:"+xIP.String()+"/12", c2.Ref())
	if inGrace("static claim") {
		checkOneLineError(t, r, "in use")
	}
	if r.OK() {
		h.MustWeave("detach", c2.Ref())
	}
	if st := ipamStatus(t, h); inGrace("status") && st.Held != 1 {
		t.Errorf("ipam %+v within the grace period: want 1 held", st)
	}
	y := weaveRun(t, h, label, nil, img, "sleep")
	yIP := containerAddr(t, h, y)
	if inGrace("weave run") && yIP == xIP {
		t.Errorf("y got %s, the address of killed x, within the grace period", yIP)
	}

	harness.WaitFor(t, reachTimeout, func() (bool, string) {
		st := ipamStatus(t, h)
		return st.Held == 0, fmt.Sprintf("ipam %+v: want nothing held after the grace period", st)
	})
	if d := time.Since(killStart); d < grace {
		t.Errorf("x's address released %v after the kill, before the %v grace period", d, grace)
	}
	want := 2 // c1 and y
	switch {
	case slices.Contains(c1Got, xIP.String()):
		// On a loaded machine c1's attach came after the grace period
		// and got the released address: allocatable again.
		t.Logf("c1 got x's released address %s", xIP)
	case yIP == xIP:
		// y's docker run outlasted the grace period and y was given
		// the released address, which shows it allocatable again.
		t.Logf("y got x's released address %s", xIP)
	default:
		z := weaveRun(t, h, label, nil, img, "sleep")
		if zIP := containerAddr(t, h, z); zIP != xIP {
			t.Errorf("after the grace period z got %s, want x's released %s (the lowest free)", zIP, xIP)
		}
		want++
	}
	if st := ipamStatus(t, h); st.Allocated != want || st.Held != 0 {
		t.Errorf("ipam %+v: want %d allocated, none held", st, want)
	}
}

// TestDockerBadInput: weave run and weave attach with bad containers or
// addresses exit 1 with one line on stderr and leave nothing behind: no
// container from weave run, no address allocated.
func TestDockerBadInput(t *testing.T) {
	t.Parallel()
	l := harness.New(t)
	img := harness.DockerImage(t)
	label := dockerLabel(t, l)
	h1, h2 := meshedPair(t, l)

	// An address in h2's space: h2 allocates the lowest address of its
	// own space, so the next one is h2's too (and free).
	c2 := l.AddContainer(h2, "c2")
	a2, err := netip.ParseAddr(strings.Join(c2.Attach(), ""))
	if err != nil {
		t.Fatal(err)
	}
	elsewhere := a2.Next()
	harness.WaitFor(t, convergeTimeout, func() (bool, string) {
		st := ipamStatus(t, h1)
		return st.State == "ready", fmt.Sprintf("h1 ipam %+v: want ready", st)
	})

	// Containers that are not running: never started, and exited.
	created := harness.MustDocker(t, "create", "--label", label, img, "sleep")
	exited := harness.MustDocker(t, "run", "-d", "--label", label, img, "probe")
	harness.MustDocker(t, "wait", exited)
	// A running container that weave did not attach.
	running := harness.MustDocker(t, "run", "-d", "--label", label, img, "sleep")
	ours := []string{created, exited, running}

	before1, before2 := ipamStatus(t, h1), ipamStatus(t, h2)
	for _, tc := range []struct {
		name    string
		args    []string
		mention string
	}{
		{"run of a missing image", runArgs(label, nil, "weave-test/no-such-image:"+l.ID(), "sleep"), "docker run"},
		{"attach of a missing container", []string{"attach", "no-such-container-" + l.ID()}, "no such container"},
		{"attach of a created container", []string{"attach", created}, "not running"},
		{"attach of an exited container", []string{"attach", exited}, "not running"},
		{"run in a subnet outside the range", runArgs(label, []string{"net:10.99.0.0/24"}, img, "sleep"), "10.99.0.0/24"},
		{"run with a malformed subnet", runArgs(label, []string{"net:10.32.0.0/33"}, img, "sleep"), "10.32.0.0/33"},
		{"run with a network address", runArgs(label, []string{"ip:192.168.1.0/24"}, img, "sleep"), "192.168.1.0/24"},
		{"attach of an address owned by another peer", []string{"attach", "ip:" + elsewhere.String() + "/12", running}, "owned by another peer"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			start := time.Now()
			checkOneLineError(t, h1.Weave(tc.args...), tc.mention)
			t.Logf("failed after %v", time.Since(start).Round(time.Millisecond))
			if left := slices.DeleteFunc(labelled(t, label), func(id string) bool { return slices.Contains(ours, id) }); len(left) > 0 {
				t.Errorf("containers left behind: %v", left)
				for _, id := range left {
					harness.RemoveContainer(t, id)
				}
			}
		})
	}
	if ps, err := weavePS(h1); err != nil || len(ps) != 0 {
		t.Errorf("weave ps on h1 = %+v, %v: want nothing attached", ps, err)
	}
	after1, after2 := ipamStatus(t, h1), ipamStatus(t, h2)
	if after1.Allocated != before1.Allocated || after1.Held != 0 || after2.Allocated != before2.Allocated {
		t.Errorf("ipam allocated h1 %d (held %d), h2 %d after the bad commands; before h1 %d, h2 %d",
			after1.Allocated, after1.Held, after2.Allocated, before1.Allocated, before2.Allocated)
	}
}

// TestDockerUnreachable: a router whose Docker Engine cannot be reached
// still attaches namespaces, and says in one line that docker is not
// reachable when asked for a Docker container; a weave run whose docker
// CLI reaches the Engine but whose router does not removes the container
// it started.
func TestDockerUnreachable(t *testing.T) {
	t.Parallel()
	l := harness.New(t)
	img := harness.DockerImage(t)
	label := dockerLabel(t, l)
	h := l.AddHost("h1")
	// The router inherits the environment of weave launch.
	env := []string{"WEAVE_RUN_DIR=" + h.RunDir, "WEAVE_STATE_DIR=" + h.StateDir, "DOCKER_HOST=unix:///nonexistent.sock"}
	r := h.RunEnv(context.Background(), env, harness.Binary(t), "launch", "--nickname", h.HostName)
	t.Logf("launch with DOCKER_HOST=unix:///nonexistent.sock: %s", r)
	if !r.OK() {
		t.Fatalf("launch: %v", r.Err)
	}

	c := l.AddContainer(h, "c")
	got := c.Attach()
	if ip, err := netip.ParseAddr(strings.Join(got, "")); err != nil || !defaultRange.Contains(ip) {
		t.Errorf("attach printed %q: want one address in %s", got, defaultRange)
	}
	for _, args := range [][]string{{"attach", "some-name"}, {"ps", "some-name"}, {"detach", "some-name"}} {
		r := h.Weave(args...)
		checkOneLineError(t, r, "docker is not reachable")
		if !strings.Contains(r.Stderr, "unix:///nonexistent.sock") {
			t.Errorf("%s: want the error to say where docker was looked for", r)
		}
	}
	checkOneLineError(t, h.Weave(runArgs(label, nil, img, "sleep")...), "docker is not reachable")
	if left := labelled(t, label); len(left) > 0 {
		t.Errorf("weave run left containers behind: %v", left)
	}
	if ps, err := weavePS(h); err != nil || len(ps) != 1 || ps[0].ID != c.Ref() {
		t.Errorf("weave ps = %+v, %v: want only %s", ps, err, c.Ref())
	}
	if st := ipamStatus(t, h); st.Allocated != 1 {
		t.Errorf("ipam allocated %d, want 1 (the namespace)", st.Allocated)
	}
}
