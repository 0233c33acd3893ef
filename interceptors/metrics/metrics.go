package metrics

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/status"

	"github.com/crishim/crishim/shim"
)

// Namespace prefixes every crishim metric.
const Namespace = "crishim"

// HandlingBuckets span CRI latencies: sub-millisecond Version and status
// calls, tens of milliseconds for container lifecycle, seconds for
// RunPodSandbox (CNI, pause image) and minutes for PullImage of a large image.
var HandlingBuckets = []float64{
	0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
	1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800,
}

// Metrics holds the gRPC server metrics.
type Metrics struct {
	methods  *shim.Methods
	handled  *prometheus.CounterVec
	handling *prometheus.HistogramVec
	inFlight *prometheus.GaugeVec
}

// New creates the metrics and registers them with reg.
func New(reg prometheus.Registerer, methods *shim.Methods) (*Metrics, error) {
	labels := []string{"grpc_service", "grpc_method"}
	m := &Metrics{
		methods: methods,
		handled: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: Namespace, Subsystem: "grpc_server", Name: "handled_total",
			Help: "CRI calls completed by crishim, by service, method and gRPC status code (the runtime's code for forwarded calls).",
		}, append(labels, "grpc_code")),
		handling: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: Namespace, Subsystem: "grpc_server", Name: "handling_seconds",
			Help:    "Time from the start of a CRI call to its end at crishim, including the runtime's time.",
			Buckets: HandlingBuckets,
		}, labels),
		inFlight: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: Namespace, Subsystem: "grpc_server", Name: "in_flight",
			Help: "CRI calls in progress, including open streams.",
		}, labels),
	}
	for _, c := range []prometheus.Collector{m.handled, m.handling, m.inFlight} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// UnaryServerInterceptor measures typed (intercepted) calls.
func (m *Metrics) UnaryServerInterceptor() grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		done := m.start(info.FullMethod)
		resp, err := handler(ctx, req)
		done(err)
		return resp, err
	}
}

// StreamServerInterceptor measures passthrough and streaming calls.
func (m *Metrics) StreamServerInterceptor() grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		done := m.start(info.FullMethod)
		err := handler(srv, ss)
		done(err)
		return err
	}
}

// start is the one core both forms share.
func (m *Metrics) start(fullMethod string) func(error) {
	meth := m.methods.Lookup(fullMethod)
	begin := time.Now()
	inFlight := m.inFlight.WithLabelValues(meth.Service, meth.Name)
	inFlight.Inc()
	return func(err error) {
		inFlight.Dec()
		m.handling.WithLabelValues(meth.Service, meth.Name).Observe(time.Since(begin).Seconds())
		m.handled.WithLabelValues(meth.Service, meth.Name, status.Code(err).String()).Inc()
	}
}
