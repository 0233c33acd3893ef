// Package frames is crishim's passthrough: an HTTP/2 frame router that
// forwards the gRPC calls crishim does not intercept without terminating
// gRPC.
//
// It speaks HTTP/2 (golang.org/x/net/http2's Framer and hpack) with each
// client and with each upstream, reads :path from a new stream's HEADERS,
// picks an upstream pool by method, and forwards the stream's frames: header
// blocks decoded and re-encoded per connection (HPACK state is per
// connection), DATA payloads copied as they are, trailers and RST_STREAM
// mapped. SETTINGS, PING and flow control are hop by hop, so the router
// answers them itself. Intercepted methods are routed the same way, to a pool
// whose connections end in crishim's own gRPC server.
//
// Flow control bounds what the router holds. A stream's window toward the
// sender is returned only once its bytes were handed to the other
// connection, so a stream buffers at most one window. The connection window
// is returned on receipt while the router's total buffer is below
// Options.MaxBuffered, so a client that stops reading stalls only its own
// streams, not the upstream connection it shares with others; above the
// budget, connection credit too waits for forwarding (backpressure).
//
// Every connection has one reader goroutine, which handles what it reads and
// writes to the other connections' output buffers under their locks (never
// two locks at once), then flushes them with one non-blocking write each.
// What a socket does not take goes to that connection's writer goroutine,
// so a reader never blocks on a slow peer.
package frames

import (
	"context"
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/net/http2"
	"google.golang.org/grpc/codes"
)

// Defaults of Options.
const (
	// DefaultStreamWindow is the receive window per stream: the most one
	// stream buffers toward a slow reader.
	DefaultStreamWindow = 1 << 20
	// DefaultConnWindow is the receive window per connection.
	DefaultConnWindow = 4 << 20
	// DefaultMaxBuffered is the router's buffer budget across connections.
	DefaultMaxBuffered = 64 << 20
	// DefaultMaxConcurrentStreams is advertised to clients and enforced.
	DefaultMaxConcurrentStreams = 1000
	// DefaultMaxHeaderListSize bounds a header block, as gRPC-go's 16 KiB
	// default would refuse the kubelet's largest metadata nowhere near.
	DefaultMaxHeaderListSize = 1 << 20
	// DefaultHandshakeTimeout is how long a client may take to send the
	// connection preface.
	DefaultHandshakeTimeout = 10 * time.Second
	// DefaultMaxResets is how many streams a client may reset per second
	// before the router tells it to calm down (HTTP/2 rapid reset,
	// CVE-2023-44487).
	DefaultMaxResets = 1000
	// DefaultMaxUpstreamConns caps the connections per upstream pool; more
	// open only when the upstream's own stream limit is reached.
	DefaultMaxUpstreamConns = 16
)

// Options are the router's HTTP/2 parameters.
type Options struct {
	// StreamWindow and ConnWindow are the receive windows the router
	// advertises, to clients and upstreams alike.
	StreamWindow int32
	ConnWindow   int32
	// MaxBuffered is the buffer budget in bytes; see the package comment.
	MaxBuffered int64
	// MaxConcurrentStreams is advertised to clients and enforced; zero
	// means DefaultMaxConcurrentStreams, Unlimited none (not advertised).
	MaxConcurrentStreams uint32
	// MaxHeaderListSize is advertised and enforced both ways.
	MaxHeaderListSize uint32
	// MaxMessageSize, when positive, ends a gRPC call (content-type
	// application/grpc) whose message, either way, is larger with
	// ResourceExhausted, as gRPC's receive limits do.
	MaxMessageSize int
	// HandshakeTimeout bounds the wait for a client's preface.
	HandshakeTimeout time.Duration
	// MaxResetsPerSecond bounds the streams a client may reset.
	MaxResetsPerSecond int
	// MaxUpstreamConns caps each pool's connections.
	MaxUpstreamConns int
	// ReadBuffer is each connection's read buffer size.
	ReadBuffer int
	// Observers are told of every call the router forwards.
	Observers []Observer
	// OnClientError, when set, is told of each client connection the
	// router ended for a protocol violation or a flood, with the HTTP/2
	// error code of its GOAWAY.
	OnClientError func(code http2.ErrCode)
}

func (o *Options) defaults() {
	orDefault(&o.StreamWindow, DefaultStreamWindow)
	orDefault(&o.ConnWindow, DefaultConnWindow)
	orDefault(&o.MaxBuffered, DefaultMaxBuffered)
	orDefault(&o.MaxConcurrentStreams, DefaultMaxConcurrentStreams)
	orDefault(&o.MaxHeaderListSize, DefaultMaxHeaderListSize)
	orDefault(&o.HandshakeTimeout, DefaultHandshakeTimeout)
	orDefault(&o.MaxResetsPerSecond, DefaultMaxResets)
	orDefault(&o.MaxUpstreamConns, DefaultMaxUpstreamConns)
	orDefault(&o.ReadBuffer, 64<<10)
	if len(o.Observers) > maxObservers {
		o.Observers = o.Observers[:maxObservers]
	}
}

// Unlimited as Options.MaxConcurrentStreams sets no stream limit.
const Unlimited = 1<<32 - 1

// orDefault sets *v to d when it is not positive (zero for unsigned).
func orDefault[T int | int32 | int64 | uint32 | time.Duration](v *T, d T) {
	if *v <= 0 {
		*v = d
	}
}

// Observer is told of each call the router forwards, for metrics and logs.
type Observer interface {
	// Begin is called when a call's request headers arrive. The Call it
	// returns is ended exactly once.
	Begin(method string) Call
}

// Call is one observed call.
type Call interface {
	// End reports how the call ended: the gRPC status from the trailers
	// (Canceled when it was reset before trailers), and its message.
	End(start time.Time, code codes.Code, msg string)
}

const maxObservers = 4

// Route is where a call goes.
type Route struct {
	// Pool indexes the router's pools.
	Pool int
	// Watch marks an open-ended stream that ends when the router drains,
	// telling its client to reconnect.
	Watch bool
	// Unobserved calls are not reported to the observers (their pool's
	// server reports them).
	Unobserved bool
}

// Router routes client streams to upstream pools.
type Router struct {
	opt   Options
	pools []*Pool
	route func(path string) Route

	buffered atomic.Int64 // bytes queued across the router

	mu        sync.Mutex
	listeners map[net.Listener]struct{}
	clients   map[*conn]struct{}
	draining  bool
	closed    bool
	idle      chan struct{} // signalled when a client connection goes
}

// New returns a router; route maps a :path to its route.
func New(opt Options, pools []*Pool, route func(path string) Route) *Router {
	opt.defaults()
	r := &Router{
		opt: opt, pools: pools, route: route,
		listeners: map[net.Listener]struct{}{},
		clients:   map[*conn]struct{}{},
		idle:      make(chan struct{}, 1),
	}
	for _, p := range pools {
		p.r = r
	}
	return r
}

// ErrClosed is returned by Serve once the router is shut down.
var ErrClosed = errors.New("frame router closed")

// Serve accepts client connections on l until Shutdown or Close, which
// make it return nil.
func (r *Router) Serve(l net.Listener) error {
	r.mu.Lock()
	if r.closed || r.draining {
		r.mu.Unlock()
		l.Close()
		return nil
	}
	r.listeners[l] = struct{}{}
	r.mu.Unlock()
	defer func() {
		r.mu.Lock()
		delete(r.listeners, l)
		r.mu.Unlock()
	}()
	var delay time.Duration
	for {
		nc, err := l.Accept()
		if err != nil {
			r.mu.Lock()
			stopping := r.closed || r.draining
			r.mu.Unlock()
			if stopping {
				return nil
			}
			if temporaryAcceptError(err) {
				// Out of descriptors or memory for a moment: existing
				// connections go on, and accepting resumes, as gRPC's
				// and net/http's servers do.
				delay = min(max(2*delay, 5*time.Millisecond), time.Second)
				time.Sleep(delay)
				continue
			}
			return err
		}
		delay = 0
		go r.ServeConn(nc)
	}
}

// temporaryAcceptError reports an accept error that passes.
func temporaryAcceptError(err error) bool {
	for _, e := range []error{syscall.EMFILE, syscall.ENFILE, syscall.ENOBUFS, syscall.ENOMEM, syscall.ECONNABORTED, syscall.EINTR} {
		if errors.Is(err, e) {
			return true
		}
	}
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// ServeConn serves one client connection until it ends.
func (r *Router) ServeConn(nc net.Conn) {
	c := newConn(r, nc, true)
	r.mu.Lock()
	if r.closed || r.draining {
		r.mu.Unlock()
		nc.Close()
		c.stopWriter()
		return
	}
	r.clients[c] = struct{}{}
	r.mu.Unlock()
	c.serveClient()
	r.mu.Lock()
	delete(r.clients, c)
	r.mu.Unlock()
	select {
	case r.idle <- struct{}{}:
	default:
	}
}

// Shutdown stops accepting connections and streams, tells every client so
// (GOAWAY), ends watch streams with Unavailable (their clients reconnect),
// and waits until the other streams finish or ctx ends; then it closes every
// connection. It reports whether every stream finished in time.
func (r *Router) Shutdown(ctx context.Context) bool {
	for _, c := range r.stop(&r.draining) {
		c.drain()
	}
	done := true
	for {
		r.mu.Lock()
		n := len(r.clients)
		r.mu.Unlock()
		if n == 0 {
			break
		}
		select {
		case <-r.idle:
		case <-ctx.Done():
			done = false
		case <-time.After(50 * time.Millisecond):
			// Connections whose last stream ended close themselves; poll
			// for the ones a peer keeps open without streams.
			r.mu.Lock()
			for c := range r.clients {
				c.closeIfIdle()
			}
			r.mu.Unlock()
		}
		if !done {
			break
		}
	}
	r.Close()
	return done
}

// Close closes every listener and connection at once.
func (r *Router) Close() {
	for _, c := range r.stop(&r.closed) {
		c.abort()
	}
	for _, p := range r.pools {
		p.close()
	}
}

// stop sets flag (draining or closed), closes the listeners, and returns
// the client connections open at that moment.
func (r *Router) stop(flag *bool) []*conn {
	r.mu.Lock()
	defer r.mu.Unlock()
	*flag = true
	for l := range r.listeners {
		l.Close()
	}
	return r.clientsLocked()
}

// clientsLocked returns the open client connections. r.mu held.
func (r *Router) clientsLocked() []*conn {
	clients := make([]*conn, 0, len(r.clients))
	for c := range r.clients {
		clients = append(clients, c)
	}
	return clients
}

// Stats are the router's current figures, for metrics and tests.
type Stats struct {
	// Clients is the number of open client connections.
	Clients int
	// Streams is the number of open client streams.
	Streams int
	// Buffered is the bytes queued toward slow readers.
	Buffered int64
	// Upstreams is the number of open upstream connections.
	Upstreams int
}

// Stats returns the router's current figures.
func (r *Router) Stats() Stats {
	r.mu.Lock()
	st := Stats{Clients: len(r.clients), Buffered: r.buffered.Load()}
	clients := r.clientsLocked()
	r.mu.Unlock()
	for _, c := range clients {
		c.mu.Lock()
		st.Streams += c.active
		c.mu.Unlock()
	}
	for _, p := range r.pools {
		p.mu.Lock()
		st.Upstreams += len(p.conns)
		p.mu.Unlock()
	}
	return st
}

// MessageCall is a Call that wants the first message each way (for the ids
// logs name), when the first DATA frame of its direction holds it whole and
// uncompressed.
type MessageCall interface {
	Call
	// Message gets the message's bytes, valid during the call only.
	Message(request bool, msg []byte)
}
