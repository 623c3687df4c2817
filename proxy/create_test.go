package proxy

import (
	"encoding/json"
	"errors"
	"net/http"
	"net/netip"
	"reflect"
	"strings"
	"testing"
)

func TestEffectiveCommand(t *testing.T) {
	img := imageConfig{Entrypoint: []string{"/img-ep"}, Cmd: []string{"img-cmd", "x"}}
	tests := []struct {
		name        string
		body        string // Entrypoint and Cmd of the request
		img         imageConfig
		wantEP      []string // after the wait prefix
		wantCmd     []string
		wantNoCmd   bool
		description string
	}{
		{name: "neither: image's both", body: `{}`, img: img, wantEP: []string{"/img-ep"}, wantCmd: []string{"img-cmd", "x"}},
		{name: "nulls: image's both", body: `{"Entrypoint":null,"Cmd":null}`, img: img, wantEP: []string{"/img-ep"}, wantCmd: []string{"img-cmd", "x"}},
		{name: "cmd only: image's entrypoint", body: `{"Cmd":["a","b"]}`, img: img, wantEP: []string{"/img-ep"}, wantCmd: []string{"a", "b"}},
		{name: "entrypoint only: image's cmd not used", body: `{"Entrypoint":["/ep","-v"]}`, img: img, wantEP: []string{"/ep", "-v"}, wantCmd: []string{}},
		{name: "both given", body: `{"Entrypoint":["/ep"],"Cmd":["c"]}`, img: img, wantEP: []string{"/ep"}, wantCmd: []string{"c"}},
		{name: "entrypoint string form", body: `{"Entrypoint":"/bin/sh -c","Cmd":"echo hi"}`, img: img, wantEP: []string{"/bin/sh -c"}, wantCmd: []string{"echo hi"}},
		{name: "entrypoint [] resets, image cmd applies", body: `{"Entrypoint":[]}`, img: img, wantEP: []string{}, wantCmd: []string{"img-cmd", "x"}},
		{name: `entrypoint [""] with cmd`, body: `{"Entrypoint":[""],"Cmd":["/bin/true"]}`, img: img, wantEP: []string{}, wantCmd: []string{"/bin/true"}},
		{name: `entrypoint [""] without cmd: no command`, body: `{"Entrypoint":[""]}`, img: img, wantNoCmd: true},
		{name: "nothing anywhere: no command", body: `{}`, img: imageConfig{}, wantNoCmd: true},
		{name: "scratch image with entrypoint, args", body: `{"Cmd":["probe","db:80"]}`, img: imageConfig{Entrypoint: []string{"/weavetest"}}, wantEP: []string{"/weavetest"}, wantCmd: []string{"probe", "db:80"}},
		{name: "image cmd only", body: `{}`, img: imageConfig{Cmd: []string{"/bin/sh"}}, wantEP: []string{}, wantCmd: []string{"/bin/sh"}},
		{name: "lower-case keys", body: `{"entrypoint":["/ep"],"cmd":["c"]}`, img: img, wantEP: []string{"/ep"}, wantCmd: []string{"c"}},
	}
	rw := rewriter{waitBinary: "/usr/bin/weave", domain: "weave.local"}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			body := mustDecode(t, tt.body)
			err := rw.rewrite(body, "c1", tt.img)
			if tt.wantNoCmd {
				if !errors.Is(err, errNoCommand) {
					t.Fatalf("rewrite: err %v, want errNoCommand", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			epKey, ep := lookup(body, "Entrypoint")
			cmdKey, cmd := lookup(body, "Cmd")
			for _, k := range []string{epKey, cmdKey} {
				n := 0
				for _, have := range keys(body) {
					if strings.EqualFold(have, k) {
						n++
					}
				}
				if n != 1 {
					t.Errorf("keys %v: %s present %d times in different cases", keys(body), k, n)
				}
			}
			gotEP, _ := strSlice(ep)
			gotCmd, _ := strSlice(cmd)
			want := append(append([]string{}, waitEntrypoint...), tt.wantEP...)
			if !reflect.DeepEqual(gotEP, want) {
				t.Errorf("Entrypoint = %q, want %q", gotEP, want)
			}
			if !reflect.DeepEqual(gotCmd, tt.wantCmd) {
				t.Errorf("Cmd = %q, want %q", gotCmd, tt.wantCmd)
			}
		})
	}
}

func TestRewriteFields(t *testing.T) {
	dns := netip.MustParseAddr("169.254.53.53")
	img := imageConfig{Cmd: []string{"/bin/sh"}}
	tests := []struct {
		name string
		cn   string // container name
		body string
		dns  netip.Addr
		want map[string]any // JSON paths (a.b) to values, nil = absent
	}{
		{
			name: "defaults",
			cn:   "db",
			body: `{"Image":"x"}`,
			dns:  dns,
			want: map[string]any{
				"Hostname": "db", "Domainname": "weave.local",
				"HostConfig.Binds":       []any{"/usr/bin/weave:/.weave/weave:ro"},
				"HostConfig.Dns":         []any{"169.254.53.53"},
				"HostConfig.DnsSearch":   []any{"weave.local"},
				"Labels." + ManagedLabel: "1",
			},
		},
		{
			name: "user's binds, labels, search and unknown fields kept",
			cn:   "web-1",
			body: `{"Image":"x","Labels":{"a":"b"},"FutureField":{"x":[1,2]},"Memory":9007199254740993,"HostConfig":{"Binds":["/a:/b"],"DnsSearch":["example.com","weave.local."],"Unknown":true}}`,
			dns:  dns,
			want: map[string]any{
				"Hostname":               "web-1",
				"HostConfig.Binds":       []any{"/a:/b", "/usr/bin/weave:/.weave/weave:ro"},
				"HostConfig.DnsSearch":   []any{"weave.local", "example.com"},
				"HostConfig.Unknown":     true,
				"Labels.a":               "b",
				"Labels." + ManagedLabel: "1",
				"FutureField":            map[string]any{"x": []any{json.Number("1"), json.Number("2")}},
				"Memory":                 json.Number("9007199254740993"),
			},
		},
		{
			name: "user's hostname and dns kept",
			cn:   "db",
			body: `{"Image":"x","Hostname":"mine","HostConfig":{"Dns":["8.8.8.8"],"DnsSearch":["example.com"]}}`,
			dns:  dns,
			want: map[string]any{
				"Hostname": "mine", "Domainname": nil,
				"HostConfig.Dns":       []any{"8.8.8.8"},
				"HostConfig.DnsSearch": []any{"example.com"},
			},
		},
		{
			name: "user's domainname kept",
			cn:   "db",
			body: `{"Image":"x","Domainname":"example.com"}`,
			dns:  dns,
			want: map[string]any{"Hostname": "db", "Domainname": "example.com"},
		},
		{
			name: "name not a DNS label: no hostname",
			cn:   "my_db",
			body: `{"Image":"x"}`,
			dns:  dns,
			want: map[string]any{"Hostname": nil, "Domainname": nil, "HostConfig.Dns": []any{"169.254.53.53"}},
		},
		{
			name: "no name",
			cn:   "",
			body: `{"Image":"x","Hostname":""}`,
			dns:  dns,
			want: map[string]any{"Hostname": "", "Domainname": nil},
		},
		{
			name: "no DNS address: DNS left alone",
			cn:   "db",
			body: `{"Image":"x","HostConfig":{"DnsSearch":["example.com"]}}`,
			dns:  netip.Addr{},
			want: map[string]any{"HostConfig.Dns": nil, "HostConfig.DnsSearch": []any{"example.com"}, "Hostname": "db"},
		},
		{
			name: "null HostConfig and Labels",
			cn:   "db",
			body: `{"Image":"x","HostConfig":null,"Labels":null}`,
			dns:  dns,
			want: map[string]any{"HostConfig.Binds": []any{"/usr/bin/weave:/.weave/weave:ro"}, "Labels." + ManagedLabel: "1"},
		},
		{
			name: "env with WEAVE_CIDR kept",
			cn:   "db",
			body: `{"Image":"x","Env":["A=1","WEAVE_CIDR=net:10.2.0.0/16"]}`,
			dns:  dns,
			want: map[string]any{"Env": []any{"A=1", "WEAVE_CIDR=net:10.2.0.0/16"}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rw := rewriter{waitBinary: "/usr/bin/weave", domain: "weave.local", dns: tt.dns}
			body := mustDecode(t, tt.body)
			if err := rw.rewrite(body, tt.cn, img); err != nil {
				t.Fatal(err)
			}
			// Through JSON and back, as the Engine gets it.
			b, err := json.Marshal(body)
			if err != nil {
				t.Fatal(err)
			}
			body = mustDecode(t, string(b))
			for path, want := range tt.want {
				got, ok := at(body, path)
				if want == nil {
					if ok && got != nil {
						t.Errorf("%s = %#v, want absent", path, got)
					}
					continue
				}
				if !reflect.DeepEqual(got, want) {
					t.Errorf("%s = %#v, want %#v", path, got, want)
				}
			}
			if !strings.Contains(string(b), `"Memory"`) && strings.Contains(tt.body, `"Memory"`) {
				t.Errorf("Memory lost: %s", b)
			}
		})
	}
}

func TestAddrsFromEnv(t *testing.T) {
	tests := []struct {
		env     []string
		want    []string
		skip    bool
		wantErr string
	}{
		{env: nil},
		{env: []string{"A=1"}},
		{env: []string{"WEAVE_CIDR="}},
		{env: []string{"WEAVE_CIDR"}}, // unset in the client's environment
		{env: []string{"WEAVE_CIDR=none"}, skip: true},
		{env: []string{"WEAVE_CIDR=net:default"}, want: []string{"net:default"}},
		{env: []string{"WEAVE_CIDR= 10.2.1.4/24  ip:10.2.1.5/24 net:10.3.0.0/16 "}, want: []string{"10.2.1.4/24", "ip:10.2.1.5/24", "net:10.3.0.0/16"}},
		{env: []string{"WEAVE_CIDR=none", "WEAVE_CIDR=10.2.1.4/24"}, want: []string{"10.2.1.4/24"}},
		{env: []string{"WEAVE_CIDR=10.2.1.4"}, wantErr: `WEAVE_CIDR="10.2.1.4": address "10.2.1.4": malformed CIDR: missing /prefix-length`},
		{env: []string{"WEAVE_CIDR=net:banana"}, wantErr: "malformed CIDR"},
		{env: []string{"WEAVE_CIDR=none 10.2.1.4/24"}, wantErr: `address "none"`},
		{env: []string{"WEAVE_CIDR=10.2.1.4/24 10.2.1.4/24"}, wantErr: "given twice"},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.env, ","), func(t *testing.T) {
			got, skip, err := AddrsFromEnv(tt.env)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err %v, want one with %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if skip != tt.skip || len(got) != len(tt.want) || len(got) > 0 && !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got %q skip %v, want %q skip %v", got, skip, tt.want, tt.skip)
			}
		})
	}
}

// TestCreateThroughProxy sends create requests through the proxy to the
// fake Engine and checks what the Engine got.
func TestCreateThroughProxy(t *testing.T) {
	fe := newFakeEngine(t)
	fe.addImage("busybox", imageConfig{Cmd: []string{"sh"}})
	fe.addImage("weave-test/weavetest:1", imageConfig{Entrypoint: []string{"/weavetest"}})
	fe.addImage("skipme", imageConfig{Cmd: []string{"sh"}, Env: []string{"WEAVE_CIDR=none"}})
	fe.addImage("badenv", imageConfig{Cmd: []string{"sh"}, Env: []string{"WEAVE_CIDR=1.2.3.4"}})
	tp := startProxy(t, "unix://"+fe.path)

	tests := []struct {
		name       string
		path       string
		body       string
		wantStatus int
		wantMsg    string
		unchanged  bool // the Engine got the body as sent
		wantEP     []string
		wantCmd    []string
	}{
		{name: "default", path: "/v1.41/containers/create?name=db", body: `{"Image":"busybox"}`, wantStatus: 201, wantEP: waitEntrypoint, wantCmd: []string{"sh"}},
		{name: "no version prefix", path: "/containers/create?name=db2", body: `{"Image":"busybox","Cmd":["ls"]}`, wantStatus: 201, wantEP: waitEntrypoint, wantCmd: []string{"ls"}},
		{name: "scratch image", path: "/v1.44/containers/create", body: `{"Image":"weave-test/weavetest:1","Cmd":["probe","db:80"],"Env":["WEAVE_CIDR=net:10.2.0.0/16"]}`, wantStatus: 201,
			wantEP: append(append([]string{}, waitEntrypoint...), "/weavetest"), wantCmd: []string{"probe", "db:80"}},
		{name: "none", path: "/v1.41/containers/create?name=n", body: `{"Image":"busybox","Env":["WEAVE_CIDR=none"],"X":1.50}`, wantStatus: 201, unchanged: true},
		{name: "none from the image", path: "/v1.41/containers/create", body: `{"Image":"skipme"}`, wantStatus: 201, unchanged: true},
		{name: "host network", path: "/v1.41/containers/create", body: `{"Image":"busybox","HostConfig":{"NetworkMode":"host"}}`, wantStatus: 201, unchanged: true},
		{name: "other container's network", path: "/v1.41/containers/create", body: `{"Image":"busybox","HostConfig":{"NetworkMode":"container:abc"}}`, wantStatus: 201, unchanged: true},
		{name: "no command anywhere: the Engine says", path: "/v1.41/containers/create", body: `{"Image":"busybox","Entrypoint":[""]}`, wantStatus: 201, unchanged: true},
		{name: "malformed WEAVE_CIDR", path: "/v1.41/containers/create?name=bad", body: `{"Image":"busybox","Env":["WEAVE_CIDR=10.2.1.4"]}`, wantStatus: 400,
			wantMsg: `weave: WEAVE_CIDR="10.2.1.4": address "10.2.1.4": malformed CIDR: missing /prefix-length`},
		{name: "malformed WEAVE_CIDR from the image", path: "/v1.41/containers/create", body: `{"Image":"badenv"}`, wantStatus: 400, wantMsg: "(set by image badenv)"},
		{name: "missing image: the Engine's 404", path: "/v1.41/containers/create?name=m", body: `{"Image":"nosuch:latest"}`, wantStatus: 404, wantMsg: "No such image: nosuch:latest"},
		{name: "not JSON: the Engine says", path: "/v1.41/containers/create", body: `{"Image":`, wantStatus: 400, unchanged: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fe.mu.Lock()
			before := len(fe.creates)
			fe.mu.Unlock()
			status, body := tp.do(t, http.MethodPost, tt.path, tt.body)
			if status != tt.wantStatus {
				t.Fatalf("status %d (%s), want %d", status, body, tt.wantStatus)
			}
			if tt.wantMsg != "" {
				var m struct{ Message string }
				if err := json.Unmarshal([]byte(body), &m); err != nil || !strings.Contains(m.Message, tt.wantMsg) {
					t.Errorf("answer %s, want a message with %q", body, tt.wantMsg)
				}
			}
			fe.mu.Lock()
			got := fe.creates[before:]
			fe.mu.Unlock()
			if status/100 != 2 {
				if status != 400 || !tt.unchanged {
					if len(got) != 0 {
						t.Fatalf("the Engine got a create: %s", got)
					}
				}
				return
			}
			if len(got) != 1 {
				t.Fatalf("the Engine got %d creates", len(got))
			}
			if tt.unchanged {
				if string(got[0]) != tt.body {
					t.Errorf("the Engine got %s, want it unchanged: %s", got[0], tt.body)
				}
				return
			}
			sent := mustDecode(t, string(got[0]))
			ep, _ := strSlice(sent["Entrypoint"])
			cmd, _ := strSlice(sent["Cmd"])
			if !reflect.DeepEqual(ep, tt.wantEP) || !reflect.DeepEqual(cmd, tt.wantCmd) {
				t.Errorf("Entrypoint %q Cmd %q, want %q %q", ep, cmd, tt.wantEP, tt.wantCmd)
			}
			if l, _ := at(sent, "Labels."+ManagedLabel); l != "1" {
				t.Errorf("no managed label: %s", got[0])
			}
		})
	}
}

func mustDecode(t testing.TB, s string) map[string]any {
	t.Helper()
	m, err := decodeObject([]byte(s))
	if err != nil {
		t.Fatalf("decode %s: %v", s, err)
	}
	return m
}

// at returns the value at a dotted path (the last element may contain
// dots: label names do).
func at(m map[string]any, path string) (any, bool) {
	first, rest, more := strings.Cut(path, ".")
	v, ok := m[first]
	if !more {
		return v, ok
	}
	sub, _ := v.(map[string]any)
	if sub == nil {
		return nil, false
	}
	if strings.HasPrefix(rest, ManagedLabel) {
		v, ok := sub[rest]
		return v, ok
	}
	return at(sub, rest)
}

func keys(m map[string]any) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}
