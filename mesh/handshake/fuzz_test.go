package handshake

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"testing"
)

var writeCorpus = flag.Bool("write-corpus", false, "rewrite the seed corpus in testdata/fuzz")

// helloSeeds are valid and near-valid hellos.
func helloSeeds() [][]byte {
	plain := testHello()
	plain.Password, plain.Element = false, [32]byte{}
	ext := testHello().encode()
	ext[11] += 2
	ext = append(ext, 0xee, 0xff)
	return [][]byte{
		testHello().encode(),
		plain.encode(),
		ext,
		append(helloMagic[:], 5, 7, 0, 3, 'x', 'y', 'z'),
		helloMagic[:],
	}
}

// frameSeeds are streams of frames: sealed ones (with a rekey) and plain.
func frameSeeds(tb testing.TB) (sealed, plain []byte) {
	cfg := testConfig(1, nil)
	cfg.RekeyMessages = 2
	s := bytes.Join(recordFrames(tb, true, cfg, "a", "bb", "", "dddd"), nil)
	p := bytes.Join(recordFrames(tb, false, cfg, "a", "bb", ""), nil)
	return s, p
}

// FuzzDecodeHello checks that any bytes either fail to decode or decode to
// a hello that encodes back to the same fields.
func FuzzDecodeHello(f *testing.F) {
	for _, s := range helloSeeds() {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		h, err := decodeHello(b)
		if err != nil {
			return
		}
		if h.Peer.Name == 0 { // a future peer: only the versions were read
			if _, err := negotiate(MinVersion, MaxVersion, h.MinVersion, h.MaxVersion); err == nil {
				t.Fatalf("version-only hello %d..%d overlaps ours", h.MinVersion, h.MaxVersion)
			}
			return
		}
		back, err := decodeHello(h.encode())
		if err != nil || *back != *h {
			t.Fatalf("re-decoding %+v gave %+v, %v", h, back, err)
		}
		if rh, _, err := readHello(bytes.NewReader(b)); err != nil || *rh != *h {
			t.Fatalf("readHello disagrees with decodeHello: %+v, %v", rh, err)
		}
	})
}

// FuzzFrameHeader checks header decoding bounds and that a decoded header
// encodes back to the same bytes.
func FuzzFrameHeader(f *testing.F) {
	s, p := frameSeeds(f)
	f.Add(s[:headerLen], true)
	f.Add(p[:headerLen], false)
	f.Add([]byte{0, 0x80, 0, 0x10, 0, 0, 0, 0, 0, 0, 0, 0}, true)
	f.Fuzz(func(t *testing.T, b []byte, sealed bool) {
		h, err := decodeHeader(b, sealed)
		if err != nil {
			return
		}
		if h.Length > MaxMessageSize+tagLen || (sealed && h.Length < tagLen) {
			t.Fatalf("accepted length %d", h.Length)
		}
		var out [headerLen]byte
		h.put(out[:])
		if !bytes.Equal(out[:], b) {
			t.Fatalf("header %x re-encodes as %x", b, out)
		}
	})
}

// FuzzOpenFrame feeds a byte stream to a receiving session: it must never
// panic, and whatever it accepts must be what the real sender sent.
func FuzzOpenFrame(f *testing.F) {
	s, p := frameSeeds(f)
	f.Add(s, true)
	f.Add(p, false)
	f.Add(s[:len(s)-1], true)
	cfg := testConfig(1, nil)
	cfg.RekeyMessages = 2
	f.Fuzz(func(t *testing.T, stream []byte, sealed bool) {
		got, err := receive(sealed, cfg, stream)
		if err == nil {
			t.Fatal("stream ended without an error")
		}
		if !sealed {
			return
		}
		// Forging a sealed frame needs the key: only the seed's own
		// messages, in order, can come out.
		want := []string{"a", "bb", "", "dddd"}
		if len(got) > len(want) {
			t.Fatalf("accepted %d messages", len(got))
		}
		for i := range got {
			if got[i] != want[i] {
				t.Fatalf("message %d is %q, want %q", i, got[i], want[i])
			}
		}
	})
}

// TestWriteFuzzCorpus regenerates testdata/fuzz/Fuzz*/ with -write-corpus;
// otherwise it checks that the corpus exists.
func TestWriteFuzzCorpus(t *testing.T) {
	s, p := frameSeeds(t)
	corpus := map[string][]string{}
	for _, h := range helloSeeds() {
		corpus["FuzzDecodeHello"] = append(corpus["FuzzDecodeHello"], fmt.Sprintf("[]byte(%s)", strconv.Quote(string(h))))
	}
	for _, c := range []struct {
		b      []byte
		sealed bool
	}{{s[:headerLen], true}, {p[:headerLen], false}} {
		corpus["FuzzFrameHeader"] = append(corpus["FuzzFrameHeader"], fmt.Sprintf("[]byte(%s)\nbool(%v)", strconv.Quote(string(c.b)), c.sealed))
	}
	for _, c := range []struct {
		b      []byte
		sealed bool
	}{{s, true}, {p, false}} {
		corpus["FuzzOpenFrame"] = append(corpus["FuzzOpenFrame"], fmt.Sprintf("[]byte(%s)\nbool(%v)", strconv.Quote(string(c.b)), c.sealed))
	}
	pub := string(append([]byte{9}, make([]byte, 31)...))
	for _, c := range []struct {
		b        string
		switched bool
	}{{"\x01\x00\x01" + pub, false}, {"\x02\x00\x01" + pub, true}, {"\x03\x00\x01", true}} {
		corpus["FuzzKeyExchange"] = append(corpus["FuzzKeyExchange"], fmt.Sprintf("[]byte(%s)\nbool(%v)", strconv.Quote(c.b), c.switched))
	}
	for name, entries := range corpus {
		dir := filepath.Join("testdata", "fuzz", name)
		if !*writeCorpus {
			files, err := os.ReadDir(dir)
			if err != nil || len(files) == 0 {
				t.Errorf("no seed corpus in %s (run go test -run TestWriteFuzzCorpus -write-corpus): %v", dir, err)
			}
			continue
		}
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		for i, e := range entries {
			data := "go test fuzz v1\n" + e + "\n"
			if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("seed-%d", i)), []byte(data), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// FuzzKeyExchange feeds arbitrary key-exchange bodies (as they would come
// out of an authenticated frame) to both roles: the session never panics,
// refuses what is not the next step with ErrProtocol, and hands the data
// plane keys only for a well-formed step.
func FuzzKeyExchange(f *testing.F) {
	pub := make([]byte, 32)
	pub[0] = 9 // the X25519 base point
	f.Add(append([]byte{kxStep1, 0, 1}, pub...), false)
	f.Add(append([]byte{kxStep2, 0, 1}, pub...), true)
	f.Add([]byte{kxStep3, 0, 1}, true)
	f.Add([]byte{kxStep1, 0xff, 0xff}, false)
	f.Add([]byte{}, false)
	f.Fuzz(func(t *testing.T, body []byte, switched bool) {
		for _, isClient := range []bool{true, false} {
			s := sessionOn(&bufConn{}, true, isClient, testConfig(1, nil))
			s.startKX()
			var got []DataKeyUpdate
			s.OnDataKeys(func(u DataKeyUpdate) { got = append(got, u) })
			if isClient {
				s.beginKX() // an exchange in flight, so step 2 may be valid
			}
			err := s.handleKX(body, switched)
			s.Close()
			if err != nil {
				if !errors.Is(err, ErrProtocol) {
					t.Fatalf("client=%v: error %v is not ErrProtocol", isClient, err)
				}
				if len(got) != 0 {
					t.Fatalf("client=%v: keys handed over for a refused step", isClient)
				}
				continue
			}
			if len(body) != kxShareLen || (body[0] != kxStep1 && body[0] != kxStep2) || len(got) != 1 || got[0].Recv == nil {
				t.Fatalf("client=%v: accepted %x and handed over %+v", isClient, body, got)
			}
		}
	})
}
