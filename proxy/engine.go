package proxy

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"time"
)

// engineHost is the host name of requests to the Engine; the transport
// dials the socket whatever it says.
const engineHost = "docker"

// engine is the proxy's own client of the Engine: the transport that the
// reverse proxy shares, and the few calls the proxy makes itself.
type engine struct {
	path      string
	dialer    net.Dialer
	transport *http.Transport
}

func newEngine(path string) *engine {
	e := &engine{path: path}
	e.transport = &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return e.dial(ctx)
		},
		// Forward the client's Accept-Encoding and the Engine's encoding
		// unchanged.
		DisableCompression:  true,
		MaxIdleConnsPerHost: 16,
		IdleConnTimeout:     90 * time.Second,
	}
	return e
}

func (e *engine) dial(ctx context.Context) (net.Conn, error) {
	return e.dialer.DialContext(ctx, "unix", e.path)
}

// apiError is an Engine error answer (also the proxy's own).
type apiError struct {
	Status  int
	Message string
}

func (e *apiError) Error() string { return e.Message }

// get GETs path (with the API version prefix) and decodes a 200 answer
// into v; other answers are an *apiError carrying the Engine's status and
// message.
func (e *engine) get(ctx context.Context, path string, v any) error {
	return e.do(ctx, http.MethodGet, path, v)
}

func (e *engine) do(ctx context.Context, method, path string, v any) error {
	req, err := http.NewRequestWithContext(ctx, method, "http://"+engineHost+path, nil)
	if err != nil {
		return err
	}
	resp, err := e.transport.RoundTrip(req)
	if err != nil {
		return fmt.Errorf("docker engine at %s: %w", e.path, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 32<<20))
	if err != nil {
		return fmt.Errorf("docker engine at %s: %s %s: %w", e.path, method, path, err)
	}
	if resp.StatusCode/100 != 2 {
		var m struct{ Message string }
		if json.Unmarshal(body, &m) != nil || m.Message == "" {
			m.Message = string(bytes.TrimSpace(body))
		}
		return &apiError{Status: resp.StatusCode, Message: m.Message}
	}
	if v == nil {
		return nil
	}
	if err := json.Unmarshal(body, v); err != nil {
		return fmt.Errorf("docker engine: %s %s: %w", method, path, err)
	}
	return nil
}

// imageConfig is what create needs of an image.
type imageConfig struct {
	Entrypoint []string
	Cmd        []string
	Env        []string
}

func (e *engine) inspectImage(ctx context.Context, prefix, image string) (imageConfig, error) {
	var img struct{ Config *imageConfig }
	if err := e.get(ctx, prefix+"/images/"+image+"/json", &img); err != nil {
		return imageConfig{}, err
	}
	if img.Config == nil {
		return imageConfig{}, nil
	}
	return *img.Config, nil
}

// containerInfo is what start needs of a container.
type containerInfo struct {
	ID     string `json:"Id"`
	Name   string
	Config struct {
		Env    []string
		Labels map[string]string
	}
}

func (e *engine) inspectContainer(ctx context.Context, prefix, id string) (containerInfo, error) {
	var c containerInfo
	err := e.get(ctx, prefix+"/containers/"+url.PathEscape(id)+"/json", &c)
	return c, err
}

func (e *engine) kill(ctx context.Context, prefix, id string) error {
	return e.do(ctx, http.MethodPost, prefix+"/containers/"+url.PathEscape(id)+"/kill", nil)
}

// writeError answers an error the way the Engine does, so that the docker
// CLI prints the message.
func writeError(w http.ResponseWriter, status int, msg string) {
	body, _ := json.Marshal(struct {
		Message string `json:"message"`
	}{msg})
	body = append(body, '\n')
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(status)
	w.Write(body)
}

// replaceWithError turns resp into an error answer (its body must have
// been closed).
func replaceWithError(resp *http.Response, status int, msg string) {
	body, _ := json.Marshal(struct {
		Message string `json:"message"`
	}{msg})
	body = append(body, '\n')
	resp.StatusCode = status
	resp.Status = fmt.Sprintf("%d %s", status, http.StatusText(status))
	resp.Header = http.Header{"Content-Type": {"application/json"}, "Content-Length": {strconv.Itoa(len(body))}}
	resp.Body = io.NopCloser(bytes.NewReader(body))
	resp.ContentLength = int64(len(body))
	resp.TransferEncoding = nil
	resp.Trailer = nil
}
