package shim

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"syscall"
	"time"
)

// ErrSocketInUse is returned by Listen when another process serves on the
// socket path.
var ErrSocketInUse = errors.New("another process is serving on the socket")

// Listen creates the unix socket the kubelet connects to. It creates the
// parent directory, refuses to take over a socket another process still
// serves, removes a stale socket file left by a crashed process, and sets the
// socket's mode (0660 keeps it to root and the socket's group).
func Listen(path string, mode os.FileMode) (net.Listener, error) {
	if !filepath.IsAbs(path) {
		return nil, fmt.Errorf("listen socket %q: path must be absolute", path)
	}
	if len(path) > maxSocketPath {
		return nil, fmt.Errorf("listen socket %q: path is %d bytes, over the %d-byte unix socket limit", path, len(path), maxSocketPath)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("listen socket %q: create parent directory: %w", path, err)
	}
	if err := removeStaleSocket(path); err != nil {
		return nil, err
	}
	l, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("listen socket %q: %w", path, err)
	}
	if err := os.Chmod(path, mode); err != nil {
		l.Close()
		return nil, fmt.Errorf("listen socket %q: set mode %#o: %w", path, mode, err)
	}
	return l, nil
}

func removeStaleSocket(path string) error {
	fi, err := os.Lstat(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("listen socket %q: %w", path, err)
	}
	if fi.Mode().Type() != os.ModeSocket {
		return fmt.Errorf("listen socket %q: a %s is in the way; remove it or choose another path", path, describeMode(fi.Mode()))
	}
	c, err := net.DialTimeout("unix", path, time.Second)
	if err == nil {
		c.Close()
		return fmt.Errorf("listen socket %q: %w; stop it first or choose another path", path, ErrSocketInUse)
	}
	if !errors.Is(err, syscall.ECONNREFUSED) {
		return fmt.Errorf("listen socket %q: probe existing socket: %w", path, err)
	}
	// Nobody listens: a stale socket from a process that did not clean up.
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("listen socket %q: remove stale socket: %w", path, err)
	}
	return nil
}

func describeMode(m os.FileMode) string {
	switch {
	case m.IsDir():
		return "directory"
	case m.IsRegular():
		return "regular file"
	case m&os.ModeSymlink != 0:
		return "symlink"
	}
	return "non-socket file"
}
