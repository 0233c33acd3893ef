package shim

import (
	"context"
	"fmt"
	"net"
	"os"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/net/http2"
	"google.golang.org/grpc"

	"github.com/crishim/crishim/shim/frames"
)

// Defaults mirror the kubelet's own endpoints and limits.
const (
	// DefaultListenPath is where crishim serves the kubelet.
	DefaultListenPath = "/run/crishim/crishim.sock"
	// DefaultRuntimeEndpoint is containerd's CRI socket.
	DefaultRuntimeEndpoint = "unix:///run/containerd/containerd.sock"
	// DefaultSocketMode keeps the socket to root and its group.
	DefaultSocketMode os.FileMode = 0o660
	// DefaultMaxMessageSize is the 16 MiB that the kubelet's CRI client
	// receives and containerd accepts both ways.
	DefaultMaxMessageSize = 16 << 20
	// DefaultShutdownGracePeriod is how long in-flight calls may take to
	// finish after SIGTERM.
	DefaultShutdownGracePeriod = 30 * time.Second
	// DefaultReconnectBackoff caps the delay between reconnect attempts to
	// an upstream that went away.
	DefaultReconnectBackoff = time.Second
)

// Config is the server core's configuration.
type Config struct {
	// RuntimeEndpoint is the real runtime's CRI socket (unix:///path).
	RuntimeEndpoint string
	// ImageEndpoint is the image service socket; empty means RuntimeEndpoint.
	ImageEndpoint string
	// MaxMessageSize limits messages both ways, on the server and upstream.
	MaxMessageSize int
	// ReconnectBackoff caps upstream reconnect delays; zero means the default.
	ReconnectBackoff time.Duration
	// MaxConnections caps the client connections served at once, per
	// listener; further clients wait in the socket's backlog until one
	// closes. Zero means no limit (crishim's configuration sets one).
	MaxConnections int
	// MaxConcurrentStreams caps the calls in flight on one client
	// connection (HTTP/2 SETTINGS_MAX_CONCURRENT_STREAMS); a client's
	// further calls wait in the client until one ends. Zero means gRPC's
	// default, no limit.
	MaxConcurrentStreams uint32
}

// Option configures a Server.
type Option func(*options)

type options struct {
	methods   *Methods
	handlers  []Handler
	unary     []grpc.UnaryServerInterceptor
	stream    []grpc.StreamServerInterceptor
	observers []frames.Observer
}

// WithMethods makes the server use t as its method table, the one its
// interceptors classify calls with. By default the server builds its own.
func WithMethods(t *Methods) Option { return func(o *options) { o.methods = t } }

// WithHandlers registers typed handlers for the methods crishim intercepts.
func WithHandlers(h ...Handler) Option {
	return func(o *options) { o.handlers = append(o.handlers, h...) }
}

// WithInterceptors adds interceptors, outermost first, to the gRPC server of
// the intercepted methods: typed handlers see the unary ones, streaming
// handlers would see the stream ones. Passthrough calls never reach the gRPC
// server; WithObservers gives them logs and metrics.
func WithInterceptors(unary []grpc.UnaryServerInterceptor, stream []grpc.StreamServerInterceptor) Option {
	return func(o *options) {
		o.unary = append(o.unary, unary...)
		o.stream = append(o.stream, stream...)
	}
}

// Server is crishim's server: a frame router in front of the upstream
// runtime that forwards every call as HTTP/2 frames, the intercepted ones
// through a gRPC server of typed handlers.
type Server struct {
	grpc    *grpc.Server
	ups     *upstreams
	methods *Methods

	conns      *connections
	maxStreams uint32

	// The router serves the clients; the gRPC server only serves local's
	// in-process connections, which the router uses for intercepted calls.
	router       *frames.Router
	local        *localListener
	clientErrors *prometheus.CounterVec
}

// New connects (lazily, with retries) to the upstream endpoints and builds the
// server. It fails only on invalid configuration: a runtime that is down is
// waited for, never a reason to exit.
func New(cfg Config, opts ...Option) (*Server, error) {
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	if cfg.MaxMessageSize <= 0 {
		cfg.MaxMessageSize = DefaultMaxMessageSize
	}
	if cfg.ReconnectBackoff <= 0 {
		cfg.ReconnectBackoff = DefaultReconnectBackoff
	}
	if cfg.RuntimeEndpoint == "" {
		cfg.RuntimeEndpoint = DefaultRuntimeEndpoint
	}
	if cfg.MaxConnections < 0 {
		return nil, fmt.Errorf("max connections %d: must not be negative", cfg.MaxConnections)
	}
	ups, err := newUpstreams(cfg.RuntimeEndpoint, cfg.ImageEndpoint, dialOptions{maxMsgSize: cfg.MaxMessageSize, maxBackoff: cfg.ReconnectBackoff})
	if err != nil {
		return nil, err
	}
	methods := o.methods
	if methods == nil {
		methods = NewMethods()
	}
	descs, err := serviceDescs(o.handlers, methods, ups)
	if err != nil {
		ups.close()
		return nil, err
	}
	sopts := []grpc.ServerOption{
		grpc.MaxRecvMsgSize(cfg.MaxMessageSize),
		grpc.MaxSendMsgSize(cfg.MaxMessageSize),
		grpc.ChainUnaryInterceptor(o.unary...),
		grpc.ChainStreamInterceptor(o.stream...),
	}
	if cfg.MaxConcurrentStreams > 0 {
		sopts = append(sopts, grpc.MaxConcurrentStreams(cfg.MaxConcurrentStreams))
	}
	g := grpc.NewServer(sopts...)
	for _, sd := range descs {
		g.RegisterService(sd, struct{}{})
	}
	s := &Server{
		grpc: g, ups: ups, methods: methods,
		conns: newConnections(cfg.MaxConnections), maxStreams: cfg.MaxConcurrentStreams,
		local: newLocalListener(),
	}
	{
		s.clientErrors = prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: MetricsNamespace, Subsystem: "passthrough", Name: "client_errors_total",
			Help: "Client connections crishim ended for an HTTP/2 protocol violation or a flood, by the HTTP/2 error code it sent (ENHANCE_YOUR_CALM: rapid reset, CONTINUATION, PING or SETTINGS flood).",
		}, []string{"code"})
		// The codes a client's misbehaviour gets start at zero, so that
		// alerts on their rate see the series before the first one.
		for _, code := range []http2.ErrCode{http2.ErrCodeProtocol, http2.ErrCodeFlowControl, http2.ErrCodeFrameSize,
			http2.ErrCodeCompression, http2.ErrCodeEnhanceYourCalm} {
			s.clientErrors.WithLabelValues(code.String())
		}
		onErr := func(code http2.ErrCode) { s.clientErrors.WithLabelValues(code.String()).Inc() }
		if s.router, err = newFrameRouter(cfg, methods, o.handlers, o.observers, onErr, s.local); err != nil {
			ups.close()
			return nil, err
		}
	}
	go func() { _ = g.Serve(s.local) }()
	return s, nil
}

// Methods returns the server's method table.
func (s *Server) Methods() *Methods { return s.methods }

// Serve accepts connections on l until Shutdown or Stop, serving at most
// Config.MaxConnections of them at once.
func (s *Server) Serve(l net.Listener) error {
	stop := s.conns.reclaimer()
	defer stop()
	if err := s.router.Serve(s.conns.listener(l)); err != nil {
		return fmt.Errorf("serve %s: %w", l.Addr(), err)
	}
	return nil
}

// Shutdown stops accepting calls, ends open-ended watch streams (their
// clients reconnect), and waits for in-flight calls until ctx ends; then it
// cuts the remaining calls. It reports whether every call finished in time.
func (s *Server) Shutdown(ctx context.Context) bool {
	// Intercepted calls are router streams too: when the router is done,
	// so is the gRPC server behind it.
	ok := s.router.Shutdown(ctx)
	s.grpc.Stop()
	return ok
}

// Close stops the server at once and closes the upstream connections.
func (s *Server) Close() {
	s.router.Close()
	s.grpc.Stop()
	s.ups.close()
}

// Ready asks every upstream what the kubelet asks at start (Version,
// ImageFsInfo) and returns the first failure.
func (s *Server) Ready(ctx context.Context) error { return s.ups.check(ctx) }

// ClientConn returns the connection to an upstream, for handlers that need
// to ask the runtime something themselves (Status, ListPodSandbox).
func (s *Server) ClientConn(u Upstream) grpc.ClientConnInterface { return s.ups.get(u).conn }

// UpstreamStates reports, per upstream role, its endpoint and whether the
// connection is up.
func (s *Server) UpstreamStates() []UpstreamState {
	out := []UpstreamState{{Role: RuntimeUpstream, Endpoint: s.ups.runtime.endpoint, Up: s.ups.runtime.Ready()}}
	return append(out, UpstreamState{Role: ImageUpstream, Endpoint: s.ups.image.endpoint, Up: s.ups.image.Ready()})
}

// UpstreamState is the connection state of one upstream.
type UpstreamState struct {
	Role     Upstream
	Endpoint string
	Up       bool
}
