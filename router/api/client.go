package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"syscall"
)

// ErrNotRunning is returned (wrapped) by every Client call when no daemon
// answers on the socket.
var ErrNotRunning = errors.New("weave is not running")

// RemoteError is an error the daemon returned; its text is the daemon's
// one-line message.
type RemoteError struct {
	StatusCode int
	Message    string
}

func (e *RemoteError) Error() string { return e.Message }

// maxResponse bounds what the client reads from the daemon.
const maxResponse = 64 << 20

// Client talks to the daemon over its Unix socket. Safe for concurrent use.
type Client struct {
	socket string
	hc     *http.Client
}

// NewClient returns a client for the daemon listening on socket. It does
// not connect until the first call.
func NewClient(socket string) *Client {
	tr := &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", socket)
		},
		DisableKeepAlives: true,
	}
	return &Client{socket: socket, hc: &http.Client{Transport: tr}}
}

// Socket returns the socket path the client talks to.
func (c *Client) Socket() string { return c.socket }

// Version asks the daemon for its version and pid; it is the cheapest
// "is it running?" probe.
func (c *Client) Version(ctx context.Context) (Version, error) {
	var v Version
	err := c.do(ctx, http.MethodGet, PathVersion, nil, &v)
	return v, err
}

// Status returns the daemon's status.
func (c *Client) Status(ctx context.Context) (Status, error) {
	var s Status
	err := c.do(ctx, http.MethodGet, PathStatus, nil, &s)
	return s, err
}

// Report returns everything the daemon knows as one document.
func (c *Client) Report(ctx context.Context) (json.RawMessage, error) {
	var r json.RawMessage
	err := c.do(ctx, http.MethodGet, PathReport, nil, &r)
	return r, err
}

// Connect adds peers to the targets (replacing them all with replace).
func (c *Client) Connect(ctx context.Context, peers []string, replace bool) error {
	return c.do(ctx, http.MethodPost, PathConnect, ConnectRequest{Peers: peers, Replace: replace}, nil)
}

// Forget removes peers from the targets.
func (c *Client) Forget(ctx context.Context, peers []string) error {
	return c.do(ctx, http.MethodPost, PathForget, ForgetRequest{Peers: peers}, nil)
}

// Attach attaches container with addrs and returns the addresses it has.
func (c *Client) Attach(ctx context.Context, container string, addrs []string) ([]string, error) {
	var r AddrsResponse
	err := c.do(ctx, http.MethodPost, PathAttach, AttachRequest{Container: container, Addrs: addrs}, &r)
	return r.Addrs, err
}

// AttachOpts is Attach with the DNS option.
func (c *Client) AttachOpts(ctx context.Context, container string, addrs []string, withoutDNS bool) ([]string, error) {
	var resp AddrsResponse
	err := c.do(ctx, http.MethodPost, PathAttach, AttachRequest{Container: container, Addrs: addrs, WithoutDNS: withoutDNS}, &resp)
	return resp.Addrs, err
}

// AttachRequest is the general form of Attach: any field of AttachRequest.
func (c *Client) AttachRequest(ctx context.Context, req AttachRequest) ([]string, error) {
	var resp AddrsResponse
	err := c.do(ctx, http.MethodPost, PathAttach, req, &resp)
	return resp.Addrs, err
}

// DNSAdd registers names (weave dns-add).
func (c *Client) DNSAdd(ctx context.Context, req DNSRequest) ([]DNSEntry, error) {
	var resp DNSResponse
	err := c.do(ctx, http.MethodPost, PathDNSAdd, req, &resp)
	return resp.Entries, err
}

// DNSRemove removes names (weave dns-remove).
func (c *Client) DNSRemove(ctx context.Context, req DNSRequest) ([]DNSEntry, error) {
	var resp DNSResponse
	err := c.do(ctx, http.MethodPost, PathDNSRemove, req, &resp)
	return resp.Entries, err
}

// DNSLookup resolves a name in weaveDNS's table (weave dns-lookup).
func (c *Client) DNSLookup(ctx context.Context, name string) ([]string, error) {
	var resp AddrsResponse
	err := c.do(ctx, http.MethodGet, PathDNSLookup+"?name="+url.QueryEscape(name), nil, &resp)
	return resp.Addrs, err
}

// RmPeer hands the space of dead peers to this router.
func (c *Client) RmPeer(ctx context.Context, peers []string) ([]RmPeerResult, error) {
	var resp RmPeerResponse
	err := c.do(ctx, http.MethodPost, PathRmPeer, PeersRequest{Peers: peers}, &resp)
	return resp.Removed, err
}

// Leave hands this router's address space to a reachable peer (before a
// reset).
func (c *Client) Leave(ctx context.Context) (LeaveResponse, error) {
	var resp LeaveResponse
	err := c.do(ctx, http.MethodPost, PathLeave, nil, &resp)
	return resp, err
}

// RemoveNetworks removes the Docker plugin's networks from Docker (before
// a reset).
func (c *Client) RemoveNetworks(ctx context.Context) (RemoveNetworksResponse, error) {
	var resp RemoveNetworksResponse
	err := c.do(ctx, http.MethodPost, PathRemoveNetworks, nil, &resp)
	return resp, err
}

// Detach removes addrs (all when empty) from container.
func (c *Client) Detach(ctx context.Context, container string, addrs []string) error {
	return c.do(ctx, http.MethodPost, PathDetach, AttachRequest{Container: container, Addrs: addrs}, nil)
}

// PS lists attached containers (only those named, when any are).
func (c *Client) PS(ctx context.Context, containers []string) ([]Container, error) {
	q := url.Values{}
	for _, ct := range containers {
		q.Add("container", ct)
	}
	path := PathPS
	if len(q) > 0 {
		path += "?" + q.Encode()
	}
	var r []Container
	err := c.do(ctx, http.MethodGet, path, nil, &r)
	return r, err
}

// Expose gives the host addrs on the weave network and returns them.
func (c *Client) Expose(ctx context.Context, addrs []string) ([]string, error) {
	var r AddrsResponse
	err := c.do(ctx, http.MethodPost, PathExpose, AddrsRequest{Addrs: addrs}, &r)
	return r.Addrs, err
}

// Hide removes addrs (all when empty) from the host.
func (c *Client) Hide(ctx context.Context, addrs []string) error {
	return c.do(ctx, http.MethodPost, PathHide, AddrsRequest{Addrs: addrs}, nil)
}

// Stop asks the daemon to shut down. It returns once the daemon has
// accepted the request, not when it has exited.
func (c *Client) Stop(ctx context.Context) error {
	return c.do(ctx, http.MethodPost, PathStop, nil, nil)
}

func (c *Client) do(ctx context.Context, method, path string, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return fmt.Errorf("encode request: %w", err)
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, "http://weave"+path, body)
	if err != nil {
		return fmt.Errorf("build request: %w", err)
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return c.dialError(err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxResponse))
	if err != nil {
		return fmt.Errorf("read response from weave: %w", err)
	}
	if resp.StatusCode/100 != 2 {
		var e Error
		if json.Unmarshal(data, &e) == nil && e.Message != "" {
			return &RemoteError{StatusCode: resp.StatusCode, Message: e.Message}
		}
		msg := strings.TrimSpace(string(data))
		if msg == "" {
			msg = resp.Status
		}
		return &RemoteError{StatusCode: resp.StatusCode, Message: "weave: " + firstLine(msg)}
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(data, out); err != nil {
		return fmt.Errorf("decode response from weave: %w", err)
	}
	return nil
}

// dialError turns a failure to reach the socket into ErrNotRunning with a
// hint, leaving other transport errors as they are.
func (c *Client) dialError(err error) error {
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return fmt.Errorf("%w (no socket at %s): start it with 'weave launch'", ErrNotRunning, c.socket)
	case errors.Is(err, syscall.ECONNREFUSED):
		return fmt.Errorf("%w (stale socket at %s): start it with 'weave launch'", ErrNotRunning, c.socket)
	case errors.Is(err, fs.ErrPermission):
		return fmt.Errorf("cannot reach weave at %s: %w (run as root)", c.socket, os.ErrPermission)
	}
	return fmt.Errorf("talk to weave at %s: %w", c.socket, err)
}

func firstLine(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i]
	}
	return s
}
