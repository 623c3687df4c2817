package proxy

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"mime"
	"net"
	"net/http"
	"sync"
)

// serveStream passes a request that may take over the connection (attach,
// exec start, any Upgrade) to the Engine over a connection of its own. If
// the Engine switches protocols (101) or answers with a raw stream (old
// API versions hijack without Upgrade), the client's connection is taken
// over and bytes are copied both ways until the Engine's side ends; a
// half-close from the client (stdin done) is passed on as a half-close, so
// output that follows it still arrives. httputil.ReverseProxy would close
// both directions at the first EOF.
func (p *Proxy) serveStream(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	up, err := p.engine.dial(ctx)
	if err != nil {
		p.proxyError(w, r, err)
		return
	}
	// Close (cancelling ctx), the client going away before the Engine
	// answers, or the end of this handler cuts the stream.
	var closeOnce sync.Once
	var client net.Conn
	var clientMu sync.Mutex
	closeAll := func() {
		closeOnce.Do(func() {
			up.Close()
			clientMu.Lock()
			if client != nil {
				client.Close()
			}
			clientMu.Unlock()
		})
	}
	stop := context.AfterFunc(ctx, closeAll)
	defer func() {
		stop()
		closeAll()
	}()

	out := r.Clone(ctx)
	out.RequestURI = ""
	out.URL.Scheme = "http"
	out.URL.Host = engineHost
	if out.Host == "" {
		out.Host = engineHost
	}
	if out.Header.Get("User-Agent") == "" {
		// Request.Write would add Go's.
		out.Header["User-Agent"] = []string{""}
	}
	bw := bufio.NewWriter(up)
	if err := out.Write(bw); err != nil {
		p.proxyError(w, r, fmt.Errorf("sending %s %s: %w", r.Method, r.URL.Path, err))
		return
	}
	if err := bw.Flush(); err != nil {
		p.proxyError(w, r, fmt.Errorf("sending %s %s: %w", r.Method, r.URL.Path, err))
		return
	}
	br := bufio.NewReader(up)
	resp, err := http.ReadResponse(br, out)
	if err != nil {
		p.proxyError(w, r, fmt.Errorf("reading the answer to %s %s: %w", r.Method, r.URL.Path, err))
		return
	}
	if resp.StatusCode != http.StatusSwitchingProtocols && !isRawStream(resp) {
		// An ordinary answer (an error, or a detached exec start).
		defer resp.Body.Close()
		copyHeader(w.Header(), resp.Header)
		w.WriteHeader(resp.StatusCode)
		copyFlushing(w, resp.Body)
		return
	}

	conn, cbuf, err := http.NewResponseController(w).Hijack()
	if err != nil {
		p.log.Warn("cannot take over the client connection", "path", r.URL.Path, "err", err)
		writeError(w, http.StatusInternalServerError, "weave proxy: cannot take over the connection: "+err.Error())
		return
	}
	clientMu.Lock()
	client = conn
	clientMu.Unlock()
	// From now on the request's context is no guide: the server cancels it
	// when a read of the hijacked connection through its buffer sees EOF,
	// which is a half-close here. Only Close ends the stream early.
	if !stop() {
		return // cancelled already
	}
	stop = context.AfterFunc(p.ctx, closeAll)
	fmt.Fprintf(cbuf, "HTTP/%d.%d %s\r\n", resp.ProtoMajor, resp.ProtoMinor, resp.Status)
	resp.Header.Write(cbuf)
	cbuf.WriteString("\r\n")
	if err := cbuf.Flush(); err != nil {
		return
	}
	// What the client sent after the request, then the connection itself.
	fromClient := io.MultiReader(bytes.NewReader(drain(cbuf.Reader)), conn)

	// Client to Engine, in the background: at the client's EOF, half-close
	// towards the Engine and let its output go on.
	done := make(chan struct{})
	go func() {
		defer close(done)
		if _, err := io.Copy(up, fromClient); err == nil {
			closeWrite(up)
		}
	}()
	// Engine to client: when the Engine is done, so is the stream (the
	// Engine closes its side once the container's output ends).
	if _, err := io.Copy(conn, br); err == nil {
		closeWrite(conn)
	}
	closeAll()
	<-done
}

// drain returns the bytes buffered in br.
func drain(br *bufio.Reader) []byte {
	b, _ := br.Peek(br.Buffered())
	return bytes.Clone(b)
}

// isRawStream reports whether resp is a stream that an old API version
// hijacked without Upgrade.
func isRawStream(resp *http.Response) bool {
	mt, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type"))
	return resp.StatusCode == http.StatusOK &&
		(mt == "application/vnd.docker.raw-stream" || mt == "application/vnd.docker.multiplexed-stream")
}

func closeWrite(c net.Conn) {
	if cw, ok := c.(interface{ CloseWrite() error }); ok {
		cw.CloseWrite()
	}
}

func copyHeader(dst, src http.Header) {
	for k, vs := range src {
		dst[k] = append(dst[k][:0:0], vs...)
	}
}

// copyFlushing copies body to w, flushing after each read so that a
// progress stream is not held back.
func copyFlushing(w http.ResponseWriter, body io.Reader) {
	rc := http.NewResponseController(w)
	buf := make([]byte, 32<<10)
	for {
		n, err := body.Read(buf)
		if n > 0 {
			if _, werr := w.Write(buf[:n]); werr != nil {
				return
			}
			rc.Flush()
		}
		if err != nil {
			return
		}
	}
}
