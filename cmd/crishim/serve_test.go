package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"go.uber.org/goleak"

	"github.com/crishim/crishim/shim"
	"github.com/crishim/crishim/test/fakecri"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func freePort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// rig is a fake runtime, with a socket path and a metrics address chosen
// for the crishim binary that a test runs. The daemon package's tests have
// their own, which also runs daemon.Run in process.
type rig struct {
	dir, sock, metricsAddr string
	fake                   *fakecri.Server
}

func newRig(t *testing.T) *rig {
	t.Helper()
	dir, err := os.MkdirTemp("", "cm") // short: unix socket paths are limited
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	fake, err := fakecri.Start(filepath.Join(dir, "up.sock"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(fake.Stop)
	return &rig{dir: dir, sock: filepath.Join(dir, "crishim.sock"), metricsAddr: freePort(t), fake: fake}
}

// base is the configuration every test starts from.
func (r *rig) base() string {
	return fmt.Sprintf("listen:\n  path: %s\nruntimeEndpoint: %s\nmetrics:\n  address: %s\n", r.sock, r.fake.Endpoint(), r.metricsAddr)
}

// callLoop calls from 4 goroutines, as a busy kubelet would, until stop.
type callLoop struct {
	ok, failed atomic.Int64
	stopc      chan struct{}
	wg         sync.WaitGroup
}

func startCallLoop(t *testing.T, call func() error) *callLoop {
	l := &callLoop{stopc: make(chan struct{})}
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
					l.failed.Add(1)
					t.Logf("call failed: %v", err)
				} else {
					l.ok.Add(1)
				}
			}
		}()
	}
	return l
}

// stop ends the loop and waits for the calls in flight.
func (l *callLoop) stop() {
	close(l.stopc)
	l.wg.Wait()
}

func TestServeRejectsBadConfigBeforeListening(t *testing.T) {
	dir := t.TempDir()
	sock := filepath.Join(dir, "s.sock")
	err := run(context.Background(), []string{"--listen", sock, "--log-level", "loud"}, io.Discard, io.Discard, nil)
	if err == nil || !strings.Contains(err.Error(), "log.level") {
		t.Fatalf("got %v", err)
	}
	if _, err := os.Stat(sock); !os.IsNotExist(err) {
		t.Errorf("socket created despite the bad config")
	}
}

func TestVersionCommand(t *testing.T) {
	var out bytes.Buffer
	if err := run(context.Background(), []string{"version"}, &out, io.Discard, nil); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(out.String(), "crishim "+shim.Version) {
		t.Errorf("version printed %q", out.String())
	}
}
