package docker

import (
	"context"
	"errors"
	"os/exec"
	"strings"
	"testing"
)

func TestParseRun(t *testing.T) {
	const id = "d85d6853ba4f7e42942d6e231ecd93de306eaf63f53960b087022a62228e445f"
	exit := errors.New("exit status 125")
	for _, tc := range []struct {
		name           string
		stdout, stderr string
		runErr         error
		wantID         string
		wantErr        string
	}{
		{name: "ok", stdout: id + "\n", wantID: id},
		{name: "ok after pull notes", stdout: "\n" + id + "\n\n", stderr: "Unable to find image 'x:latest' locally\nlatest: Pulling from x\n", wantID: id},
		{name: "not an id", stdout: "hello\n", wantErr: `docker run: printed "hello", not a container ID`},
		{name: "nothing", wantErr: "docker run: printed no container ID"},
		{
			name:    "daemon error",
			stderr:  "Unable to find image 'nosuch:latest' locally\ndocker: Error response from daemon: No such image: nosuch:latest\n\nRun 'docker run --help' for more information\n",
			runErr:  exit,
			wantErr: "docker run: Error response from daemon: No such image: nosuch:latest",
		},
		{
			name:    "old CLI help hint",
			stderr:  "docker: Error response from daemon: Conflict. The container name \"/db\" is already in use.\nSee 'docker run --help'.\n",
			runErr:  exit,
			wantErr: `docker run: Error response from daemon: Conflict. The container name "/db" is already in use.`,
		},
		{
			name:    "bad flag",
			stderr:  "unknown flag: --nope\n\nUsage:  docker run [OPTIONS] IMAGE [COMMAND] [ARG...]\n\nRun 'docker run --help' for more information\n",
			runErr:  exit,
			wantErr: "docker run: unknown flag: --nope",
		},
		{
			name:    "created but not started",
			stdout:  id + "\n",
			stderr:  "docker: Error response from daemon: failed to create shim task: exec: \"/nonexistent\": no such file or directory: unknown\n\nRun 'docker run --help' for more information\n",
			runErr:  errors.New("exit status 127"),
			wantID:  id,
			wantErr: "docker run: Error response from daemon: failed to create shim task: exec: \"/nonexistent\": no such file or directory: unknown",
		},
		{name: "silent failure", runErr: exit, wantErr: "docker run: exit status 125"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			id, err := parseRun(tc.stdout, tc.stderr, tc.runErr)
			if id != tc.wantID {
				t.Errorf("id %q, want %q", id, tc.wantID)
			}
			switch {
			case err == nil && tc.wantErr != "":
				t.Errorf("no error, want %q", tc.wantErr)
			case err != nil && err.Error() != tc.wantErr:
				t.Errorf("error %q, want %q", err, tc.wantErr)
			case err != nil && strings.Contains(err.Error(), "\n"):
				t.Errorf("error on more than one line: %q", err)
			}
		})
	}
}

func TestRunWithoutCLI(t *testing.T) {
	t.Setenv("PATH", t.TempDir())
	if _, err := exec.LookPath("docker"); err == nil {
		t.Fatal("docker still found with an empty PATH")
	}
	_, err := Run(context.Background(), nil, []string{"x"})
	if !errors.Is(err, ErrNoCLI) || err.Error() != "weave run needs the docker CLI in PATH" {
		t.Errorf("err %v, want ErrNoCLI", err)
	}
}
