package daemon

import (
	"context"
	"errors"
	"io"
	"net/http"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/crishim/crishim/shim"
	"github.com/crishim/crishim/test/daemontest"
	"github.com/crishim/crishim/test/fakecri"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// rig is the shared test rig (test/daemontest) and what this package's
// tests add to it.
type rig struct{ *daemontest.Rig }

func newRig(t *testing.T) *rig { return &rig{daemontest.NewRig(t)} }

// loadValid loads the config file as crishim's serve command does (no
// flags), failing the test if it is not valid.
func loadValid(t *testing.T, config string) *Config {
	t.Helper()
	cfg, err := LoadConfig(config, false)
	if err != nil {
		t.Fatal(err)
	}
	if problems := cfg.Validate(); len(problems) > 0 {
		t.Fatal(InvalidConfig(config, problems))
	}
	return cfg
}

// serving is a crishim run by Run, as main does.
type serving struct {
	rc       runtimeapi.RuntimeServiceClient
	sigs     chan os.Signal // what main subscribes to the process's signals
	stopOnce sync.Once
	finished chan struct{}
	err      error // what Run returned, once finished is closed
}

// start runs crishim with the config file until stop or the end of the
// test, and returns once it answers calls.
func (r *rig) start(t *testing.T, config string, logs io.Writer) *serving {
	t.Helper()
	return r.startLoaded(t, loadValid(t, config), config, logs)
}

// startLoaded is start with the configuration already loaded from config.
func (r *rig) startLoaded(t *testing.T, cfg *Config, config string, logs io.Writer) *serving {
	t.Helper()
	ctx := context.Background()
	s := &serving{sigs: make(chan os.Signal, 8), finished: make(chan struct{})}
	go func() {
		s.err = Run(ctx, cfg, config, NewLogger(cfg.Log, logs), s.sigs)
		close(s.finished)
	}()
	t.Cleanup(func() {
		if err := s.stop(); err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	conn, err := grpc.NewClient("unix://"+r.Sock, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	s.rc = runtimeapi.NewRuntimeServiceClient(conn)
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, err := s.rc.Version(ctx, &runtimeapi.VersionRequest{})
		if err == nil {
			return s
		}
		if time.Now().After(deadline) {
			t.Fatalf("crishim never answered: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// signal delivers sig as main would.
func (s *serving) signal(sig os.Signal) { s.sigs <- sig }

// stop shuts crishim down with SIGTERM, once, and returns what Run
// returned.
func (s *serving) stop() error {
	s.stopOnce.Do(func() { s.signal(syscall.SIGTERM) })
	<-s.finished
	return s.err
}

// TestServeLifecycle runs crishim with Run as main does, in front of a fake runtime:
// it serves, reports ready, refuses a second instance on its socket, and on
// the shutdown signal lets an in-flight call finish, ends an open events
// stream with Unavailable, removes its socket and returns without error.
func TestServeLifecycle(t *testing.T) {
	r := newRig(t)
	fake, sock, metricsAddr := r.Fake, r.Sock, r.MetricsAddr
	cfg := daemontest.WriteConfig(t, strings.Replace(r.Base(), "metrics:\n", "metrics:\n  pprof: true\n", 1)+"shutdownGracePeriod: 20s\nlog:\n  format: json\n")
	logs := &daemontest.LockedBuffer{}
	srv := r.start(t, cfg, logs)
	rc := srv.rc
	if !strings.Contains(logs.String(), `"msg":"crishim serving"`) || !strings.Contains(logs.String(), sock) || !strings.Contains(logs.String(), fake.Endpoint()) {
		t.Errorf("startup line lacks listen/upstream: %s", logs)
	}
	resp, err := http.Get("http://" + metricsAddr + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Errorf("/readyz = %d", resp.StatusCode)
	}

	if resp, err := http.Get("http://" + metricsAddr + "/debug/pprof/cmdline"); err != nil || resp.StatusCode != 200 {
		t.Errorf("/debug/pprof/cmdline with pprof: true: %v %v", resp, err)
	} else {
		resp.Body.Close()
	}

	// A second crishim on the same socket refuses to start.
	second, none := loadValid(t, cfg), ""
	second.Metrics.Address = &none
	err = Run(context.Background(), second, cfg, NewLogger(second.Log, io.Discard), nil)
	if !errors.Is(err, shim.ErrSocketInUse) {
		t.Errorf("second instance: got %v, want ErrSocketInUse", err)
	}

	// An in-flight call and an open events stream when shutdown starts.
	fake.Script(runtimeapi.RuntimeService_StopContainer_FullMethodName, fakecri.Script{Delay: 700 * time.Millisecond})
	fake.Script(runtimeapi.RuntimeService_GetContainerEvents_FullMethodName, fakecri.Script{Hold: true})
	events, err := rc.GetContainerEvents(context.Background(), &runtimeapi.GetEventsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	stopErr := make(chan error, 1)
	go func() {
		_, err := rc.StopContainer(context.Background(), &runtimeapi.StopContainerRequest{ContainerId: "c1"})
		stopErr <- err
	}()
	for len(fake.Calls(runtimeapi.RuntimeService_StopContainer_FullMethodName)) == 0 || len(fake.Calls(runtimeapi.RuntimeService_GetContainerEvents_FullMethodName)) == 0 {
		time.Sleep(10 * time.Millisecond)
	}
	start := time.Now()
	stopErr2 := make(chan error, 1)
	go func() { stopErr2 <- srv.stop() }()
	if _, err := events.Recv(); status.Code(err) != codes.Unavailable {
		t.Errorf("events stream at shutdown: got %v, want Unavailable", err)
	}
	if err := <-stopErr; err != nil {
		t.Errorf("in-flight StopContainer during shutdown: %v", err)
	}
	if err := <-stopErr2; err != nil {
		t.Errorf("Run returned %v, want nil (exit 0)", err)
	}
	if took := time.Since(start); took > 10*time.Second {
		t.Errorf("shutdown took %v: the events stream held it", took)
	}
	if _, err := os.Stat(sock); !os.IsNotExist(err) {
		t.Errorf("socket left behind: %v", err)
	}
	if !strings.Contains(logs.String(), "crishim stopped") {
		t.Errorf("no stop line: %s", logs)
	}
}
