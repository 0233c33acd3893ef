package shim

import (
	"context"
	"fmt"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"golang.org/x/net/http2"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/crishim/crishim/test/fakecri"
)

// serveLimited serves a Server with cfg's limits in front of a fake runtime
// and returns it and its socket.
func serveLimited(t *testing.T, cfg Config) (*Server, string) {
	t.Helper()
	dir := shortTempDir(t)
	fake, err := fakecri.Start(filepath.Join(dir, "up.sock"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(fake.Stop)
	cfg.RuntimeEndpoint = fake.Endpoint()
	srv, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(dir, "s.sock")
	l, err := Listen(sock, DefaultSocketMode)
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan struct{})
	go func() {
		defer close(served)
		if err := srv.Serve(l); err != nil {
			t.Errorf("serve: %v", err)
		}
	}()
	t.Cleanup(func() {
		srv.Close()
		<-served
	})
	return srv, sock
}

// dialPreface connects and sends what a gRPC client sends first: the HTTP/2
// preface and an empty SETTINGS frame.
func dialPreface(t *testing.T, sock string) net.Conn {
	t.Helper()
	c, err := net.Dial("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if _, err := c.Write([]byte(http2.ClientPreface)); err != nil {
		t.Fatal(err)
	}
	if err := http2.NewFramer(c, nil).WriteSettings(); err != nil {
		t.Fatal(err)
	}
	return c
}

// readSettings reads the server's first frame, its SETTINGS, from c.
func readSettings(t *testing.T, c net.Conn) *http2.SettingsFrame {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	f, err := http2.NewFramer(nil, c).ReadFrame()
	if err != nil {
		t.Fatalf("no frame from the server: %v", err)
	}
	sf, ok := f.(*http2.SettingsFrame)
	if !ok {
		t.Fatalf("first frame %v, want SETTINGS", f)
	}
	return sf
}

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestMaxConnections: connections beyond the limit wait unserved until
// served ones close, the open count never exceeds the limit, and the
// metrics report both.
func TestMaxConnections(t *testing.T) {
	const limit = 3
	srv, sock := serveLimited(t, Config{MaxConnections: limit})
	reg := prometheus.NewRegistry()
	if err := srv.RegisterConnectionMetrics(reg); err != nil {
		t.Fatal(err)
	}
	var conns []net.Conn
	for range 3 * limit {
		conns = append(conns, dialPreface(t, sock))
		if n := srv.OpenConnections(); n > limit {
			t.Fatalf("%d connections open, limit %d", n, limit)
		}
	}
	waitUntil(t, "the limit to be reached", func() bool { return srv.OpenConnections() == limit })
	// The backlog is first in, first out: the first connections are served
	// and get the server's SETTINGS.
	for i := range limit {
		readSettings(t, conns[i])
	}
	want := `
# HELP crishim_server_connections_limit Client connections served at once at most (listen.maxConnections); 0 means no limit.
# TYPE crishim_server_connections_limit gauge
crishim_server_connections_limit 3
# HELP crishim_server_connections_open Client connections being served now; at connections_limit, further clients wait in the socket's backlog.
# TYPE crishim_server_connections_open gauge
crishim_server_connections_open 3
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "crishim_server_connections_open", "crishim_server_connections_limit"); err != nil {
		t.Error(err)
	}
	// Closing a served connection lets the first waiting one in.
	conns[0].Close()
	readSettings(t, conns[limit])
	for _, c := range conns {
		c.Close()
		if n := srv.OpenConnections(); n > limit {
			t.Fatalf("%d connections open, limit %d", n, limit)
		}
	}
	waitUntil(t, "every connection to close", func() bool { return srv.OpenConnections() == 0 })

	// A well-behaved client is served afterwards.
	conn, err := grpc.NewClient("unix://"+sock, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := runtimeapi.NewRuntimeServiceClient(conn).Version(ctx, &runtimeapi.VersionRequest{}); err != nil {
		t.Fatalf("client after the others closed: %v", err)
	}
}

// TestMaxConcurrentStreams reads the limit the server announces in its
// SETTINGS frame, which is what makes a client queue calls beyond it.
func TestMaxConcurrentStreams(t *testing.T) {
	tests := []struct {
		limit   uint32
		present bool // gRPC announces no limit by leaving the setting out
	}{
		{0, false},
		{100, true},
		{1000, true},
	}
	for _, tc := range tests {
		t.Run(fmt.Sprint(tc.limit), func(t *testing.T) {
			srv, sock := serveLimited(t, Config{MaxConcurrentStreams: tc.limit})
			got, present := readSettings(t, dialPreface(t, sock)).Value(http2.SettingMaxConcurrentStreams)
			if present != tc.present || (present && got != tc.limit) {
				t.Errorf("SETTINGS_MAX_CONCURRENT_STREAMS = %d (present %v), want %d (present %v)", got, present, tc.limit, tc.present)
			}
			reg := prometheus.NewRegistry()
			if err := srv.RegisterConnectionMetrics(reg); err != nil {
				t.Fatal(err)
			}
			mfs, err := reg.Gather()
			if err != nil {
				t.Fatal(err)
			}
			for _, mf := range mfs {
				if mf.GetName() == "crishim_server_streams_per_connection_limit" && mf.GetMetric()[0].GetGauge().GetValue() != float64(tc.limit) {
					t.Errorf("%s = %v, want %d", mf.GetName(), mf.GetMetric()[0].GetGauge().GetValue(), tc.limit)
				}
			}
		})
	}
}

func TestNegativeMaxConnectionsRefused(t *testing.T) {
	if _, err := New(Config{RuntimeEndpoint: "unix:///run/x.sock", MaxConnections: -1}); err == nil {
		t.Error("New accepted MaxConnections -1")
	}
}

// TestStormOver decides when the open count has fallen back from a storm.
func TestStormOver(t *testing.T) {
	tests := []struct {
		peak, open int64
		want       bool
	}{
		{0, 0, false},
		{5, 0, false},                                 // a kubelet's handful is no storm
		{reclaimMinPeak - 1, 0, false},                // nor just below the threshold
		{reclaimMinPeak, 0, true},                     // a storm, all closed
		{reclaimMinPeak, reclaimMinPeak / 4, true},    // a quarter left
		{reclaimMinPeak, reclaimMinPeak/4 + 1, false}, // still going
		{10000, 2, true},
		{10000, 9000, false},
	}
	for _, tc := range tests {
		c := newConnections(0)
		c.peak.Store(tc.peak)
		c.open.Store(tc.open)
		if got := c.stormOver(); got != tc.want {
			t.Errorf("peak %d, open %d: stormOver %v, want %v", tc.peak, tc.open, got, tc.want)
		}
	}
}

// TestReclaimAfterStorm: connections opening and closing in a storm lead to
// one reclaim once they are closed, and the peak starts over.
func TestReclaimAfterStorm(t *testing.T) {
	c := newConnections(0)
	stop := c.reclaimer()
	defer stop()
	for range 2 * reclaimMinPeak {
		c.opened()
	}
	for range 2 * reclaimMinPeak {
		c.closed()
	}
	waitUntil(t, "a reclaim", func() bool { return c.reclaims.Load() == 1 })
	if p := c.peak.Load(); p != 0 {
		t.Errorf("peak after the reclaim = %d, want 0", p)
	}
}
