// Package daemontest is what the tests of crishim's daemon and binary share
// (cmd/crishim/daemon runs the daemon in process, cmd/crishim runs main and
// the built binary): a fake runtime with the socket path and metrics address
// for a crishim, the base configuration, config files, a thread-safe log
// buffer and a kubelet-like call loop.
package daemontest

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/crishim/crishim/test/fakecri"
)

// Rig is a fake runtime, with a socket path and a metrics address chosen for
// the crishim a test runs.
type Rig struct {
	// Dir is a short private directory (unix socket paths are limited to
	// 108 bytes), removed at the end of the test.
	Dir string
	// Sock is where crishim should listen; MetricsAddr its metrics address.
	Sock, MetricsAddr string
	// Fake is the runtime, on Dir/up.sock.
	Fake *fakecri.Server
}

// NewRig starts a fake runtime for the test.
func NewRig(t testing.TB) *Rig {
	t.Helper()
	dir, err := os.MkdirTemp("", "cm")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	fake, err := fakecri.Start(filepath.Join(dir, "up.sock"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(fake.Stop)
	return &Rig{Dir: dir, Sock: filepath.Join(dir, "crishim.sock"), MetricsAddr: FreePort(t), Fake: fake}
}

// Base is the configuration every test starts from: the listen socket, the
// fake runtime and the metrics address; sections are appended to it.
func (r *Rig) Base() string {
	return fmt.Sprintf("listen:\n  path: %s\nruntimeEndpoint: %s\nmetrics:\n  address: %s\n", r.Sock, r.Fake.Endpoint(), r.MetricsAddr)
}

// FreePort returns a loopback address with a port free now.
func FreePort(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// WriteConfig writes body to a config file of its own (mode 0600) and
// returns its path.
func WriteConfig(t testing.TB, body string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "crishim.yaml")
	if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// LockedBuffer is a bytes.Buffer safe for a logger and a test at once.
type LockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

// Write appends p.
func (l *LockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

// String returns what was written so far.
func (l *LockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// CallLoop calls from 4 goroutines, as a busy kubelet would, until Stop.
type CallLoop struct {
	// OK and Failed count the calls.
	OK, Failed atomic.Int64
	stopc      chan struct{}
	wg         sync.WaitGroup
}

// StartCallLoop starts calling call; failures are logged.
func StartCallLoop(t testing.TB, call func() error) *CallLoop {
	l := &CallLoop{stopc: make(chan struct{})}
	for range 4 {
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			for {
				select {
				case <-l.stopc:
					return
				default:
				}
				if err := call(); err != nil {
					l.Failed.Add(1)
					t.Logf("call failed: %v", err)
				} else {
					l.OK.Add(1)
				}
			}
		}()
	}
	return l
}

// Stop ends the loop and waits for the calls in flight.
func (l *CallLoop) Stop() {
	close(l.stopc)
	l.wg.Wait()
}
