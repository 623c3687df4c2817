// Command weavetest is the program in the end-to-end tests' Docker image
// (built FROM scratch by harness.DockerImage): a small TCP "db", an HTTP
// "web" front end that calls it, a sleeper, a one-shot probe and a helper
// that waits for weave's interface. Every subcommand exits promptly on
// SIGTERM or SIGINT, which matters as it runs as the container's pid 1.
//
//	weavetest db [-listen :7000]
//	weavetest web [-listen :80] [-db HOST:PORT]
//	weavetest sleep
//	weavetest probe HOST:PORT
//	weavetest wait-iface [-name ethwe] [-timeout 30s] -- CMD ARGS...
package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"
)

// dialTimeout leaves room for TCP's own SYN retransmissions (1 s, 3 s, 7 s):
// a probe is a first connection, not a speed test, and on a loaded machine
// the first SYN or ARP may wait behind other work.
const dialTimeout = 10 * time.Second

var commands = map[string]func(ctx context.Context, args []string) error{
	"db":         runDB,
	"web":        runWeb,
	"sleep":      runSleep,
	"probe":      runProbe,
	"wait-iface": runWaitIface,
}

func main() {
	if len(os.Args) < 2 || commands[os.Args[1]] == nil {
		fmt.Fprintln(os.Stderr, "usage: weavetest db|web|sleep|probe|wait-iface [flags]")
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	err := commands[os.Args[1]](ctx, os.Args[2:])
	stop()
	if err != nil {
		fmt.Fprintf(os.Stderr, "weavetest %s: %v\n", os.Args[1], err)
		os.Exit(1)
	}
}

// runDB serves TCP: each connection gets "db HOSTNAME IP\n", then its own
// bytes echoed back until it closes.
func runDB(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("db", flag.ContinueOnError)
	listen := fs.String("listen", ":7000", "address to listen on")
	if err := fs.Parse(args); err != nil {
		return err
	}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return err
	}
	var wg sync.WaitGroup
	defer wg.Wait()
	conns := make(map[net.Conn]struct{})
	var mu sync.Mutex
	go func() {
		<-ctx.Done()
		ln.Close()
		mu.Lock()
		for c := range conns {
			c.Close()
		}
		mu.Unlock()
	}()
	host, _ := os.Hostname()
	for {
		c, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			if errors.Is(err, net.ErrClosed) {
				return err
			}
			time.Sleep(10 * time.Millisecond) // e.g. out of file descriptors
			continue
		}
		mu.Lock()
		conns[c] = struct{}{}
		mu.Unlock()
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() {
				mu.Lock()
				delete(conns, c)
				mu.Unlock()
				c.Close()
			}()
			if _, err := fmt.Fprintf(c, "db %s %s\n", host, ownIP()); err != nil {
				return
			}
			io.Copy(c, c)
		}()
	}
}

// ownIP is the first IPv4 address of ethwe (weave's interface), else of
// the first non-loopback interface that is up, else its first address of
// any family; "-" when there is none. It is looked up per call, as ethwe
// may appear after the program starts.
func ownIP() string {
	if ifi, err := net.InterfaceByName("ethwe"); err == nil {
		if ip := firstIP(ifi); ip != "" {
			return ip
		}
	}
	ifis, _ := net.Interfaces()
	for _, ifi := range ifis {
		if ifi.Flags&net.FlagLoopback != 0 || ifi.Flags&net.FlagUp == 0 {
			continue
		}
		if ip := firstIP(&ifi); ip != "" {
			return ip
		}
	}
	return "-"
}

func firstIP(ifi *net.Interface) string {
	addrs, err := ifi.Addrs()
	if err != nil {
		return ""
	}
	var other string
	for _, a := range addrs {
		ipn, ok := a.(*net.IPNet)
		if !ok {
			continue
		}
		if ip4 := ipn.IP.To4(); ip4 != nil {
			return ip4.String()
		}
		if other == "" && !ipn.IP.IsLinkLocalUnicast() {
			other = ipn.IP.String()
		}
	}
	return other
}

// runWeb serves HTTP: GET / answers "web HOSTNAME\n"; GET /db answers the
// db's first line, or 502 with the error.
func runWeb(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("web", flag.ContinueOnError)
	listen := fs.String("listen", ":80", "address to listen on")
	db := fs.String("db", "db:7000", "db address")
	if err := fs.Parse(args); err != nil {
		return err
	}
	host, _ := os.Hostname()
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "web %s\n", host)
	})
	mux.HandleFunc("GET /db", func(w http.ResponseWriter, r *http.Request) {
		line, err := firstLine(r.Context(), *db)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		fmt.Fprintln(w, line)
	})
	srv := &http.Server{Addr: *listen, Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	errc := make(chan error, 1)
	go func() { errc <- srv.ListenAndServe() }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	srv.Shutdown(sctx)
	srv.Close()
	<-errc
	return nil
}

// firstLine dials addr and returns the first line it sends, without the
// newline; dialing and reading each have dialTimeout.
func firstLine(ctx context.Context, addr string) (string, error) {
	d := net.Dialer{Timeout: dialTimeout}
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return "", err
	}
	defer c.Close()
	stop := context.AfterFunc(ctx, func() { c.Close() })
	defer stop()
	c.SetReadDeadline(time.Now().Add(dialTimeout))
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		if ctx.Err() != nil {
			return "", ctx.Err()
		}
		return "", fmt.Errorf("read %s: %w", addr, err)
	}
	return strings.TrimRight(line, "\r\n"), nil
}

// runSleep blocks until a signal.
func runSleep(ctx context.Context, args []string) error {
	if len(args) > 0 {
		return fmt.Errorf("takes no arguments")
	}
	<-ctx.Done()
	return nil
}

// runProbe prints the first line that HOST:PORT sends.
func runProbe(ctx context.Context, args []string) error {
	if len(args) != 1 {
		return fmt.Errorf("want one HOST:PORT, got %d arguments", len(args))
	}
	line, err := firstLine(ctx, args[0])
	if err != nil {
		return err
	}
	fmt.Println(line)
	return nil
}

// runWaitIface waits until the interface exists and is up, then execs the
// command in place of itself.
func runWaitIface(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("wait-iface", flag.ContinueOnError)
	name := fs.String("name", "ethwe", "interface to wait for")
	timeout := fs.Duration("timeout", 30*time.Second, "how long to wait")
	if err := fs.Parse(args); err != nil {
		return err
	}
	cmd := fs.Args()
	if len(cmd) == 0 {
		return fmt.Errorf("no command after the flags (wait-iface [flags] -- CMD ARGS...)")
	}
	bin, err := exec.LookPath(cmd[0])
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		if ifi, err := net.InterfaceByName(*name); err == nil && ifi.Flags&net.FlagUp != 0 {
			break
		}
		select {
		case <-tick.C:
		case <-ctx.Done():
			if errors.Is(ctx.Err(), context.DeadlineExceeded) {
				return fmt.Errorf("interface %s not up after %v", *name, *timeout)
			}
			return nil
		}
	}
	return syscall.Exec(bin, cmd, os.Environ())
}
