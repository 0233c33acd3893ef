package metrics

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/crishim/crishim/shim"
	"github.com/crishim/crishim/shim/frames"
)

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

	// series caches each method's series: a call then costs no label
	// hashing or vector lookups. Keyed by label values, which are bounded.
	series sync.Map // seriesKey -> *methodSeries
}

type seriesKey struct{ service, name string }

// methodSeries are one method's series. The handled counter of a code is
// created on first use, so codes never seen do not show up as zeros.
type methodSeries struct {
	inFlight prometheus.Gauge
	handling prometheus.Observer
	handled  [numCodes]atomic.Pointer[prometheus.Counter]

	handledVec    *prometheus.CounterVec
	service, name string
}

func (s *methodSeries) handledCounter(c codes.Code) prometheus.Counter {
	if int(c) >= numCodes {
		return s.handledVec.WithLabelValues(s.service, s.name, c.String())
	}
	if p := s.handled[c].Load(); p != nil {
		return *p
	}
	ctr := s.handledVec.WithLabelValues(s.service, s.name, c.String())
	s.handled[c].Store(&ctr)
	return ctr
}

// numCodes is the number of gRPC status codes (OK to Unauthenticated).
const numCodes = int(codes.Unauthenticated) + 1

// New creates the metrics and registers them with reg.
func New(reg prometheus.Registerer, methods *shim.Methods) (*Metrics, error) {
	labels := []string{"grpc_service", "grpc_method"}
	m := &Metrics{
		methods: methods,
		handled: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: shim.MetricsNamespace, Subsystem: "grpc_server", Name: "handled_total",
			Help: "CRI calls completed by crishim, by service, method and gRPC status code (the runtime's code for forwarded calls).",
		}, append(labels, "grpc_code")),
		handling: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: shim.MetricsNamespace, Subsystem: "grpc_server", Name: "handling_seconds",
			Help:    "Time from the start of a CRI call to its end at crishim, including the runtime's time.",
			Buckets: HandlingBuckets,
		}, labels),
		inFlight: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: shim.MetricsNamespace, Subsystem: "grpc_server", Name: "in_flight",
			Help: "CRI calls in progress, including open streams.",
		}, labels),
	}
	if err := shim.RegisterCollectors(reg, m.handled, m.handling, m.inFlight); err != nil {
		return nil, err
	}
	return m, nil
}

// UnaryServerInterceptor measures typed (intercepted) calls.
func (m *Metrics) UnaryServerInterceptor() grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		s, begin := m.start(info.FullMethod)
		resp, err := handler(ctx, req)
		m.done(s, begin, err)
		return resp, err
	}
}

// StreamServerInterceptor measures streaming calls.
func (m *Metrics) StreamServerInterceptor() grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		s, begin := m.start(info.FullMethod)
		err := handler(srv, ss)
		m.done(s, begin, err)
		return err
	}
}

// start and done are the one core both forms share.
func (m *Metrics) start(fullMethod string) (*methodSeries, time.Time) {
	s := m.seriesOf(m.methods.Lookup(fullMethod))
	s.inFlight.Inc()
	return s, time.Now()
}

func (m *Metrics) done(s *methodSeries, begin time.Time, err error) {
	s.handling.Observe(time.Since(begin).Seconds())
	s.inFlight.Dec()
	s.handledCounter(status.Code(err)).Inc()
}

func (m *Metrics) seriesOf(meth *shim.Method) *methodSeries {
	key := seriesKey{meth.Service, meth.Name}
	if s, ok := m.series.Load(key); ok {
		return s.(*methodSeries)
	}
	s := &methodSeries{
		inFlight:   m.inFlight.WithLabelValues(meth.Service, meth.Name),
		handling:   m.handling.WithLabelValues(meth.Service, meth.Name),
		handledVec: m.handled,
		service:    meth.Service,
		name:       meth.Name,
	}
	actual, _ := m.series.LoadOrStore(key, s)
	return actual.(*methodSeries)
}

// Begin implements frames.Observer: the frame router's passthrough calls
// count in the same series as the interceptors' calls.
func (m *Metrics) Begin(method string) frames.Call {
	s := m.seriesOf(m.methods.Lookup(method))
	s.inFlight.Inc()
	return s
}

// End implements frames.Call.
func (s *methodSeries) End(start time.Time, code codes.Code, _ string) {
	s.handling.Observe(time.Since(start).Seconds())
	s.inFlight.Dec()
	s.handledCounter(code).Inc()
}

var _ frames.Observer = (*Metrics)(nil)
