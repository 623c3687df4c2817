package daemon

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"sync"
	"time"

	"github.com/weavelab/weave/router/api"
)

// Control is what the API serves: the daemon's operations in the API's
// terms. The daemon implements it over the mesh, the data plane and the
// container network; tests use a fake. Methods are called concurrently.
type Control interface {
	Status(ctx context.Context) (api.Status, error)
	Report(ctx context.Context) (api.Report, error)
	Connect(ctx context.Context, peers []string, replace bool) error
	Forget(ctx context.Context, peers []string) error
	// AttachIface is attach with the container's interface named (empty:
	// ethwe), as the CNI plugin asks.
	AttachIface(ctx context.Context, container, ifName string, addrs []string, withoutDNS bool) ([]string, error)
	Detach(ctx context.Context, container string, addrs []string) error
	PS(ctx context.Context, containers []string) ([]api.Container, error)
	Expose(ctx context.Context, addrs []string) ([]string, error)
	Hide(ctx context.Context, addrs []string) error
	RmPeer(ctx context.Context, peers []string) ([]api.RmPeerResult, error)
	Leave(ctx context.Context) (api.LeaveResponse, error)
	// RemoveNetworks removes the Docker plugin's networks from Docker.
	RemoveNetworks(ctx context.Context) (api.RemoveNetworksResponse, error)
	DNSAdd(ctx context.Context, req api.DNSRequest) ([]api.DNSEntry, error)
	DNSRemove(ctx context.Context, req api.DNSRequest) ([]api.DNSEntry, error)
	DNSLookup(ctx context.Context, name string) ([]string, error)
}

// maxRequest bounds a request body.
const maxRequest = 1 << 20

// NewHandler returns the HTTP API over ctl. stop is called (once, after the
// response is written) when a client asks the daemon to stop.
func NewHandler(ctl Control, version string, stop func(), log *slog.Logger) http.Handler {
	h := &handler{ctl: ctl, version: version, log: log}
	var stopOnce sync.Once
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+api.PathVersion, func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, api.Version{Version: version, PID: os.Getpid()})
	})
	mux.HandleFunc("GET "+api.PathStatus, h.status)
	mux.HandleFunc("GET "+api.PathStatus+"/{section}", h.status)
	mux.HandleFunc("GET "+api.PathReport, h.report)
	mux.HandleFunc("POST "+api.PathConnect, h.connect)
	mux.HandleFunc("POST "+api.PathForget, h.forget)
	mux.HandleFunc("POST "+api.PathAttach, h.attach)
	mux.HandleFunc("POST "+api.PathDetach, h.detach)
	mux.HandleFunc("GET "+api.PathPS, h.ps)
	mux.HandleFunc("POST "+api.PathExpose, h.expose)
	mux.HandleFunc("POST "+api.PathHide, h.hide)
	mux.HandleFunc("POST "+api.PathRmPeer, h.rmpeer)
	mux.HandleFunc("POST "+api.PathDNSAdd, h.dnsChange)
	mux.HandleFunc("POST "+api.PathDNSRemove, h.dnsChange)
	mux.HandleFunc("GET "+api.PathDNSLookup, func(w http.ResponseWriter, r *http.Request) {
		ips, err := h.ctl.DNSLookup(r.Context(), r.URL.Query().Get("name"))
		h.done(w, r, api.AddrsResponse{Addrs: nonNilStrings(ips)}, err)
	})
	mux.HandleFunc("POST "+api.PathLeave, func(w http.ResponseWriter, r *http.Request) {
		resp, err := h.ctl.Leave(r.Context())
		h.done(w, r, resp, err)
	})
	mux.HandleFunc("POST "+api.PathRemoveNetworks, func(w http.ResponseWriter, r *http.Request) {
		resp, err := h.ctl.RemoveNetworks(r.Context())
		h.done(w, r, resp, err)
	})
	mux.HandleFunc("POST "+api.PathStop, func(w http.ResponseWriter, r *http.Request) {
		h.log.Info("stop requested over the API")
		writeJSON(w, http.StatusOK, struct{}{})
		if f, ok := w.(http.Flusher); ok {
			f.Flush()
		}
		stopOnce.Do(stop)
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, fmt.Errorf("no such API endpoint: %s %s", r.Method, r.URL.Path))
	})
	return mux
}

type handler struct {
	ctl     Control
	version string
	log     *slog.Logger
}

func (h *handler) status(w http.ResponseWriter, r *http.Request) {
	section := r.PathValue("section")
	if err := api.CheckSection(section); err != nil {
		writeError(w, http.StatusNotFound, err)
		return
	}
	st, err := h.ctl.Status(r.Context())
	if err != nil {
		h.fail(w, r, err)
		return
	}
	v, err := api.Section(st, section)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, v)
}

func (h *handler) report(w http.ResponseWriter, r *http.Request) {
	rep, err := h.ctl.Report(r.Context())
	if err != nil {
		h.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, rep)
}

func (h *handler) connect(w http.ResponseWriter, r *http.Request) {
	var req api.ConnectRequest
	if !h.decode(w, r, &req) {
		return
	}
	h.done(w, r, nil, h.ctl.Connect(r.Context(), req.Peers, req.Replace))
}

func (h *handler) forget(w http.ResponseWriter, r *http.Request) {
	var req api.ForgetRequest
	if !h.decode(w, r, &req) {
		return
	}
	h.done(w, r, nil, h.ctl.Forget(r.Context(), req.Peers))
}

func (h *handler) attach(w http.ResponseWriter, r *http.Request) {
	var req api.AttachRequest
	if !h.decode(w, r, &req) {
		return
	}
	addrs, err := h.ctl.AttachIface(r.Context(), req.Container, req.IfName, req.Addrs, req.WithoutDNS)
	h.done(w, r, api.AddrsResponse{Addrs: nonNilStrings(addrs)}, err)
}

func (h *handler) detach(w http.ResponseWriter, r *http.Request) {
	var req api.AttachRequest
	if !h.decode(w, r, &req) {
		return
	}
	h.done(w, r, nil, h.ctl.Detach(r.Context(), req.Container, req.Addrs))
}

func (h *handler) ps(w http.ResponseWriter, r *http.Request) {
	cs, err := h.ctl.PS(r.Context(), r.URL.Query()["container"])
	if cs == nil {
		cs = []api.Container{}
	}
	h.done(w, r, cs, err)
}

func (h *handler) expose(w http.ResponseWriter, r *http.Request) {
	var req api.AddrsRequest
	if !h.decode(w, r, &req) {
		return
	}
	addrs, err := h.ctl.Expose(r.Context(), req.Addrs)
	h.done(w, r, api.AddrsResponse{Addrs: nonNilStrings(addrs)}, err)
}

func (h *handler) dnsChange(w http.ResponseWriter, r *http.Request) {
	var req api.DNSRequest
	if !h.decode(w, r, &req) {
		return
	}
	var es []api.DNSEntry
	var err error
	if r.URL.Path == api.PathDNSAdd {
		es, err = h.ctl.DNSAdd(r.Context(), req)
	} else {
		es, err = h.ctl.DNSRemove(r.Context(), req)
	}
	if es == nil {
		es = []api.DNSEntry{}
	}
	h.done(w, r, api.DNSResponse{Entries: es}, err)
}

func (h *handler) rmpeer(w http.ResponseWriter, r *http.Request) {
	var req api.PeersRequest
	if !h.decode(w, r, &req) {
		return
	}
	removed, err := h.ctl.RmPeer(r.Context(), req.Peers)
	if removed == nil {
		removed = []api.RmPeerResult{}
	}
	h.done(w, r, api.RmPeerResponse{Removed: removed}, err)
}

func (h *handler) hide(w http.ResponseWriter, r *http.Request) {
	var req api.AddrsRequest
	if !h.decode(w, r, &req) {
		return
	}
	h.done(w, r, nil, h.ctl.Hide(r.Context(), req.Addrs))
}

// decode reads a JSON body into v; on failure it answers 400 and returns
// false.
func (h *handler) decode(w http.ResponseWriter, r *http.Request, v any) bool {
	dec := json.NewDecoder(io.LimitReader(r.Body, maxRequest))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil && !errors.Is(err, io.EOF) {
		writeError(w, http.StatusBadRequest, fmt.Errorf("bad request body: %w", err))
		return false
	}
	return true
}

// done answers with v (or {} when nil) or with err.
func (h *handler) done(w http.ResponseWriter, r *http.Request, v any, err error) {
	if err != nil {
		h.fail(w, r, err)
		return
	}
	if v == nil {
		v = struct{}{}
	}
	writeJSON(w, http.StatusOK, v)
}

// fail answers a failed operation. Errors from operations are the user's
// (bad input, unknown container, ...) unless the request itself was
// cancelled.
func (h *handler) fail(w http.ResponseWriter, r *http.Request, err error) {
	code := http.StatusBadRequest
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		code = http.StatusServiceUnavailable
	}
	h.log.Info("API request failed", "method", r.Method, "path", r.URL.Path, "err", err)
	writeError(w, code, err)
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		code = http.StatusInternalServerError
		b, _ = json.Marshal(api.Error{Message: "encode response: " + err.Error()})
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	w.Write(append(b, '\n'))
}

func writeError(w http.ResponseWriter, code int, err error) {
	writeJSON(w, code, api.Error{Message: oneLine(err.Error())})
}

// oneLine keeps an error message on one line, as the CLI prints it.
func oneLine(s string) string {
	b := []byte(s)
	for i, c := range b {
		if c == '\n' || c == '\r' {
			b[i] = ' '
		}
	}
	return string(b)
}

func nonNilStrings(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// serveHTTP serves h on ln until ctx ends, then shuts the server down,
// giving in-flight requests a moment. It returns when the server has
// stopped; a nil error is a clean shutdown.
func serveHTTP(ctx context.Context, ln net.Listener, h http.Handler, log *slog.Logger) error {
	srv := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 10 * time.Second,
		BaseContext:       func(net.Listener) context.Context { return ctx },
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		srv.Close()
	}
	if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
