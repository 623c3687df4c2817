package harness

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"syscall"
	"time"

	"github.com/vishvananda/netns"
)

// DefaultTimeout bounds every command that is not given its own context.
const DefaultTimeout = 60 * time.Second

// Result is what a finished command left.
type Result struct {
	Args     []string
	Stdout   string
	Stderr   string
	ExitCode int   // -1 when it did not run or was killed
	Err      error // nil when it exited 0
}

// OK reports whether the command exited 0.
func (r Result) OK() bool { return r.Err == nil }

// String summarises the command for test logs.
func (r Result) String() string {
	s := fmt.Sprintf("$ %s (exit %d)", strings.Join(r.Args, " "), r.ExitCode)
	if o := strings.TrimSpace(r.Stdout); o != "" {
		s += "\nstdout: " + o
	}
	if e := strings.TrimSpace(r.Stderr); e != "" {
		s += "\nstderr: " + e
	}
	return s
}

// Netns is a named network namespace (under /var/run/netns) that the
// harness made. Host, Container and LAN embed it.
type Netns struct {
	Name string
}

// RunEnv runs args in the namespace (ip netns exec) and waits for it. env
// entries are added to the test process's environment.
func (n Netns) RunEnv(ctx context.Context, env []string, args ...string) Result {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, DefaultTimeout)
		defer cancel()
	}
	cmd := exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", n.Name}, args...)...)
	cmd.Env = append(os.Environ(), env...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	// A daemon forked by the command may inherit our pipes; do not wait
	// for it to close them.
	cmd.WaitDelay = 2 * time.Second
	err := cmd.Run()
	r := Result{Args: args, Stdout: out.String(), Stderr: errb.String(), ExitCode: -1, Err: err}
	var ee *exec.ExitError
	switch {
	case err == nil:
		r.ExitCode = 0
	case errors.As(err, &ee):
		r.ExitCode = ee.ExitCode()
	case errors.Is(err, exec.ErrWaitDelay):
		r.ExitCode, r.Err = cmd.ProcessState.ExitCode(), nil
		if r.ExitCode != 0 {
			r.Err = fmt.Errorf("exit status %d", r.ExitCode)
		}
	}
	if r.Err != nil && ctx.Err() != nil {
		r.Err = fmt.Errorf("%w (%v)", r.Err, ctx.Err())
	}
	return r
}

// Run runs args in the namespace and waits for it.
func (n Netns) Run(ctx context.Context, args ...string) Result {
	return n.RunEnv(ctx, nil, args...)
}

// Proc is a command running in the background in a namespace.
type Proc struct {
	cmd  *exec.Cmd
	out  bytes.Buffer
	errb bytes.Buffer
	done chan struct{}
	err  error
}

// Start starts args in the background in the namespace. Stop it with
// Stop; the LAN's cleanup kills whatever still runs in its namespaces.
func (n Netns) Start(args ...string) (*Proc, error) {
	p := &Proc{done: make(chan struct{})}
	p.cmd = exec.Command("ip", append([]string{"netns", "exec", n.Name}, args...)...)
	p.cmd.Stdout, p.cmd.Stderr = &p.out, &p.errb
	if err := p.cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s in %s: %w", args[0], n.Name, err)
	}
	go func() {
		p.err = p.cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

// Stop sends SIGINT (which makes tcpdump and iperf3 flush and exit),
// waits up to 5 s, then kills, and returns what the command wrote.
func (p *Proc) Stop() Result {
	_ = p.cmd.Process.Signal(syscall.SIGINT)
	select {
	case <-p.done:
	case <-time.After(5 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
	return p.result()
}

// Wait waits for the command to exit on its own (or ctx to end, then
// stops it).
func (p *Proc) Wait(ctx context.Context) Result {
	select {
	case <-p.done:
		return p.result()
	case <-ctx.Done():
		return p.Stop()
	}
}

func (p *Proc) result() Result {
	r := Result{Args: p.cmd.Args[3:], Stdout: p.out.String(), Stderr: p.errb.String(), Err: p.err, ExitCode: -1}
	if p.cmd.ProcessState != nil {
		r.ExitCode = p.cmd.ProcessState.ExitCode()
	}
	return r
}

// Do runs fn on an OS thread that has entered the namespace, so that
// sockets fn creates belong to it (they keep working from any goroutine
// afterwards). fn must not start goroutines that need the namespace. The
// thread is discarded afterwards rather than switched back.
func (n Netns) Do(fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		// No UnlockOSThread: the runtime ends a locked thread when its
		// goroutine exits, so no other goroutine ever runs in n.
		runtime.LockOSThread()
		h, err := netns.GetFromName(n.Name)
		if err != nil {
			errc <- fmt.Errorf("open netns %s: %w", n.Name, err)
			return
		}
		defer h.Close()
		if err := netns.Set(h); err != nil {
			errc <- fmt.Errorf("enter netns %s: %w", n.Name, err)
			return
		}
		errc <- fn()
	}()
	return <-errc
}

// SendRawIP sends pkt, a whole IPv4 packet with its header (as captured),
// from the namespace through a raw socket. Only a UDP checksum is
// recomputed: a capture on a veth holds checksum-offload placeholders,
// which the receiver would drop before the router saw the datagram.
func (n Netns) SendRawIP(pkt []byte) error {
	if len(pkt) < 20 || pkt[0]>>4 != 4 {
		return errors.New("send raw: not an IPv4 packet")
	}
	pkt = append([]byte(nil), pkt...)
	fixUDPChecksum(pkt)
	var dst [4]byte
	copy(dst[:], pkt[16:20])
	return n.Do(func() error {
		fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_RAW, syscall.IPPROTO_RAW)
		if err != nil {
			return fmt.Errorf("raw socket: %w", err)
		}
		defer syscall.Close(fd)
		if err := syscall.Sendto(fd, pkt, 0, &syscall.SockaddrInet4{Addr: dst}); err != nil {
			return fmt.Errorf("raw send: %w", err)
		}
		return nil
	})
}

func netnsPIDs(name string) []int {
	out, err := exec.Command("ip", "netns", "pids", name).Output()
	if err != nil {
		return nil
	}
	var pids []int
	for _, f := range strings.Fields(string(out)) {
		var pid int
		if _, err := fmt.Sscan(f, &pid); err == nil && pid > 1 && pid != os.Getpid() {
			pids = append(pids, pid)
		}
	}
	return pids
}

// killNetns SIGKILLs every process left in the namespace (all started by
// the test: nobody else uses namespaces named by the harness) and waits up
// to 5 s for them to go.
func killNetns(name string) {
	pids := netnsPIDs(name)
	for _, pid := range pids {
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
	deadline := time.Now().Add(5 * time.Second)
	for _, pid := range pids {
		for time.Now().Before(deadline) && !processGone(pid) {
			time.Sleep(20 * time.Millisecond)
		}
	}
}

// processGone reports whether pid has exited (a zombie that its parent,
// perhaps a PID 1 that never reaps, has not collected counts as gone).
func processGone(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return true
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 || i+2 >= len(s) {
		return false
	}
	return s[i+2] == 'Z' || s[i+2] == 'X'
}

// fixUDPChecksum recomputes the UDP checksum of an unfragmented IPv4 UDP
// packet in place.
func fixUDPChecksum(ip []byte) {
	ihl := int(ip[0]&0x0f) * 4
	if ip[9] != 17 || len(ip) < ihl+8 {
		return
	}
	udp := ip[ihl:]
	udp[6], udp[7] = 0, 0
	var sum uint32
	add := func(b []byte) {
		for i := 0; i+1 < len(b); i += 2 {
			sum += uint32(b[i])<<8 | uint32(b[i+1])
		}
		if len(b)%2 == 1 {
			sum += uint32(b[len(b)-1]) << 8
		}
	}
	add(ip[12:20]) // source and destination addresses
	sum += 17 + uint32(len(udp))
	add(udp)
	for sum>>16 != 0 {
		sum = sum&0xffff + sum>>16
	}
	cs := ^uint16(sum)
	if cs == 0 {
		cs = 0xffff
	}
	udp[6], udp[7] = byte(cs>>8), byte(cs)
}
