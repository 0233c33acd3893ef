// Package shimtest runs crishim's server core with typed handlers in front of
// a fake runtime (test/fakecri), over real unix sockets, for the tests of the
// feature packages under handlers/.
package shimtest

import (
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/sirupsen/logrus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/crishim/crishim/shim"
	"github.com/crishim/crishim/test/fakecri"
)

// Env is crishim with typed handlers in front of a fake runtime.
type Env struct {
	// Fake is the runtime.
	Fake *fakecri.Server
	// Reg is the registry the test's metrics were registered with.
	Reg *prometheus.Registry
	// Srv is crishim's server.
	Srv *shim.Server
	// RC and IC are CRI clients connected to crishim.
	RC runtimeapi.RuntimeServiceClient
	IC runtimeapi.ImageServiceClient
}

// Start starts a fake runtime, runs script on it (nil: none), then serves
// crishim with the handlers hs, chained per method in the order given.
// Everything stops at the end of the test.
func Start(t testing.TB, script func(f *fakecri.Server), reg *prometheus.Registry, hs ...shim.Handler) *Env {
	t.Helper()
	// short: unix socket paths are limited to 108 bytes
	dir, err := os.MkdirTemp("", "ch")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	fake, err := fakecri.Start(filepath.Join(dir, "up.sock"))
	if err != nil {
		t.Fatal(err)
	}
	if script != nil {
		script(fake)
	}
	e := &Env{Fake: fake, Reg: reg}
	e.Srv, err = shim.New(shim.Config{RuntimeEndpoint: fake.Endpoint()}, shim.WithHandlers(hs...))
	if err != nil {
		t.Fatal(err)
	}
	l, err := shim.Listen(filepath.Join(dir, "s.sock"), 0o600)
	if err != nil {
		t.Fatal(err)
	}
	go e.Srv.Serve(l)
	conn, err := grpc.NewClient("unix://"+filepath.Join(dir, "s.sock"), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	e.RC = runtimeapi.NewRuntimeServiceClient(conn)
	e.IC = runtimeapi.NewImageServiceClient(conn)
	t.Cleanup(func() {
		conn.Close()
		e.Srv.Close()
		fake.Stop()
	})
	return e
}

// DiscardLogger is a logger that writes nowhere.
func DiscardLogger() *logrus.Logger {
	log := logrus.New()
	log.SetOutput(io.Discard)
	return log
}
