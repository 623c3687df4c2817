package daemon

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"syscall"
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
	// Warn, when set, is told (one line each) about a password that is
	// accepted but exposed, such as a file its group may read.
	Warn func(msg string)
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
		// Non-blocking, so that a FIFO is refused rather than waited on.
		f, err := os.OpenFile(src.File, os.O_RDONLY|syscall.O_NONBLOCK, 0)
		if err != nil {
			return nil, fmt.Errorf("%w: --password-file: %w", ErrBadConfig, err)
		}
		defer f.Close()
		if err := src.checkFile(f); err != nil {
			return nil, err
		}
		return readPassword(f, "--password-file "+src.File)
	case src.Env != "":
		return []byte(src.Env), nil
	}
	return nil, nil
}

// checkFile refuses a password file that is not a regular file or that
// users other than its owner and group may read or write (the password
// opens the whole network), and warns when its group may.
func (src PasswordSource) checkFile(f *os.File) error {
	st, err := f.Stat()
	if err != nil {
		return fmt.Errorf("%w: --password-file: %w", ErrBadConfig, err)
	}
	if !st.Mode().IsRegular() {
		return fmt.Errorf("%w: --password-file %s: not a regular file", ErrBadConfig, src.File)
	}
	perm := st.Mode().Perm()
	if perm&0o007 != 0 {
		return fmt.Errorf("%w: --password-file %s: readable or writable by other users (mode %04o); chmod 600 %s",
			ErrBadConfig, src.File, perm, src.File)
	}
	if perm&0o070 != 0 && src.Warn != nil {
		src.Warn(fmt.Sprintf("weave: warning: --password-file %s is open to its group (mode %04o); chmod 600 %s unless that group should know the password",
			src.File, perm, src.File))
	}
	return nil
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
