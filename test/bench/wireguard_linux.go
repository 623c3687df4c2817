package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// The wireguard-go lab. WireGuard carries IP packets (layer 3), so there
// is no bridge: each container has a veth to its host with a /24 of its
// own and a default route through the host, and each host forwards, and
// routes the other container's /24 to its WireGuard device.
const (
	wgPort      = 51820
	wgSubnet    = "10.44.0" // host i's WireGuard device: wgSubnet.i/24
	wgCtrSubnet = "10.43"   // container i: wgCtrSubnet.i.2/24, its host's end .1
	// wgMTU is the container and tunnel MTU: the 1500 underlay less
	// WireGuard's 80 bytes (IPv6 outer header, UDP, WireGuard header,
	// Poly1305 tag), the MTU wg-quick and wireguard-go default to.
	wgMTU   = 1420
	wgVeth  = "wgh"   // host end of the container's veth
	wgCtrIf = "ethwg" // container end
	tunDev  = "/dev/net/tun"
)

// wireGuardGoBuild is the wireguard-go binary the scenario runs, or why
// there is none: skip when it could not be built here (the scenario is
// then skipped), err when the binary given does not work.
type wireGuardGoBuild struct {
	bin     string
	version string // the first line of its --version
	skip    string
	err     error
}

// prepareWireGuardGo finds the wireguard-go binary: -wireguard-go's, or
// the pinned version installed into dir.
func prepareWireGuardGo(ctx context.Context, cfg config, dir string, log *slog.Logger) wireGuardGoBuild {
	var wg wireGuardGoBuild
	if _, err := os.Stat(tunDev); err != nil {
		wg.skip = fmt.Sprintf("wireguard-go needs %s: %v", tunDev, err)
		log.Warn("wireguard-go scenario will be skipped", "why", wg.skip)
		return wg
	}
	wg.bin = cfg.wireGuardGoBin
	if wg.bin == "" {
		log.Info("building wireguard-go", "module", wireGuardGoModule)
		bin, err := buildWireGuardGo(ctx, dir)
		if err != nil {
			wg.skip = fmt.Sprintf("could not build wireguard-go (pass -wireguard-go BINARY): %v", err)
			log.Warn("wireguard-go scenario will be skipped", "why", wg.skip)
			return wg
		}
		wg.bin = bin
	}
	if wg.version, wg.err = wireGuardGoVersion(ctx, wg.bin); wg.err != nil {
		log.Error("wireguard-go scenario cannot run", "err", wg.err)
		return wg
	}
	log.Info("wireguard-go binary", "path", wg.bin, "version", wg.version)
	return wg
}

// buildWireGuardGo installs the pinned wireguard-go into dir and returns
// the binary's path.
func buildWireGuardGo(ctx context.Context, dir string) (string, error) {
	if _, err := exec.LookPath("go"); err != nil {
		return "", errors.New("no go command")
	}
	ctx, cancel := context.WithTimeout(ctx, wireGuardGoBuildTimeout)
	defer cancel()
	gobin := filepath.Join(dir, "wireguard-go-build")
	if err := os.MkdirAll(gobin, 0o755); err != nil {
		return "", err
	}
	cmd := exec.CommandContext(ctx, "go", "install", wireGuardGoModule)
	cmd.Dir = gobin // outside any module
	cmd.Env = append(os.Environ(), "GOBIN="+gobin, "GOWORK=off", "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go install %s: %w: %s", wireGuardGoModule, err, lastLines(string(out), 5))
	}
	// go install names the binary after the module path's last element.
	bin := filepath.Join(dir, "wireguard-go")
	if err := os.Rename(filepath.Join(gobin, "wireguard"), bin); err != nil {
		return "", fmt.Errorf("go install %s: %w", wireGuardGoModule, err)
	}
	return bin, nil
}

// wireGuardGoVersion is the first line of bin --version.
func wireGuardGoVersion(ctx context.Context, bin string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, cmdTimeout)
	defer cancel()
	out, err := exec.CommandContext(ctx, bin, "--version").CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("%s --version: %w: %s", bin, err, lastLines(string(out), 3))
	}
	v, _, _ := strings.Cut(strings.TrimSpace(string(out)), "\n")
	if !strings.HasPrefix(v, "wireguard-go") {
		return "", fmt.Errorf("%s --version: %q: not wireguard-go", bin, v)
	}
	return v, nil
}

// wgIfName is host i's WireGuard device. Its control socket's path is
// shared by every network namespace (and every bench run): the name has
// the run's prefix and the host's number.
func wgIfName(l *lab, i int) string { return fmt.Sprintf("%swg%d", l.prefix, i+1) }

// wgSocket is the UAPI socket of device ifname.
func wgSocket(ifname string) string { return filepath.Join(wireGuardUAPIDir, ifname+".sock") }

// uapiCall sends request to the UAPI socket sock and returns the reply's
// lines (errno checked).
func uapiCall(ctx context.Context, sock, request string) ([]string, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, "unix", sock)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	return uapiExchange(c, request)
}

// setupWireGuardGo starts wireguard-go in each host, configures the two
// devices as each other's peer through their UAPI sockets, and routes
// each container's /24 through them. Each step pushes its undo to undo.
func setupWireGuardGo(ctx context.Context, l *lab, wg wireGuardGoBuild, undo *cleanups) (*endpoints, error) {
	var keys [2]wgKeyPair
	for i := range keys {
		var err error
		if keys[i], err = newWGKeyPair(); err != nil {
			return nil, err
		}
	}
	ep := &endpoints{dst: fmt.Sprintf("%s.2.2", wgCtrSubnet), cipher: wireGuardCipher, path: "userspace", software: wg.version}
	var socks [2]string
	for i, h := range l.hosts {
		other := 1 - i
		ifname := wgIfName(l, i)
		sock := wgSocket(ifname)
		socks[i] = sock
		p, err := h.startEnv([]string{"LOG_LEVEL=verbose", "WG_PROCESS_FOREGROUND=1"}, wg.bin, "-f", ifname)
		if err != nil {
			return nil, fmt.Errorf("wireguard-go: %w", err)
		}
		pid := p.cmd.Process.Pid
		undo.push(fmt.Sprintf("stop wireguard-go %d in %s", pid, h.name), func() error {
			stderr := p.stop()
			logWireGuardGo(l.log, h.name, p.out.String(), stderr)
			// A killed wireguard-go leaves its socket behind; it is
			// this run's own name.
			if err := os.Remove(sock); err != nil && !errors.Is(err, os.ErrNotExist) {
				return err
			}
			return nil
		})
		if err := poll(ctx, 10*time.Second, 20*time.Millisecond, func() (bool, string) {
			select {
			case <-p.done:
				return false, fmt.Sprintf("wireguard-go exited: %s", lastLines(p.errb.String()+p.out.String(), 5))
			default:
			}
			c, err := net.Dial("unix", sock)
			if err != nil {
				return false, fmt.Sprintf("its UAPI socket: %v", err)
			}
			c.Close()
			return true, ""
		}); err != nil {
			return nil, fmt.Errorf("wireguard-go in %s: %w", h.name, err)
		}
		if !h.holds(pid) {
			return nil, fmt.Errorf("wireguard-go in %s: process %d is not in the namespace", h.name, pid)
		}
		ep.routers = append(ep.routers, pid)

		dev := wgDevice{privateKey: keys[i].private, listenPort: wgPort, peers: []wgPeer{{
			publicKey:  keys[other].public,
			endpoint:   fmt.Sprintf("%s:%d", l.hosts[other].ip, wgPort),
			allowedIPs: []string{fmt.Sprintf("%s.%d.0/24", wgCtrSubnet, other+1), fmt.Sprintf("%s.%d/32", wgSubnet, other+1)},
		}}}
		req, err := dev.uapiSet()
		if err != nil {
			return nil, fmt.Errorf("wireguard-go in %s: %w", h.name, err)
		}
		if _, err := uapiCall(ctx, sock, req); err != nil {
			return nil, fmt.Errorf("wireguard-go in %s: configuring %s: %w", h.name, ifname, err)
		}

		if err := enableForwarding(ctx, h, undo); err != nil {
			return nil, fmt.Errorf("wireguard-go: %w", err)
		}
		// Deleting the host end of the veth deletes the container end.
		undo.push(fmt.Sprintf("delete %s in %s", wgVeth, h.name), func() error {
			ctx, cancel := context.WithTimeout(context.Background(), cmdTimeout)
			defer cancel()
			if _, err := h.run(ctx, nil, "ip", "link", "show", wgVeth); err != nil {
				return nil // never made
			}
			return h.must(ctx, "ip", "link", "del", wgVeth)
		})
		mtu := fmt.Sprint(wgMTU)
		ctrNet := fmt.Sprintf("%s.%d", wgCtrSubnet, i+1)
		steps := []struct {
			ns   netns
			args []string
		}{
			{h.netns, []string{"ip", "addr", "add", fmt.Sprintf("%s.%d/24", wgSubnet, i+1), "dev", ifname}},
			{h.netns, []string{"ip", "link", "set", ifname, "mtu", mtu, "up"}},
			{h.netns, []string{"ip", "link", "add", wgVeth, "mtu", mtu, "type", "veth",
				"peer", "name", wgCtrIf, "mtu", mtu, "netns", h.container.name}},
			{h.netns, []string{"ip", "addr", "add", ctrNet + ".1/24", "dev", wgVeth}},
			{h.netns, []string{"ip", "link", "set", wgVeth, "up"}},
			{h.netns, []string{"ip", "route", "add", fmt.Sprintf("%s.%d.0/24", wgCtrSubnet, other+1), "dev", ifname}},
			{h.container, []string{"ip", "addr", "add", ctrNet + ".2/24", "dev", wgCtrIf}},
			{h.container, []string{"ip", "link", "set", wgCtrIf, "up"}},
			{h.container, []string{"ip", "route", "add", "default", "via", ctrNet + ".1"}},
		}
		for _, s := range steps {
			if err := s.ns.must(ctx, s.args...); err != nil {
				return nil, fmt.Errorf("wireguard-go: %w", err)
			}
		}
		// wireguard-go logs nothing about its offloads: the TUN device
		// says whether it took the virtio-net header (TSO/GRO batches).
		if out, err := h.run(ctx, nil, "ip", "-d", "-o", "link", "show", ifname); err == nil {
			l.log.Info("wireguard-go device", "netns", h.name, "dev", ifname, "pid", pid,
				"vnet_hdr (TUN offloads)", strings.Contains(out, "vnet_hdr on"))
		}
	}
	mtu, err := linkMTU(ctx, l.hosts[0].container, wgCtrIf)
	if err != nil {
		return nil, fmt.Errorf("wireguard-go: %w", err)
	}
	ep.mtu = mtu
	ep.diagnose = func() string {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		var b strings.Builder
		for i, sock := range socks {
			lines, err := uapiCall(ctx, sock, "get=1\n\n")
			if err != nil {
				fmt.Fprintf(&b, "%s wireguard-go: %v\n", l.hosts[i].short, err)
				continue
			}
			var peer []string
			for _, line := range lines {
				k, _, _ := strings.Cut(line, "=")
				switch k {
				case "endpoint", "last_handshake_time_sec", "rx_bytes", "tx_bytes":
					peer = append(peer, line)
				}
			}
			fmt.Fprintf(&b, "%s wireguard-go peer: %s\n", l.hosts[i].short, strings.Join(peer, " "))
		}
		return strings.TrimSpace(b.String())
	}
	return ep, nil
}

// enableForwarding turns IPv4 forwarding on in host h and pushes the undo
// that restores what it was.
func enableForwarding(ctx context.Context, h *host, undo *cleanups) error {
	const key = "net.ipv4.ip_forward"
	out, err := h.run(ctx, nil, "sysctl", "-n", key)
	if err != nil {
		return err
	}
	was := strings.TrimSpace(out)
	if was == "1" {
		return nil
	}
	undo.push(fmt.Sprintf("restore %s=%s in %s", key, was, h.name), func() error {
		ctx, cancel := context.WithTimeout(context.Background(), cmdTimeout)
		defer cancel()
		return h.must(ctx, "sysctl", "-q", "-w", key+"="+was)
	})
	return h.must(ctx, "sysctl", "-q", "-w", key+"=1")
}

// logWireGuardGo logs, once wireguard-go in namespace ns has ended, the
// lines of its output that tell of trouble or of its offloads; all of it
// at debug level.
func logWireGuardGo(log *slog.Logger, ns, stdout, stderr string) {
	all := strings.TrimSpace(stdout + "\n" + stderr)
	log.Debug("wireguard-go output", "netns", ns, "output", all)
	sc := bufio.NewScanner(strings.NewReader(all))
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "ERROR") || strings.Contains(line, "GSO") || strings.Contains(line, "GRO") {
			log.Info("wireguard-go said", "netns", ns, "line", line)
		}
	}
}
