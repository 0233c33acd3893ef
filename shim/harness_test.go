package shim_test

import (
	"bytes"
	"context"
	"io"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/sirupsen/logrus"
	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/mem"
	internalapi "k8s.io/cri-api/pkg/apis"
	remote "k8s.io/cri-client/pkg"
	"k8s.io/klog/v2"

	"github.com/crishim/crishim/interceptors"
	"github.com/crishim/crishim/interceptors/metrics"
	"github.com/crishim/crishim/shim"
	"github.com/crishim/crishim/test/fakecri"
)

func TestMain(m *testing.M) {
	// cri-client logs every failed call through klog; the tests assert on
	// those failures themselves.
	klog.LogToStderr(false)
	klog.SetOutput(io.Discard)
	goleak.VerifyTestMain(m,
		// cri-client's otel and klog background workers are process-wide.
		goleak.IgnoreTopFunction("k8s.io/klog/v2.(*flushDaemon).run.func1"),
		goleak.IgnoreAnyFunction("go.opentelemetry.io/otel/sdk/metric.(*PeriodicReader).run"),
	)
}

// env is crishim in front of a fake runtime, both on short unix sockets.
type env struct {
	t    testing.TB
	dir  string
	fake *fakecri.Server
	srv  *shim.Server
	sock string
	reg  *prometheus.Registry
	logs *syncBuffer
	conn *grpc.ClientConn // raw client to crishim
}

type envOptions struct {
	handlers  []shim.Handler
	noFake    bool // start crishim with its upstream down
	extraOpts []shim.Option
	logLevel  logrus.Level
}

// shortDir returns a directory whose socket paths stay far below the 108-byte
// limit (t.TempDir paths embed the test name).
func shortDir(t testing.TB) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "cs")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

func newEnv(t testing.TB, o envOptions) *env {
	t.Helper()
	e := &env{t: t, dir: shortDir(t), reg: prometheus.NewRegistry(), logs: &syncBuffer{}}
	upPath := filepath.Join(e.dir, "up.sock")
	if !o.noFake {
		e.startFake()
	}
	log := logrus.New()
	log.SetOutput(e.logs)
	log.SetFormatter(&logrus.JSONFormatter{})
	log.SetLevel(logrus.InfoLevel)
	if o.logLevel != 0 {
		log.SetLevel(o.logLevel)
	}
	methods := shim.NewMethods()
	m, err := metrics.New(e.reg, methods)
	if err != nil {
		t.Fatal(err)
	}
	opts := append([]shim.Option{shim.WithMethods(methods), shim.WithHandlers(o.handlers...), interceptors.Chain(log, methods, m)}, o.extraOpts...)
	e.srv, err = shim.New(shim.Config{RuntimeEndpoint: "unix://" + upPath, ReconnectBackoff: 200 * time.Millisecond}, opts...)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.srv.RegisterMetrics(e.reg); err != nil {
		t.Fatal(err)
	}
	e.sock = filepath.Join(e.dir, "shim.sock")
	l, err := shim.Listen(e.sock, shim.DefaultSocketMode)
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan struct{})
	go func() {
		defer close(served)
		if err := e.srv.Serve(l); err != nil {
			t.Errorf("serve: %v", err)
		}
	}()
	e.conn, err = grpc.NewClient("unix://"+e.sock,
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(64<<20), grpc.MaxCallSendMsgSize(64<<20)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		e.conn.Close()
		e.srv.Close()
		<-served
		if e.fake != nil {
			e.fake.Stop()
		}
	})
	return e
}

func (e *env) startFake() {
	e.t.Helper()
	f, err := fakecri.Start(filepath.Join(e.dir, "up.sock"))
	if err != nil {
		e.t.Fatal(err)
	}
	e.fake = f
}

// runtimeClient is the kubelet's own CRI client, connected through crishim.
func (e *env) runtimeClient() internalapi.RuntimeService {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	rs, err := remote.NewRemoteRuntimeServiceBuilder().WithEndpoint("unix://" + e.sock).
		WithConnectionTimeout(10 * time.Second).WithTracerProvider(nil).Build(ctx)
	if err != nil {
		e.t.Fatalf("kubelet runtime client through crishim: %v", err)
	}
	e.t.Cleanup(func() { rs.Close(context.Background()) })
	return rs
}

func (e *env) imageClient() internalapi.ImageManagerService {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	is, err := remote.NewRemoteImageServiceBuilder().WithEndpoint("unix://" + e.sock).
		WithConnectionTimeout(10 * time.Second).WithTracerProvider(nil).Build(ctx)
	if err != nil {
		e.t.Fatalf("kubelet image client through crishim: %v", err)
	}
	e.t.Cleanup(func() { is.Close(context.Background()) })
	return is
}

// rawMsg is a message kept as bytes on the test client's side.
type rawMsg struct{ b []byte }

type rawCodec struct{}

func (rawCodec) Marshal(v any) (mem.BufferSlice, error) {
	return mem.BufferSlice{mem.SliceBuffer(v.(*rawMsg).b)}, nil
}

func (rawCodec) Unmarshal(data mem.BufferSlice, v any) error {
	v.(*rawMsg).b = data.Materialize()
	return nil
}

func (rawCodec) Name() string { return "proto" }

var rawCall = grpc.ForceCodecV2(rawCodec{})

// syncBuffer collects log output written from many goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// waitFor polls cond until it holds or the timeout passes.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
