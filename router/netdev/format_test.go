package netdev

import (
	"bytes"
	"go/format"
	"os"
	"path/filepath"
	"testing"
)

// TestGofmt keeps the package gofmt-clean.
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
			t.Fatalf("%s: %v", f, err)
		}
		if !bytes.Equal(src, out) {
			t.Errorf("%s is not gofmt-clean", f)
		}
	}
}
