package harness

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
)

// EnvBinary names a prebuilt weave binary to use instead of building one.
const EnvBinary = "WEAVE_TEST_BINARY"

var (
	buildOnce sync.Once
	buildPath string
	buildErr  error
	buildDir  string
	builtPath atomic.Pointer[string]
)

// Binary returns the path of a weave binary built from this module's
// cmd/weave, building it on the first call of the test process (or taking
// $WEAVE_TEST_BINARY). It fails the test when the build fails.
func Binary(t testing.TB) string {
	t.Helper()
	buildOnce.Do(func() {
		if p := os.Getenv(EnvBinary); p != "" {
			buildPath, buildErr = filepath.Abs(p)
			return
		}
		buildPath, buildErr = build()
	})
	if buildErr == nil {
		builtPath.Store(&buildPath)
	}
	if buildErr != nil {
		t.Fatalf("build weave: %v", buildErr)
	}
	return buildPath
}

// builtBinary returns the binary if Binary already built it; cleanup code
// uses it because it must not fail the test (or build) half-way.
func builtBinary() (string, bool) {
	if p := builtPath.Load(); p != nil {
		return *p, true
	}
	return "", false
}

func build() (string, error) {
	root, err := ModuleRoot()
	if err != nil {
		return "", err
	}
	dir, err := os.MkdirTemp("", "h8-weave-bin-")
	if err != nil {
		return "", err
	}
	buildDir = dir
	out := filepath.Join(dir, "weave")
	cmd := exec.Command("go", "build", "-o", out, "./cmd/weave")
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	var buf bytes.Buffer
	cmd.Stdout, cmd.Stderr = &buf, &buf
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("go build ./cmd/weave: %w\n%s", err, buf.String())
	}
	return out, nil
}

// ModuleRoot returns the directory holding this module's go.mod.
func ModuleRoot() (string, error) {
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	gomod := strings.TrimSpace(string(out))
	if gomod == "" || gomod == os.DevNull {
		return "", fmt.Errorf("not inside the weave module")
	}
	return filepath.Dir(gomod), nil
}

// Main runs the tests of a package that uses the harness and removes the
// binary it built. Call it from TestMain: os.Exit(harness.Main(m)).
func Main(m *testing.M) int {
	code := m.Run()
	if buildDir != "" {
		os.RemoveAll(buildDir)
	}
	return code
}
