package api

import (
	"go/format"
	"os"
	"path/filepath"
	"testing"
)

// TestGofmt keeps this package's files gofmt-clean.
func TestGofmt(t *testing.T) {
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		src, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		out, err := format.Source(src)
		if err != nil {
			t.Errorf("%s: %v", f, err)
			continue
		}
		if string(out) != string(src) {
			t.Errorf("%s is not gofmt-clean: run gofmt -w %s", f, f)
		}
	}
}
