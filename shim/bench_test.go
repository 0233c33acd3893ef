package shim_test

import (
	"context"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/sirupsen/logrus"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/crishim/crishim/interceptors/logging"
	"github.com/crishim/crishim/interceptors/metrics"
	"github.com/crishim/crishim/shim"
	"github.com/crishim/crishim/shim/frames"
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

// BenchmarkObservers is what crishim's logging (at info) and metrics cost a
// passthrough call in the frame router: Begin, the first request message
// for ids where the method has them, End. Version carries no ids;
// ContainerStatus makes logging read the container id from the request.
func BenchmarkObservers(b *testing.B) {
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
			observers := []frames.Observer{logging.New(log, methods), m}
			req, _ := proto.Marshal(&runtimeapi.ContainerStatusRequest{ContainerId: "6f0c1d2e3f405162738495a6b7c8d9e0f1a2b3c4d5e6f708192a3b4c5d6e7f80"})
			var calls [2]frames.Call
			for b.Loop() {
				start := time.Now()
				for i, o := range observers {
					calls[i] = o.Begin(method)
					if mc, ok := calls[i].(frames.MessageCall); ok {
						mc.Message(true, req)
					}
				}
				for _, c := range calls {
					c.End(start, codes.OK, "")
				}
			}
		})
	}
}
