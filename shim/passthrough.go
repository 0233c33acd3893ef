package shim

import (
	"context"
	"fmt"
	"net"
	"sync"

	"golang.org/x/net/http2"

	"github.com/crishim/crishim/shim/frames"
)

// Pools of the frame router.
const (
	runtimePool = iota
	imagePool
	localPool
)

// WithObservers adds observers of the calls the frame router forwards
// (passthrough calls in PassthroughFrames mode): metrics and logs, which
// the stream interceptors give passthrough calls in PassthroughGRPC mode.
func WithObservers(obs ...frames.Observer) Option {
	return func(o *options) { o.observers = append(o.observers, obs...) }
}

// Join makes one Option of several.
func Join(opts ...Option) Option {
	return func(o *options) {
		for _, opt := range opts {
			opt(o)
		}
	}
}

// newFrameRouter builds the frame router: runtime and image pools dialling
// the upstream sockets, and a local pool whose connections end in the gRPC
// server, for the methods with typed handlers.
func newFrameRouter(cfg Config, methods *Methods, handlers []Handler, observers []frames.Observer, onErr func(http2.ErrCode), local *localListener) (*frames.Router, error) {
	dial := func(endpoint string) (*frames.Pool, error) {
		path, err := ParseEndpoint(endpoint)
		if err != nil {
			return nil, err
		}
		return frames.NewPool(endpoint, func(ctx context.Context) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", path)
		}), nil
	}
	rt, err := dial(cfg.RuntimeEndpoint)
	if err != nil {
		return nil, err
	}
	img := rt
	if cfg.ImageEndpoint != "" && cfg.ImageEndpoint != cfg.RuntimeEndpoint {
		if img, err = dial(cfg.ImageEndpoint); err != nil {
			return nil, err
		}
	}
	intercepted := map[string]bool{}
	for _, h := range handlers {
		intercepted[h.method] = true
	}
	route := func(path string) frames.Route {
		if intercepted[path] {
			// The gRPC server's interceptors log and measure these.
			return frames.Route{Pool: localPool, Unobserved: true}
		}
		m := methods.Lookup(path)
		if m.Upstream == ImageUpstream {
			return frames.Route{Pool: imagePool, Watch: m.Watch}
		}
		return frames.Route{Pool: runtimePool, Watch: m.Watch}
	}
	opt := frames.Options{
		MaxConcurrentStreams: cfg.MaxConcurrentStreams,
		MaxMessageSize:       cfg.MaxMessageSize,
		Observers:            observers,
		OnClientError:        onErr,
	}
	if opt.MaxConcurrentStreams == 0 {
		opt.MaxConcurrentStreams = frames.Unlimited // gRPC's default
	}
	pools := []*frames.Pool{runtimePool: rt, imagePool: img, localPool: frames.NewPool("crishim", local.dial)}
	return frames.New(opt, pools, route), nil
}

// localListener hands the gRPC server its ends of the in-process
// connections the frame router dials for intercepted methods: socket pairs,
// so both ends are sockets the router writes to without a hand-off.
type localListener struct {
	conns chan net.Conn
	done  chan struct{}
	once  sync.Once
}

func newLocalListener() *localListener {
	return &localListener{conns: make(chan net.Conn), done: make(chan struct{})}
}

// Accept returns the next in-process connection.
func (l *localListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

// Close stops Accept.
func (l *localListener) Close() error {
	l.once.Do(func() { close(l.done) })
	return nil
}

// Addr names the in-process listener.
func (l *localListener) Addr() net.Addr { return localAddr{} }

type localAddr struct{}

func (localAddr) Network() string { return "unix" }
func (localAddr) String() string  { return "crishim-local" }

// dial makes a socket pair and hands one end to Accept.
func (l *localListener) dial(ctx context.Context) (net.Conn, error) {
	a, b, err := frames.SocketPair()
	if err != nil {
		return nil, fmt.Errorf("in-process connection to crishim's gRPC server: %w", err)
	}
	select {
	case l.conns <- a:
		return b, nil
	case <-l.done:
		err = net.ErrClosed
	case <-ctx.Done():
		err = ctx.Err()
	}
	a.Close()
	b.Close()
	return nil, err
}
