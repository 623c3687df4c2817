package daemon

import (
	"bytes"
	"fmt"
	"io"
	"os"
)

// maxPassword bounds a password read from a file or pipe.
const maxPassword = 4096

// PasswordSource says where the password may come from, in order of
// precedence: the --password flag (discouraged: argv is visible to every
// user in ps), --password-file, then the environment variable.
type PasswordSource struct {
	Flag    string
	FlagSet bool
	File    string
	Env     string // value of $WEAVE_PASSWORD
}

// Password returns the network password from src, nil when none is set.
// Giving both --password and --password-file is an error.
func (src PasswordSource) Password() ([]byte, error) {
	if src.FlagSet && src.File != "" {
		return nil, fmt.Errorf("%w: give only one of --password and --password-file", ErrBadConfig)
	}
	switch {
	case src.FlagSet:
		if src.Flag == "" {
			return nil, fmt.Errorf("%w: --password is empty", ErrBadConfig)
		}
		return []byte(src.Flag), nil
	case src.File != "":
		f, err := os.Open(src.File)
		if err != nil {
			return nil, fmt.Errorf("%w: --password-file: %w", ErrBadConfig, err)
		}
		defer f.Close()
		return readPassword(f, "--password-file "+src.File)
	case src.Env != "":
		return []byte(src.Env), nil
	}
	return nil, nil
}

// readPassword reads a password from r, dropping one trailing newline.
func readPassword(r io.Reader, what string) ([]byte, error) {
	b, err := io.ReadAll(io.LimitReader(r, maxPassword+1))
	if err != nil {
		return nil, fmt.Errorf("%w: read %s: %w", ErrBadConfig, what, err)
	}
	if len(b) > maxPassword {
		return nil, fmt.Errorf("%w: %s: password longer than %d bytes", ErrBadConfig, what, maxPassword)
	}
	b = bytes.TrimSuffix(b, []byte("\n"))
	b = bytes.TrimSuffix(b, []byte("\r"))
	if len(b) == 0 {
		return nil, fmt.Errorf("%w: %s: password is empty", ErrBadConfig, what)
	}
	return b, nil
}

// ReadPasswordFD reads the password the launching process wrote to the
// inherited file descriptor fd, then closes it. An empty pipe means no
// password.
func ReadPasswordFD(fd int) ([]byte, error) {
	f := os.NewFile(uintptr(fd), "password-pipe")
	if f == nil {
		return nil, fmt.Errorf("%w: password fd %d is not open", ErrBadConfig, fd)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxPassword+1))
	if err != nil {
		return nil, fmt.Errorf("read password from fd %d: %w", fd, err)
	}
	if len(b) == 0 {
		return nil, nil
	}
	if len(b) > maxPassword {
		return nil, fmt.Errorf("%w: password longer than %d bytes", ErrBadConfig, maxPassword)
	}
	return b, nil
}
