// Package proxy owns the Docker Engine API proxy: the router serves the
// Engine's API on a Unix socket of its own ($WEAVE_RUN_DIR/docker.sock) so
// that a plain `docker run` with DOCKER_HOST pointing at it joins the weave
// network.
//
// Every request goes to the real Engine unchanged, bodies and responses
// streamed (logs -f, events, build, pull progress) and hijacked
// connections (attach, exec) passed through byte for byte with half-close,
// whatever the API version. Two requests are intercepted:
//
//   - POST /containers/create of a container that is to join (see
//     rewriteCreate for the rules): its entrypoint becomes the wait binary
//     bind-mounted at /.weave/weave followed by the user's effective
//     entrypoint and command, so the user's process starts only once ethwe
//     is up with an address; it gets a hostname in the weave domain and
//     weaveDNS as its resolver, and the label ManagedLabel.
//   - POST /containers/{id}/start: once the Engine has started a container
//     with ManagedLabel, the Attacher attaches it with the addresses of
//     WEAVE_CIDR; if that fails the container is killed and the client gets
//     the error.
//
// Restarts (docker restart, restart policies) are the router's business
// (its Docker event handler re-attaches them); the proxy only forwards them.
package proxy

import (
	"context"
	"debug/elf"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"time"
)

// ManagedLabel marks a container whose create request the proxy rewrote;
// its start attaches it.
const ManagedLabel = "works.weave.proxy.managed"

// WaitPath is where the wait binary appears inside containers.
const WaitPath = "/.weave/weave"

// DefaultUpstream is the Engine's socket when DOCKER_HOST is not set.
const DefaultUpstream = "unix:///var/run/docker.sock"

// AttachTimeout bounds one Attacher.Attach call. An allocation may have to
// wait for a peer to hand over space, so it is generous.
const AttachTimeout = 2 * time.Minute

// Attacher attaches containers to the network. It must be safe for
// concurrent use.
type Attacher interface {
	// Attach attaches the started container id (full ID) to the network
	// with addrs (ADDR strings as weave attach takes them: CIDR, ip:CIDR,
	// net:CIDR, net:default; empty = net:default), registers its DNS name
	// and returns its addresses. Called after the Engine started it.
	Attach(ctx context.Context, id string, addrs []string) ([]string, error)
}

// Config configures a Proxy. Socket, WaitBinary and Attacher are required.
type Config struct {
	// Socket is the path of the proxy's Unix socket. It is created with
	// the Engine socket's mode and group, never wider than 0660.
	Socket string
	// Upstream is the real Engine: unix:///path (DefaultUpstream when
	// empty), typically from DOCKER_HOST. Other schemes are refused: the
	// proxy would have to speak TLS to a TCP Engine and does not.
	Upstream string
	// WaitBinary is the host path of a static binary (the weave binary)
	// that is bind-mounted read-only into containers at WaitPath and runs
	// as `WaitPath wait-iface --iface ethwe -- ENTRYPOINT... CMD...`.
	WaitBinary string
	// Domain is the weaveDNS domain, "weave.local." when empty.
	Domain string
	// DNSAddr is weaveDNS's address for containers (169.254.53.53); when
	// it is not valid, DNS options are left alone.
	DNSAddr  netip.Addr
	Attacher Attacher
	Logger   *slog.Logger
}

// DefaultConfig returns the defaults: the Engine's default socket and the
// weave.local. domain.
func DefaultConfig() Config {
	return Config{Upstream: DefaultUpstream, Domain: "weave.local."}
}

// Proxy serves the Engine API on Config.Socket. Listen (optional), Serve
// and Close may be called from any goroutine.
type Proxy struct {
	cfg      Config
	log      *slog.Logger
	upstream string // path of the Engine's socket
	rw       rewriter
	engine   *engine
	rp       *httputil.ReverseProxy
	srv      *http.Server

	// ctx is the base context of every request and attach; Close cancels it.
	ctx    context.Context
	cancel context.CancelFunc

	mu       sync.Mutex // guards the fields below
	ln       *socket
	closed   bool
	handlers sync.WaitGroup // requests in flight (hijacked ones included)

	closeOnce sync.Once
	closeErr  error
}

// New checks cfg and returns a Proxy; it does not listen yet.
func New(cfg Config) (*Proxy, error) {
	def := DefaultConfig()
	if cfg.Upstream == "" {
		cfg.Upstream = def.Upstream
	}
	if cfg.Domain == "" {
		cfg.Domain = def.Domain
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Socket == "" {
		return nil, errors.New("proxy: no socket path given")
	}
	if cfg.Attacher == nil {
		return nil, errors.New("proxy: no attacher given")
	}
	if !filepath.IsAbs(cfg.WaitBinary) {
		return nil, fmt.Errorf("proxy: wait binary %q: not an absolute path", cfg.WaitBinary)
	}
	if st, err := os.Stat(cfg.WaitBinary); err != nil {
		return nil, fmt.Errorf("proxy: wait binary: %w", err)
	} else if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("proxy: wait binary %s: not a regular file", cfg.WaitBinary)
	}
	if strings.ContainsAny(cfg.WaitBinary, ":,") {
		// A bind is SRC:DST:OPTS; the Engine cannot take a source with ':'.
		return nil, fmt.Errorf("proxy: wait binary %q: a path with ':' or ',' cannot be bind-mounted", cfg.WaitBinary)
	}
	if static, err := isStaticELF(cfg.WaitBinary); err == nil && !static {
		cfg.Logger.Warn("the wait binary is dynamically linked: containers without its libraries (FROM scratch) will not start; build weave with CGO_ENABLED=0", "path", cfg.WaitBinary)
	}
	up, err := ParseUpstream(cfg.Upstream)
	if err != nil {
		return nil, err
	}
	if same, _ := samePath(up, cfg.Socket); same {
		return nil, fmt.Errorf("proxy: upstream %s is the proxy's own socket (is DOCKER_HOST set from `weave env`?)", cfg.Upstream)
	}
	p := &Proxy{
		cfg:      cfg,
		log:      cfg.Logger,
		upstream: up,
		rw: rewriter{
			waitBinary: cfg.WaitBinary,
			domain:     strings.TrimSuffix(cfg.Domain, "."),
			dns:        cfg.DNSAddr,
		},
		engine: newEngine(up),
	}
	p.ctx, p.cancel = context.WithCancel(context.Background())
	p.rp = &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.Out.URL.Scheme = "http"
			pr.Out.URL.Host = engineHost
			pr.Out.Host = pr.In.Host
		},
		Transport:      p.engine.transport,
		FlushInterval:  -1,
		ModifyResponse: p.modifyResponse,
		ErrorHandler:   p.proxyError,
		ErrorLog:       slog.NewLogLogger(p.log.Handler(), slog.LevelDebug),
	}
	p.srv = &http.Server{
		Handler:           http.HandlerFunc(p.serveHTTP),
		ReadHeaderTimeout: 30 * time.Second,
		BaseContext:       func(net.Listener) context.Context { return p.ctx },
		ErrorLog:          slog.NewLogLogger(p.log.Handler(), slog.LevelDebug),
	}
	return p, nil
}

// ParseUpstream returns the socket path of a DOCKER_HOST value; only
// unix:// is supported.
func ParseUpstream(s string) (string, error) {
	path, ok := strings.CutPrefix(s, "unix://")
	if !ok {
		scheme, _, _ := strings.Cut(s, "://")
		return "", fmt.Errorf("proxy: docker host %q: only unix:// is supported (a %s:// Engine would need TLS, which the proxy does not speak)", s, scheme)
	}
	if !filepath.IsAbs(path) {
		return "", fmt.Errorf("proxy: docker host %q: not an absolute socket path", s)
	}
	return filepath.Clean(path), nil
}

// isStaticELF reports whether path is an ELF executable without a program
// interpreter (a static one); the wait binary must run in any image.
func isStaticELF(path string) (bool, error) {
	f, err := elf.Open(path)
	if err != nil {
		return false, err
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return false, nil
		}
	}
	return true, nil
}

func samePath(a, b string) (bool, error) {
	if filepath.Clean(a) == filepath.Clean(b) {
		return true, nil
	}
	sa, err := os.Stat(a)
	if err != nil {
		return false, err
	}
	sb, err := os.Stat(b)
	if err != nil {
		return false, err
	}
	return os.SameFile(sa, sb), nil
}

// Listen creates the socket. Serve calls it when it has not been called;
// call it first to know that the socket exists when Serve starts.
func (p *Proxy) Listen() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return fmt.Errorf("proxy: %w", net.ErrClosed)
	}
	if p.ln != nil {
		return nil
	}
	ln, err := listenLike(p.cfg.Socket, p.upstream, p.log)
	if err != nil {
		return fmt.Errorf("proxy: %w", err)
	}
	p.ln = ln
	p.log.Info("docker api proxy listening", "addr", p.cfg.Socket, "upstream", p.upstream)
	return nil
}

// Serve listens (unless Listen did) and serves until ctx ends or Close is
// called; then it closes the proxy, waits for every request in flight
// (hijacked streams included) and returns nil. After Close it returns nil
// at once.
func (p *Proxy) Serve(ctx context.Context) error {
	if err := p.Listen(); errors.Is(err, net.ErrClosed) {
		return nil
	} else if err != nil {
		return err
	}
	stop := context.AfterFunc(ctx, func() { p.Close() })
	defer stop()
	err := p.srv.Serve(p.ln)
	p.Close()
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return fmt.Errorf("proxy: %w", err)
}

// Close stops the proxy: it removes the socket, cuts every connection
// (streams and attaches in flight are cancelled) and returns once all
// request handlers have returned. It may be called more than once.
func (p *Proxy) Close() error {
	p.closeOnce.Do(func() {
		p.mu.Lock()
		p.closed = true
		ln := p.ln
		p.mu.Unlock()
		p.cancel()
		err := p.srv.Close()
		if ln != nil {
			if cerr := ln.Close(); err == nil {
				err = cerr
			}
		}
		p.handlers.Wait()
		p.engine.transport.CloseIdleConnections()
		p.closeErr = err
	})
	return p.closeErr
}

// Paths of the requests the proxy handles itself; the optional prefix is
// the API version.
var (
	createPath = regexp.MustCompile(`^(/v[0-9][0-9.]*)?/containers/create/?$`)
	startPath  = regexp.MustCompile(`^(/v[0-9][0-9.]*)?/containers/([^/]+)/start/?$`)
	// Endpoints that hijack the connection, also when an old client asks
	// without an Upgrade header.
	streamPath = regexp.MustCompile(`^(/v[0-9][0-9.]*)?/(containers/[^/]+/attach|exec/[^/]+/start)/?$`)
)

type startKey struct{}

// startReq is what modifyResponse needs of a start request.
type startReq struct {
	prefix, id string
}

func (p *Proxy) serveHTTP(w http.ResponseWriter, r *http.Request) {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		writeError(w, http.StatusServiceUnavailable, "weave proxy: shutting down")
		return
	}
	p.handlers.Add(1)
	p.mu.Unlock()
	defer p.handlers.Done()

	path := r.URL.Path
	switch {
	case r.Method == http.MethodPost && createPath.MatchString(path):
		p.serveCreate(w, r, createPath.FindStringSubmatch(path)[1])
	case r.Method == http.MethodPost && startPath.MatchString(path):
		m := startPath.FindStringSubmatch(path)
		ctx := context.WithValue(r.Context(), startKey{}, startReq{prefix: m[1], id: m[2]})
		p.rp.ServeHTTP(w, r.WithContext(ctx))
	case r.Header.Get("Upgrade") != "" || r.Method == http.MethodPost && streamPath.MatchString(path):
		p.serveStream(w, r)
	default:
		p.rp.ServeHTTP(w, r)
	}
}

// modifyResponse attaches a managed container that the Engine has just
// started; when that fails it kills the container and answers the error
// instead of the Engine's success.
func (p *Proxy) modifyResponse(resp *http.Response) error {
	sr, ok := resp.Request.Context().Value(startKey{}).(startReq)
	if !ok {
		return nil
	}
	var running bool
	switch {
	case resp.StatusCode/100 == 2:
	case resp.StatusCode == http.StatusNotModified:
		// Running already: normally attached when it started (the attach
		// then fails harmlessly), but it may have been started on the
		// Engine's own socket and be waiting for ethwe.
		running = true
	default:
		return nil
	}
	err := p.afterStart(sr, running)
	if err == nil {
		return nil
	}
	io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<16))
	resp.Body.Close()
	replaceWithError(resp, http.StatusInternalServerError, err.Error())
	return nil
}

func (p *Proxy) proxyError(w http.ResponseWriter, r *http.Request, err error) {
	if errors.Is(err, context.Canceled) {
		// The client went away (docker logs -f interrupted) or we are
		// closing: nobody to answer.
		p.log.Debug("request cancelled", "method", r.Method, "path", r.URL.Path, "err", err)
		w.WriteHeader(http.StatusBadGateway)
		return
	}
	p.log.Warn("docker engine request failed", "method", r.Method, "path", r.URL.Path, "err", err)
	writeError(w, http.StatusBadGateway, fmt.Sprintf("weave proxy: docker engine at %s: %v", p.upstream, err))
}
