package shim_test

import (
	"context"
	"io"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/sirupsen/logrus"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/crishim/crishim/interceptors/logging"
	"github.com/crishim/crishim/interceptors/metrics"
	"github.com/crishim/crishim/interceptors/recovery"
	"github.com/crishim/crishim/shim"
)

func BenchmarkMethodLookup(b *testing.B) {
	tab := shim.NewMethods()
	for b.Loop() {
		_ = tab.Lookup(runtimeapi.RuntimeService_ListContainers_FullMethodName)
	}
}

// BenchmarkVersionThroughCrishim is one tiny unary call through crishim (all
// interceptors on) to an in-process fake runtime, over unix sockets.
func BenchmarkVersionThroughCrishim(b *testing.B) {
	e := newEnv(b, envOptions{})
	ctx := context.Background()
	for b.Loop() {
		if err := e.conn.Invoke(ctx, runtimeapi.RuntimeService_Version_FullMethodName, &rawMsg{}, &rawMsg{}, rawCall); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkStreamChain is crishim's interceptor chain as passthrough calls
// see it (recovery, logging at info, metrics, recovery), around a handler
// that only receives the request: the chain's own cost per call. Version
// carries no ids; ContainerStatus makes logging read the container id from
// the raw request.
func BenchmarkStreamChain(b *testing.B) {
	for _, method := range []string{
		runtimeapi.RuntimeService_Version_FullMethodName,
		runtimeapi.RuntimeService_ContainerStatus_FullMethodName,
	} {
		b.Run(method[strings.LastIndex(method, "/")+1:], func(b *testing.B) {
			methods := shim.NewMethods()
			log := logrus.New()
			log.SetOutput(io.Discard)
			m, err := metrics.New(prometheus.NewRegistry(), methods)
			if err != nil {
				b.Fatal(err)
			}
			lg := logging.New(log, methods)
			rec := recovery.StreamServerInterceptor(recovery.WithLogger(log))
			chain := []grpc.StreamServerInterceptor{rec, lg.StreamServerInterceptor(), m.StreamServerInterceptor(), rec}
			handler := func(_ any, ss grpc.ServerStream) error { return ss.RecvMsg(new(shim.Frame)) }
			for i := len(chain) - 1; i >= 0; i-- {
				next, ic := handler, chain[i]
				info := &grpc.StreamServerInfo{FullMethod: method}
				handler = func(srv any, ss grpc.ServerStream) error { return ic(srv, ss, info, next) }
			}
			req, _ := proto.Marshal(&runtimeapi.ContainerStatusRequest{ContainerId: "6f0c1d2e3f405162738495a6b7c8d9e0f1a2b3c4d5e6f708192a3b4c5d6e7f80"})
			ss := &benchStream{ctx: context.Background(), req: req}
			for b.Loop() {
				if err := handler(nil, ss); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// benchStream is a server stream whose one request is req.
type benchStream struct {
	grpc.ServerStream
	ctx context.Context
	req []byte
}

func (s *benchStream) Context() context.Context { return s.ctx }

func (s *benchStream) RecvMsg(m any) error {
	*m.(*shim.Frame) = *shim.NewFrame(s.req)
	return nil
}
