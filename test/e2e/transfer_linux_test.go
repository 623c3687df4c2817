package e2e

import (
	"context"
	"fmt"
	"maps"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/weavelab/weave/test/harness"
)

// envTransferBytes sets the size of each TCP transfer of TestTransfer
// ("4G", "512M", "1048576"); each UDP transfer moves a quarter of it.
const envTransferBytes = "WEAVE_E2E_TRANSFER_BYTES"

const (
	defaultTransferBytes = 256 << 20
	// udpRate paces the UDP sender. The fast path carries it here
	// without loss; the sleeve loses some when the machine is busy
	// (frames its router does not read off the TAP in time). Loss is
	// reported; only corrupt data fails.
	udpRate = 200e6
	// transferPassword is the network password of the encrypted cases.
	transferPassword = "h8-transfer-matrix"
)

// transferPath is one way for data to go from container c1 on h1 to the
// container on the last host.
type transferPath struct {
	name     string
	password string
	flags    []string // launch flags of every router
	multiHop bool     // three hosts in a line, the LAN cut between h1 and h3
	// connPath and connReason are what `weave status connections` says of
	// h1's connection to the next hop (and the last host's to the one
	// before it); dataPath is the way the transfer's bytes must leave h1,
	// checked on the counters of weave-vxlan and of that connection.
	connPath, connReason, dataPath string
}

var transferPaths = []transferPath{
	{name: "direct-plain-fastdp", connPath: "fastdp", dataPath: "fastdp"},
	{name: "direct-plain-nofastdp", flags: []string{"--no-fastdp"}, connPath: "sleeve", connReason: "--no-fastdp", dataPath: "sleeve"},
	{name: "direct-encrypted", password: transferPassword, connPath: "sleeve", connReason: "encrypted", dataPath: "sleeve"},
	// Each link of the line is direct and takes the fast path, but
	// frames for h3's containers are relayed by h2's router: the sleeve.
	{name: "multihop-plain", multiHop: true, connPath: "fastdp", dataPath: "sleeve"},
	{name: "multihop-encrypted", password: transferPassword, multiHop: true, connPath: "sleeve", connReason: "encrypted", dataPath: "sleeve"},
}

// transferFamily is the container addresses a transfer uses. weave attach
// takes IPv4 only, so the IPv6 addresses are put on ethwe by hand: the
// overlay is Ethernet and carries them (and their neighbour discovery)
// like any other frame.
type transferFamily struct {
	name     string
	src, dst string // addresses of c1 and of the last container
}

var transferFamilies = []transferFamily{
	{name: "ipv4", src: "10.2.1.1", dst: "10.2.1.2"},
	{name: "ipv6", src: "fd00:8e::1", dst: "fd00:8e::2"},
}

// TestTransfer is the data path's correctness matrix: data whose SHA-256
// must match at the other end, over TCP and UDP, between IPv4 and IPv6
// container addresses, for each transferPath. Each path's hosts are set up
// in parallel; the transfers themselves run one at a time so that they do
// not compete for the machine's two cores (UDP loss would then measure
// the test, not the overlay). WEAVE_E2E_TRANSFER_BYTES=4G makes each TCP
// transfer 4 GiB and each UDP one 1 GiB (raise go test's -timeout).
func TestTransfer(t *testing.T) {
	t.Parallel()
	tcpBytes, err := transferBytes()
	if err != nil {
		t.Fatal(err)
	}
	udpBytes := max(tcpBytes/4, 1<<20)
	slot := make(chan struct{}, 1)
	for _, p := range transferPaths {
		t.Run(p.name, func(t *testing.T) {
			t.Parallel()
			n := transferSetup(t, p)
			for _, proto := range []string{"tcp", "udp"} {
				for _, fam := range transferFamilies {
					t.Run(proto+"-"+fam.name, func(t *testing.T) {
						slot <- struct{}{}
						defer func() { <-slot }()
						before := pathBytes(t, n.h1, n.next)
						var arrived int64
						if proto == "tcp" {
							arrived = transferTCP(t, n.src, n.dst, fam.dst, tcpBytes)
						} else {
							arrived = transferUDP(t, n, fam.dst, udpBytes)
						}
						checkDataPath(t, p.dataPath, arrived, before, pathBytes(t, n.h1, n.next))
					})
				}
			}
		})
	}
}

// transferBytes is $WEAVE_E2E_TRANSFER_BYTES (a number of bytes with an
// optional K, M, G or T suffix, powers of 1024), else the default.
func transferBytes() (int64, error) {
	s := strings.TrimSpace(os.Getenv(envTransferBytes))
	if s == "" {
		return defaultTransferBytes, nil
	}
	num := strings.TrimSuffix(strings.TrimSuffix(strings.ToUpper(s), "B"), "I")
	shift := 0
	if i := strings.IndexAny(num, "KMGT"); i >= 0 && i == len(num)-1 {
		shift = 10 * (1 + strings.IndexByte("KMGT", num[i]))
		num = num[:i]
	}
	n, err := strconv.ParseInt(num, 10, 64)
	if err != nil || n <= 0 || n > (1<<62)>>shift {
		return 0, fmt.Errorf("%s=%q: want a positive number of bytes, e.g. 4G or 512M", envTransferBytes, s)
	}
	return n << shift, nil
}

// transferNet is what transferSetup made: the hosts in line from h1, the
// nickname of h1's next hop, and the containers at either end.
type transferNet struct {
	hosts    []*harness.Host
	h1       *harness.Host
	next     string
	src, dst *harness.Container
}

// transferSetup launches the hosts of p, attaches c1 on h1 and c2 on the
// last host, gives both their IPv4 and IPv6 addresses, waits until they
// reach each other over both, and checks each connection's path.
func transferSetup(t *testing.T, p transferPath) transferNet {
	t.Helper()
	l := harness.New(t)
	var n transferNet
	h1, h2 := l.AddHost("h1"), l.AddHost("h2")
	n.h1, n.next, n.hosts = h1, h2.HostName, []*harness.Host{h1, h2}
	if p.multiHop {
		n.hosts = append(n.hosts, l.AddHost("h3"))
		l.Cut(h1, n.hosts[2])
	}
	for i, h := range n.hosts {
		h.Password = p.password
		flags := p.flags[:len(p.flags):len(p.flags)]
		if i > 0 {
			flags = append(flags, n.hosts[i-1].IP)
		}
		h.Launch(flags...)
	}
	last := n.hosts[len(n.hosts)-1]
	if p.multiHop {
		h3 := last
		waitConnections(t, map[*harness.Host][]*harness.Host{h1: {h2}, h2: {h1, h3}, h3: {h2}})
		waitKnows(t, h1, h1, h2, h3)
	} else {
		waitMesh(t, h1, h2)
	}
	waitPath(t, h1, h2.HostName, p.connPath, p.connReason, 15*time.Second)
	waitPath(t, last, n.hosts[len(n.hosts)-2].HostName, p.connPath, p.connReason, 15*time.Second)

	n.src, n.dst = l.AddContainer(h1, "c1"), l.AddContainer(last, "c2")
	for i, c := range []*harness.Container{n.src, n.dst} {
		fam4, fam6 := transferFamilies[0], transferFamilies[1]
		c.Attach([]string{fam4.src, fam4.dst}[i] + "/24")
		addIPv6(t, c, []string{fam6.src, fam6.dst}[i]+"/64")
	}
	for _, fam := range transferFamilies {
		harness.WaitFor(t, reachTimeout, func() (bool, string) { return n.src.Reaches(fam.dst) })
		harness.WaitFor(t, reachTimeout, func() (bool, string) { return n.dst.Reaches(fam.src) })
	}
	// The relay must not have made h1 and h3 neighbours after all.
	if got, err := established(h1); err != nil || len(got) != 1 || got[0] != n.next {
		t.Fatalf("h1 connected to %v (%v), want only %s", got, err, n.next)
	}
	if p.dataPath == "fastdp" {
		// The router programs a MAC's kernel entries on its next
		// maintenance tick after learning it: until then (the first
		// tens of milliseconds of a new flow) frames take the sleeve.
		waitFastEntry(t, h1, n.dst)
		waitFastEntry(t, last, n.src)
	}
	return n
}

// waitFastEntry waits until h's weave-vxlan forwards to c's MAC.
func waitFastEntry(t *testing.T, h *harness.Host, c *harness.Container) {
	t.Helper()
	ctx := context.Background()
	r := c.Run(ctx, "cat", "/sys/class/net/ethwe/address")
	mac := strings.TrimSpace(r.Stdout)
	if !r.OK() || mac == "" {
		t.Fatalf("%s: ethwe address: %s", c.CName, r)
	}
	harness.WaitFor(t, 15*time.Second, func() (bool, string) {
		r := h.Run(ctx, "bridge", "fdb", "show", "dev", "weave-vxlan")
		return strings.Contains(r.Stdout, mac), fmt.Sprintf("%s: no fast-path entry for %s's %s: %s", h.HostName, c.CName, mac, r)
	})
}

// addIPv6 puts addr (CIDR) on the container's ethwe by hand, since weave
// attach takes IPv4 only; nodad makes it usable at once.
func addIPv6(t *testing.T, c *harness.Container, addr string) {
	t.Helper()
	ctx := context.Background()
	if r := c.Run(ctx, "sysctl", "-qw", "net.ipv6.conf.ethwe.disable_ipv6=0"); !r.OK() {
		t.Fatalf("%s: %s", c.CName, r)
	}
	if r := c.Run(ctx, "ip", "-6", "addr", "add", addr, "dev", "ethwe", "nodad"); !r.OK() {
		t.Fatalf("%s: %s", c.CName, r)
	}
}

// transferTimeout bounds a transfer of n bytes: generous, a hang bound
// rather than a speed requirement (5 MB/s, and a minute to spare).
func transferTimeout(n int64) time.Duration {
	return time.Minute + time.Duration(n/(5<<20))*time.Second
}

// transferTCP moves size bytes from src to dstIP over TCP, fails the test
// unless they arrive whole with the SHA-256 sent, and returns size.
func transferTCP(t *testing.T, src, dst *harness.Container, dstIP string, size int64) int64 {
	t.Helper()
	seed := rand.Uint64()
	s, err := harness.TCPStream(src.Netns, dst.Netns, dstIP, size, seed, transferTimeout(size))
	if err != nil {
		t.Fatalf("TCP %s -> %s, %d bytes (seed %d): %v", src.CName, dstIP, size, seed, err)
	}
	t.Logf("TCP %s -> %s: %s in %v (%.0f Mbit/s), SHA-256 %x matches", src.CName, dstIP, mib(size),
		s.Took.Round(time.Millisecond), s.Mbps(), s.ReceivedSum[:8])
	return size
}

// transferUDP moves size bytes from n.src to dstIP in datagrams paced to
// udpRate, fails the test on any corrupt datagram or a SHA-256 that does
// not match, reports loss and where it happened, and returns the bytes of
// data that arrived.
func transferUDP(t *testing.T, n transferNet, dstIP string, size int64) int64 {
	t.Helper()
	cfg := harness.UDPConfig{Bytes: size, Rate: udpRate, Seed: rand.Uint64(), Timeout: transferTimeout(size)}
	before := dropCounters(t, n)
	r, err := harness.UDPTransfer(n.src.Netns, n.dst.Netns, dstIP, cfg)
	if err != nil {
		t.Fatalf("UDP %s -> %s, %d bytes (seed %d): %v; %s", n.src.CName, dstIP, size, cfg.Seed, err, r)
	}
	if r.Received == 0 {
		t.Fatalf("UDP %s -> %s: nothing arrived: %s", n.src.CName, dstIP, r)
	}
	t.Logf("UDP %s -> %s: %s at %.0f Mbit/s: %s", n.src.CName, dstIP, mib(size), udpRate/1e6, r)
	if r.Lost > 0 {
		after := dropCounters(t, n)
		var where []string
		for _, k := range slices.Sorted(maps.Keys(after)) {
			if d := after[k] - before[k]; d > 0 {
				where = append(where, fmt.Sprintf("%s +%d", k, d))
			}
		}
		t.Logf("UDP %s -> %s: LOSS of %d of %d datagrams (%.2f%%), reported, not an error (no datagram was corrupt); drop counters: %s",
			n.src.CName, dstIP, r.Lost, r.Datagrams, 100*r.LossRate(), strings.Join(where, ", "))
	}
	return r.ReceivedBytes
}

// dropCounters reads the counters of the places a datagram can be dropped
// on its way: each container's and host's UDP receive buffer errors, each
// host's TAP (tx_dropped: frames the kernel could not queue for the
// router), each container's ethwe, and each router's own drops.
func dropCounters(t *testing.T, n transferNet) map[string]uint64 {
	t.Helper()
	out := map[string]uint64{}
	ctx := context.Background()
	read := func(who string, ns harness.Netns) {
		if r := ns.Run(ctx, "cat", "/proc/net/snmp"); r.OK() {
			for k, v := range snmpUDP(r.Stdout) {
				if k == "RcvbufErrors" || k == "SndbufErrors" || k == "InErrors" || k == "NoPorts" {
					out[who+" udp "+k] = v
				}
			}
		}
		for _, dev := range []string{"weave-tap", "ethwe"} {
			for _, c := range []string{"tx_dropped", "rx_dropped"} {
				r := ns.Run(ctx, "cat", "/sys/class/net/"+dev+"/statistics/"+c)
				if v, err := strconv.ParseUint(strings.TrimSpace(r.Stdout), 10, 64); r.OK() && err == nil {
					out[who+" "+dev+" "+c] = v
				}
			}
		}
	}
	read(n.src.CName, n.src.Netns)
	read(n.dst.CName, n.dst.Netns)
	for _, h := range n.hosts {
		read(h.HostName, h.Netns)
		if st, err := h.Status(); err == nil {
			for _, c := range st.Connections {
				if c.Stats != nil && c.Peer != nil {
					for reason, v := range c.Stats.Drops {
						out[h.HostName+" router drops to/from "+c.Peer.NickName+" "+reason] = v
					}
				}
			}
		}
	}
	return out
}

// snmpUDP parses the Udp: lines of /proc/net/snmp.
func snmpUDP(s string) map[string]uint64 {
	var names []string
	out := map[string]uint64{}
	for _, line := range strings.Split(s, "\n") {
		f := strings.Fields(line)
		if len(f) == 0 || f[0] != "Udp:" {
			continue
		}
		if names == nil {
			names = f[1:]
			continue
		}
		for i, v := range f[1:] {
			if n, err := strconv.ParseUint(v, 10, 64); err == nil && i < len(names) {
				out[names[i]] = n
			}
		}
	}
	return out
}

func mib(n int64) string {
	if n%(1<<30) == 0 {
		return fmt.Sprintf("%d GiB", n>>30)
	}
	return fmt.Sprintf("%d MiB", n>>20)
}

// dataBytes counts what left a host towards its next hop: bytes sent by
// its weave-vxlan device (kernel fast path) and by its router to that
// peer (sleeve).
type dataBytes struct{ vxlan, sleeve uint64 }

func pathBytes(t *testing.T, h *harness.Host, peer string) dataBytes {
	t.Helper()
	var b dataBytes
	// No device (--no-fastdp, a password): nothing goes the fast path.
	r := h.Run(context.Background(), "cat", "/sys/class/net/weave-vxlan/statistics/tx_bytes")
	if r.OK() {
		n, err := strconv.ParseUint(strings.TrimSpace(r.Stdout), 10, 64)
		if err != nil {
			t.Fatalf("%s: weave-vxlan tx_bytes %q: %v", h.HostName, r.Stdout, err)
		}
		b.vxlan = n
	}
	cs, err := connPaths(h)
	if err != nil {
		t.Fatal(err)
	}
	c, ok := cs[peer]
	if !ok || c.Stats == nil {
		t.Fatalf("%s: no established connection with counters to %s", h.HostName, peer)
	}
	b.sleeve = c.Stats.BytesOut
	return b
}

// checkDataPath checks that a transfer of which size bytes arrived left
// the sending host by way want: at least size bytes that way, and less
// than a tenth of it
// the other way (which carries only heartbeats and neighbour discovery:
// the acknowledgements of TCP leave the other host).
func checkDataPath(t *testing.T, want string, size int64, before, after dataBytes) {
	t.Helper()
	vx, sl := after.vxlan-before.vxlan, after.sleeve-before.sleeve
	on, off := sl, vx
	if want == "fastdp" {
		on, off = vx, sl
	}
	if on < uint64(size) || off > uint64(size)/10 {
		t.Errorf("data path: weave-vxlan sent %d bytes, the router %d bytes to the next hop, for %d bytes of data; want them on %s", vx, sl, size, want)
		return
	}
	t.Logf("data path %s: weave-vxlan sent %d bytes, the router %d", want, vx, sl)
}
