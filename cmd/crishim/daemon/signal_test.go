package daemon

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/crishim/crishim/test/daemontest"
	"github.com/crishim/crishim/test/fakecri"
)

// safetyTimeout bounds the waits of the signal tests: far beyond what the
// waits take, only there so a broken crishim fails the test instead of
// hanging it.
const safetyTimeout = time.Minute

// Log texts the signal tests synchronize on.
const (
	logShuttingDown = "shutting down: no new calls"
	logIgnored      = "no reload while shutting down"
	logSecondSignal = "second stop signal while shutting down"
)

// TestSignalsInProcess drives Run's signal handling through the channel
// main subscribes, without signalling the test process: SIGHUP reloads
// while serving and is ignored while draining, and a second SIGTERM cuts
// the drain short.
func TestSignalsInProcess(t *testing.T) {
	old := watchInterval
	watchInterval = time.Hour // reloads come from SIGHUP only
	defer func() { watchInterval = old }()
	r := newRig(t)
	path := filepath.Join(r.Dir, "config.yaml")
	if err := os.WriteFile(path, []byte(r.Base()+"shutdownGracePeriod: 1h\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	logs := &daemontest.LockedBuffer{}
	srv := r.start(t, path, logs)
	waitLog := func(text string, n int) {
		t.Helper()
		deadline := time.Now().Add(safetyTimeout)
		for strings.Count(logs.String(), text) < n {
			if time.Now().After(deadline) {
				t.Fatalf("no %d log lines with %q:\n%s", n, text, logs)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	srv.signal(syscall.SIGHUP)
	waitLog("configuration reloaded", 1)

	method := runtimeapi.RuntimeService_StopContainer_FullMethodName
	r.Fake.Script(method, fakecri.Script{Delay: time.Hour})
	callErr := make(chan error, 1)
	go func() {
		_, err := srv.rc.StopContainer(context.Background(), &runtimeapi.StopContainerRequest{ContainerId: "c"})
		callErr <- err
	}()
	for len(r.Fake.Calls(method)) == 0 {
		time.Sleep(10 * time.Millisecond)
	}
	srv.signal(syscall.SIGTERM)
	waitLog(logShuttingDown, 1)
	srv.signal(syscall.SIGHUP)
	waitLog(logIgnored, 1)
	srv.signal(syscall.SIGTERM)
	if err := srv.stop(); err != nil {
		t.Errorf("Run returned %v, want nil (exit 0)", err)
	}
	if err := <-callErr; status.Code(err) != codes.Unavailable {
		t.Errorf("call in flight when the grace period was cut: %v, want Unavailable", err)
	}
	if n := strings.Count(logs.String(), "configuration reloaded"); n != 1 {
		t.Errorf("%d reloads, want 1 (the SIGHUP while serving only)", n)
	}
	if !strings.Contains(logs.String(), logSecondSignal) {
		t.Errorf("no log of the second signal:\n%s", logs)
	}
}
