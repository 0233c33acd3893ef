package metrics

import (
	"context"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/crishim/crishim/shim"
)

func TestMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	m, err := New(reg, shim.NewMethods())
	if err != nil {
		t.Fatal(err)
	}
	unary := m.UnaryServerInterceptor()
	stream := m.StreamServerInterceptor()
	const ver = "/runtime.v1.RuntimeService/Version"
	for i := 0; i < 2; i++ {
		_, _ = unary(context.Background(), nil, &grpc.UnaryServerInfo{FullMethod: ver}, func(context.Context, any) (any, error) { return nil, nil })
	}
	var inFlightDuring float64
	_ = stream(nil, nil, &grpc.StreamServerInfo{FullMethod: "/runtime.v1.ImageService/PullImage"}, func(any, grpc.ServerStream) error {
		inFlightDuring = testutil.ToFloat64(m.inFlight.WithLabelValues("runtime.v1.ImageService", "PullImage"))
		return status.Error(codes.Unauthenticated, "401")
	})
	if inFlightDuring != 1 {
		t.Errorf("in_flight during the call = %v, want 1", inFlightDuring)
	}
	want := `
# HELP crishim_grpc_server_handled_total CRI calls completed by crishim, by service, method and gRPC status code (the runtime's code for forwarded calls).
# TYPE crishim_grpc_server_handled_total counter
crishim_grpc_server_handled_total{grpc_code="OK",grpc_method="Version",grpc_service="runtime.v1.RuntimeService"} 2
crishim_grpc_server_handled_total{grpc_code="Unauthenticated",grpc_method="PullImage",grpc_service="runtime.v1.ImageService"} 1
# HELP crishim_grpc_server_in_flight CRI calls in progress, including open streams.
# TYPE crishim_grpc_server_in_flight gauge
crishim_grpc_server_in_flight{grpc_method="PullImage",grpc_service="runtime.v1.ImageService"} 0
crishim_grpc_server_in_flight{grpc_method="Version",grpc_service="runtime.v1.RuntimeService"} 0
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "crishim_grpc_server_handled_total", "crishim_grpc_server_in_flight"); err != nil {
		t.Error(err)
	}
	if n := testutil.CollectAndCount(m.handling); n != 2 {
		t.Errorf("handling_seconds series = %d, want 2", n)
	}
	problems, err := testutil.GatherAndLint(reg)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("metric lint: %s: %s", p.Metric, p.Text)
	}
}

func TestRegisterTwiceFails(t *testing.T) {
	reg := prometheus.NewRegistry()
	if _, err := New(reg, shim.NewMethods()); err != nil {
		t.Fatal(err)
	}
	if _, err := New(reg, shim.NewMethods()); err == nil {
		t.Error("registering the metrics twice succeeded")
	}
}
