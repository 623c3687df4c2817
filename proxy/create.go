package proxy

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"github.com/weavelab/weave/router"
)

// EnvCIDR is the environment variable that gives a container's addresses:
// space-separated ADDRs, empty or absent for the default allocation,
// "none" to leave the container alone.
const EnvCIDR = "WEAVE_CIDR"

// maxCreateBody bounds the create request body the proxy reads.
const maxCreateBody = 8 << 20

// waitEntrypoint is what the proxy puts before a managed container's own
// entrypoint and command.
var waitEntrypoint = []string{WaitPath, "wait-iface", "--iface", "ethwe", "--"}

// AddrsFromEnv reads WEAVE_CIDR from a container's environment (KEY=VALUE
// strings; the last one wins, as in Docker). skip is true for
// WEAVE_CIDR=none; addrs is empty for the default allocation. A malformed
// ADDR is an error that says which.
func AddrsFromEnv(env []string) (addrs []string, skip bool, err error) {
	v, ok := envValue(env, EnvCIDR)
	if !ok {
		return nil, false, nil
	}
	return parseCIDRs(v)
}

func envValue(env []string, key string) (string, bool) {
	for i := len(env) - 1; i >= 0; i-- {
		if v, ok := strings.CutPrefix(env[i], key+"="); ok {
			return v, true
		}
	}
	return "", false
}

func parseCIDRs(v string) (addrs []string, skip bool, err error) {
	addrs = strings.Fields(v)
	if len(addrs) == 1 && addrs[0] == "none" {
		return nil, true, nil
	}
	if _, err := router.ParseAddrSpecs(addrs); err != nil {
		return nil, false, fmt.Errorf("weave: %s=%q: %w", EnvCIDR, v, err)
	}
	return addrs, false, nil
}

// rewriter rewrites create requests; it holds no state of its own.
type rewriter struct {
	waitBinary string
	domain     string // without the trailing dot
	dns        netip.Addr
}

// errNoCommand: the container has neither entrypoint nor command; the
// Engine refuses it with its own message.
var errNoCommand = errors.New("no command specified")

// rewrite turns the body of a create request (decoded with UseNumber, so
// numbers and unknown fields survive as they were) into the one for a
// managed container named name (from ?name=, may be empty), whose image
// has img. The rules:
//
//   - Entrypoint = waitEntrypoint + the effective entrypoint, Cmd = the
//     effective command, following the Engine's merge: without an
//     entrypoint in the request the image's applies; without an entrypoint
//     and a command the image's command applies; an entrypoint in the
//     request (even [] or [""], which reset it) means the image's command
//     is not used.
//   - HostConfig.Binds gets WaitBinary:/.weave/weave:ro.
//   - Without a Hostname, a name that is a DNS label becomes the Hostname
//     and the domain the Domainname (unless one is set).
//   - Without HostConfig.Dns, Dns = [weaveDNS] and DnsSearch = [domain]
//     plus the user's.
//   - Labels gets ManagedLabel=1; Env (with WEAVE_CIDR) is kept.
func (rw rewriter) rewrite(body map[string]any, name string, img imageConfig) error {
	epKey, ep := lookup(body, "Entrypoint")
	cmdKey, cmd := lookup(body, "Cmd")
	reqEP, epSet := strSlice(ep)
	reqCmd, _ := strSlice(cmd)
	entrypoint, command := effectiveCommand(reqEP, epSet, reqCmd, img)
	if len(entrypoint) == 0 && len(command) == 0 {
		return errNoCommand
	}
	body[epKey] = toAny(append(slices.Clone(waitEntrypoint), entrypoint...))
	body[cmdKey] = toAny(command)

	hcKey, hcv := lookup(body, "HostConfig")
	hc, _ := hcv.(map[string]any)
	if hc == nil {
		hc = map[string]any{}
		body[hcKey] = hc
	}
	bindsKey, binds := lookup(hc, "Binds")
	bs, _ := binds.([]any)
	hc[bindsKey] = append(bs, rw.waitBinary+":"+WaitPath+":ro")

	hostKey, hostname := lookup(body, "Hostname")
	if h, _ := hostname.(string); h == "" && isDNSLabel(name) && rw.domain != "" {
		body[hostKey] = name
		domKey, dom := lookup(body, "Domainname")
		if d, _ := dom.(string); d == "" {
			body[domKey] = rw.domain
		}
	}

	dnsKey, dns := lookup(hc, "Dns")
	if ds, _ := strSlice(dns); len(ds) == 0 && rw.dns.IsValid() {
		hc[dnsKey] = []any{rw.dns.String()}
		searchKey, search := lookup(hc, "DnsSearch")
		user, _ := strSlice(search)
		out := []string{rw.domain}
		for _, s := range user {
			if !strings.EqualFold(strings.TrimSuffix(s, "."), rw.domain) {
				out = append(out, s)
			}
		}
		hc[searchKey] = toAny(out)
	}

	labelsKey, labels := lookup(body, "Labels")
	lm, _ := labels.(map[string]any)
	if lm == nil {
		lm = map[string]any{}
		body[labelsKey] = lm
	}
	lm[ManagedLabel] = "1"
	return nil
}

// effectiveCommand is the Engine's merge of the request's entrypoint and
// command with the image's (daemon/commit.go merge, then
// mergeAndVerifyConfig's reset of [""]). epSet says whether the request
// had an entrypoint at all ([] counts: it resets the image's).
func effectiveCommand(reqEP []string, epSet bool, reqCmd []string, img imageConfig) (entrypoint, cmd []string) {
	entrypoint, cmd = reqEP, reqCmd
	if len(entrypoint) == 0 {
		if len(cmd) == 0 {
			cmd = img.Cmd
		}
		if !epSet {
			entrypoint = img.Entrypoint
		}
	}
	if len(entrypoint) == 1 && entrypoint[0] == "" {
		entrypoint = nil
	}
	return slices.Clone(entrypoint), slices.Clone(cmd)
}

// lookup finds key in m as the Engine's JSON decoding does: the exact key,
// else one that differs in case only. It returns the key to write back.
func lookup(m map[string]any, key string) (string, any) {
	if v, ok := m[key]; ok {
		return key, v
	}
	for k, v := range m {
		if strings.EqualFold(k, key) {
			return k, v
		}
	}
	return key, nil
}

// strSlice reads a JSON string list the way the Engine's StrSlice does: a
// list, or a single string as a list of one; null or absent is not set.
func strSlice(v any) (s []string, set bool) {
	switch v := v.(type) {
	case string:
		return []string{v}, true
	case []any:
		s = make([]string, 0, len(v))
		for _, e := range v {
			str, _ := e.(string)
			s = append(s, str)
		}
		return s, true
	}
	return nil, false
}

func toAny(s []string) []any {
	out := make([]any, len(s))
	for i, v := range s {
		out[i] = v
	}
	return out
}

// isDNSLabel reports whether s can be the first label of a DNS name.
func isDNSLabel(s string) bool {
	if len(s) == 0 || len(s) > 63 || s[0] == '-' || s[len(s)-1] == '-' {
		return false
	}
	for _, c := range []byte(s) {
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-') {
			return false
		}
	}
	return true
}

// joinsNetwork reports whether a container with network mode mode can be
// attached: not with the host's or another container's namespace, nor on
// a network of some plugin.
func joinsNetwork(mode string) bool {
	switch mode {
	case "", "default", "bridge", "none":
		return true
	}
	return false
}

// serveCreate handles POST /containers/create: it rewrites the request of a
// container that joins the network and forwards it.
func (p *Proxy) serveCreate(w http.ResponseWriter, r *http.Request, prefix string) {
	raw, err := io.ReadAll(io.LimitReader(r.Body, maxCreateBody+1))
	r.Body.Close()
	if err != nil {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("weave proxy: reading the request: %v", err))
		return
	}
	if len(raw) > maxCreateBody {
		writeError(w, http.StatusRequestEntityTooLarge, "weave proxy: create request larger than 8 MiB")
		return
	}
	forward := func(body []byte) {
		r.Body = io.NopCloser(bytes.NewReader(body))
		r.ContentLength = int64(len(body))
		r.TransferEncoding = nil
		r.Header.Set("Content-Length", strconv.Itoa(len(body)))
		p.rp.ServeHTTP(w, r)
	}
	body, err := decodeObject(raw)
	if err != nil {
		// Not ours to judge: the Engine says what is wrong with it.
		forward(raw)
		return
	}
	name := strings.TrimPrefix(r.URL.Query().Get("name"), "/")
	log := p.log.With("container", name)

	_, hcv := lookup(body, "HostConfig")
	hc, _ := hcv.(map[string]any)
	_, modev := lookup(hc, "NetworkMode")
	if mode, _ := modev.(string); !joinsNetwork(mode) {
		log.Debug("create: not joining the network", "network_mode", mode)
		forward(raw)
		return
	}
	_, envv := lookup(body, "Env")
	env, _ := strSlice(envv)
	cidr, cidrSet := envValue(env, EnvCIDR)
	if cidrSet {
		if _, skip, err := parseCIDRs(cidr); err != nil {
			writeError(w, http.StatusBadRequest, err.Error())
			return
		} else if skip {
			forward(raw)
			return
		}
	}
	_, imagev := lookup(body, "Image")
	image, _ := imagev.(string)
	if image == "" {
		forward(raw)
		return
	}
	img, err := p.engine.inspectImage(r.Context(), prefix, image)
	if err != nil {
		// A missing image is the Engine's 404, which makes `docker run`
		// pull it and create again.
		var ae *apiError
		if errors.As(err, &ae) {
			writeError(w, ae.Status, ae.Message)
			return
		}
		p.proxyError(w, r, err)
		return
	}
	if !cidrSet {
		// The image may set WEAVE_CIDR; the container inherits it.
		if v, ok := envValue(img.Env, EnvCIDR); ok {
			if _, skip, err := parseCIDRs(v); err != nil {
				writeError(w, http.StatusBadRequest, fmt.Sprintf("%v (set by image %s)", err, image))
				return
			} else if skip {
				forward(raw)
				return
			}
		}
	}
	if err := p.rw.rewrite(body, name, img); err != nil {
		forward(raw)
		return
	}
	out, err := json.Marshal(body)
	if err != nil {
		writeError(w, http.StatusInternalServerError, fmt.Sprintf("weave proxy: encoding the request: %v", err))
		return
	}
	log.Debug("create: rewritten for weave", "image", image)
	forward(out)
}

// decodeObject decodes one JSON object, keeping numbers as written.
func decodeObject(raw []byte) (map[string]any, error) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var body map[string]any
	if err := dec.Decode(&body); err != nil {
		return nil, err
	}
	if body == nil {
		return nil, errors.New("not an object")
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errors.New("trailing data")
	}
	return body, nil
}
