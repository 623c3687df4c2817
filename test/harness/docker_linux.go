package harness

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// ImageRepo is the repository of the test image; its tag is a hash of the
// weavetest binary, so a changed program gets a new image and test
// processes building side by side agree on the name.
const ImageRepo = "weave-test/weavetest"

var (
	imageOnce sync.Once
	imageRef  string
	imageErr  error
)

// DockerImage returns the reference of a Docker image holding weavetest
// (test/images/weavetest) as its entrypoint, FROM scratch. The first call
// of the test process builds the static binary and, unless the Engine has
// it already, the image, with the docker CLI; the result is cached. It
// fails the test, saying why, when Docker is not reachable or the build
// fails. Images are left in the Engine for later runs.
func DockerImage(t testing.TB) string {
	t.Helper()
	imageOnce.Do(func() { imageRef, imageErr = buildImage() })
	if imageErr != nil {
		t.Fatalf("test image: %v", imageErr)
	}
	return imageRef
}

func buildImage() (string, error) {
	if err := dockerReachable(); err != nil {
		return "", err
	}
	root, err := ModuleRoot()
	if err != nil {
		return "", err
	}
	dir, err := os.MkdirTemp("", "h8-weavetest-image-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(dir)

	bin := filepath.Join(dir, "weavetest")
	cmd := exec.Command("go", "build", "-trimpath", "-o", bin, "./test/images/weavetest")
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build ./test/images/weavetest: %w\n%s", err, out)
	}
	sum, err := fileHash(bin)
	if err != nil {
		return "", err
	}
	ref := ImageRepo + ":" + sum[:16]

	ctx := context.Background()
	if r := Docker(ctx, "image", "inspect", "--format", "{{.Id}}", ref); r.OK() {
		return ref, nil
	}
	dockerfile := "FROM scratch\nCOPY weavetest /weavetest\nENTRYPOINT [\"/weavetest\"]\n"
	if err := os.WriteFile(filepath.Join(dir, "Dockerfile"), []byte(dockerfile), 0o644); err != nil {
		return "", err
	}
	// Without buildx the CLI falls back to the legacy builder (with a
	// deprecation notice), which is all a FROM scratch image needs.
	if r := Docker(ctx, "build", "-q", "-t", ref, dir); !r.OK() {
		return "", fmt.Errorf("docker build: %v\n%s", r.Err, r.Stderr)
	}
	return ref, nil
}

func fileHash(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// dockerReachable checks that the docker CLI is installed and the Engine
// answers it.
func dockerReachable() error {
	if _, err := exec.LookPath("docker"); err != nil {
		return errors.New("the docker CLI is not in PATH (tests with containers need Docker)")
	}
	r := Docker(context.Background(), "version", "--format", "{{.Server.APIVersion}}")
	if !r.OK() {
		return fmt.Errorf("docker is not reachable (tests with containers need a running Docker Engine): %s", firstNonEmpty(r.Stderr, r.Err.Error()))
	}
	return nil
}

func firstNonEmpty(s ...string) string {
	for _, v := range s {
		if v = strings.TrimSpace(v); v != "" {
			return v
		}
	}
	return ""
}

// Docker runs the docker CLI in the test process's namespaces and
// environment and waits for it (at most DefaultTimeout unless ctx has a
// deadline). Stdout and Stderr are kept whole; Err is one line.
func Docker(ctx context.Context, args ...string) Result {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, DefaultTimeout)
		defer cancel()
	}
	cmd := exec.CommandContext(ctx, "docker", args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	r := Result{Args: append([]string{"docker"}, args...), Stdout: stdout.String(), Stderr: stderr.String(), ExitCode: -1}
	if cmd.ProcessState != nil {
		r.ExitCode = cmd.ProcessState.ExitCode()
	}
	if err != nil {
		r.Err = fmt.Errorf("%s: %w", strings.Join(r.Args, " "), err)
	}
	return r
}

// MustDocker is Docker that fails the test unless docker exits 0, and
// returns its standard output trimmed.
func MustDocker(t testing.TB, args ...string) string {
	t.Helper()
	r := Docker(context.Background(), args...)
	if !r.OK() {
		t.Fatalf("%s", r)
	}
	return strings.TrimSpace(r.Stdout)
}

// RemoveContainer force-removes a container, for callers to register with
// t.Cleanup. A container that is already gone is no error; other failures
// are logged, not fatal, so that cleanup goes on.
func RemoveContainer(t testing.TB, id string) {
	t.Helper()
	r := Docker(context.Background(), "rm", "-f", "-v", id)
	if !r.OK() && !strings.Contains(r.Stderr, "No such container") {
		t.Logf("cleanup: %s", r)
	}
}
