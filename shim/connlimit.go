package shim

import (
	"errors"
	"net"
	"runtime"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Memory reclaim after a connection storm. Every served connection costs
// crishim about 40 KiB of buffers and goroutine stacks, and when a storm
// ends, the connections that waited in the backlog are accepted and closed
// in turn, which briefly costs more. All of it is garbage once they close,
// but an idle crishim allocates so little that the next collection comes
// only from the runtime's forced one every two minutes, and the background
// scavenger then returns pages to the OS slowly: measured with the default
// limit of 256 after 10,000 connections, RSS stayed at 61 MiB (idle: 24
// MiB) for two minutes and was still 52 MiB after three. So once the open
// count has fallen back from a storm's peak and accepting has paused,
// crishim collects and returns the free memory at once (debug.FreeOSMemory,
// a few milliseconds for its small heap): RSS was back at 26 to 28 MiB.
// It does so at most once per reclaimInterval, so that connection churn
// cannot make it a steady cost.
const (
	// reclaimMinPeak is the peak of open connections that counts as a
	// storm: far above the handful a kubelet keeps open.
	reclaimMinPeak = 64
	// reclaimSettle is how long accepting must pause (the backlog drained)
	// before a reclaim.
	reclaimSettle = time.Second
	// reclaimInterval rate-limits the reclaims, and bounds the wait for
	// accepting to pause.
	reclaimInterval = 10 * time.Second
)

// connections counts a server's open client connections, caps them per
// listener and reclaims memory after a storm of them.
type connections struct {
	limit int // per listener; 0: no cap

	open     atomic.Int64
	accepted atomic.Int64
	peak     atomic.Int64 // the highest open count since the last reclaim
	reclaims atomic.Int64
	kick     chan struct{} // a storm may be over: check and reclaim
}

func newConnections(limit int) *connections {
	return &connections{limit: limit, kick: make(chan struct{}, 1)}
}

// listener wraps l: with a limit, at most limit connections are accepted at
// once and the rest wait in the socket's backlog (netutil.LimitListener
// stops calling accept), so a storm costs kernel socket buffers, not
// crishim's memory; every accepted connection is counted until it closes.
func (c *connections) listener(l net.Listener) net.Listener {
	cl := &countingListener{Listener: l, c: c, done: make(chan struct{})}
	if c.limit > 0 {
		cl.slots = make(chan struct{}, c.limit)
	}
	return cl
}

func (c *connections) opened() {
	c.accepted.Add(1)
	n := c.open.Add(1)
	for {
		p := c.peak.Load()
		if n <= p || c.peak.CompareAndSwap(p, n) {
			return
		}
	}
}

func (c *connections) closed() {
	c.open.Add(-1)
	if c.stormOver() {
		select {
		case c.kick <- struct{}{}:
		default: // a check is pending already
		}
	}
}

// stormOver reports whether the open count fell to a quarter of a peak that
// was a storm.
func (c *connections) stormOver() bool {
	p := c.peak.Load()
	return p >= reclaimMinPeak && c.open.Load() <= p/4
}

// reclaimer returns memory to the OS after storms until stop is called.
func (c *connections) reclaimer() (stop func()) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		sleep := func(d time.Duration) bool {
			t := time.NewTimer(d)
			defer t.Stop()
			select {
			case <-done:
				return false
			case <-t.C:
				return true
			}
		}
		var last time.Time
		for {
			select {
			case <-done:
				return
			case <-c.kick:
			}
			if wait := reclaimInterval - time.Since(last); !last.IsZero() && wait > 0 && !sleep(wait) {
				return
			}
			for deadline := time.Now().Add(reclaimInterval); time.Now().Before(deadline); {
				n := c.accepted.Load()
				if !sleep(reclaimSettle) {
					return
				}
				if c.accepted.Load() == n {
					break
				}
			}
			if !c.stormOver() {
				continue
			}
			// Reset first: a new storm while collecting raises it again.
			c.peak.Store(c.open.Load())
			// Two collections: the first only moves what sync.Pools hold
			// (gRPC's buffer pools, full of the storm's buffers) to their
			// victim caches; the second, in FreeOSMemory, frees it.
			runtime.GC()
			debug.FreeOSMemory()
			c.reclaims.Add(1)
			last = time.Now()
		}
	}()
	return func() { close(done); wg.Wait() }
}

// countingListener counts accepted connections and, with a limit, stops
// calling accept while limit connections are open (as x/net's
// netutil.LimitListener, whose wrapped connections would hide the socket
// from the frame router's direct writes).
type countingListener struct {
	net.Listener
	c     *connections
	slots chan struct{} // nil: no limit
	done  chan struct{}
	once  sync.Once
}

func (l *countingListener) Accept() (net.Conn, error) {
	if l.slots != nil {
		select {
		case l.slots <- struct{}{}:
		case <-l.done:
			return nil, net.ErrClosed
		}
	}
	conn, err := l.Listener.Accept()
	if err != nil {
		l.release()
		return nil, err
	}
	l.c.opened()
	return &countedConn{Conn: conn, l: l}, nil
}

func (l *countingListener) release() {
	if l.slots != nil {
		<-l.slots
	}
}

func (l *countingListener) Close() error {
	l.once.Do(func() { close(l.done) })
	return l.Listener.Close()
}

type countedConn struct {
	net.Conn
	once sync.Once
	l    *countingListener
}

// SyscallConn exposes the socket, so the frame router can write to it
// without a hand-off to a writer goroutine.
func (c *countedConn) SyscallConn() (syscall.RawConn, error) {
	sc, ok := c.Conn.(syscall.Conn)
	if !ok {
		return nil, errNotSocket
	}
	return sc.SyscallConn()
}

var errNotSocket = errors.New("not a socket")

func (c *countedConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() {
		c.l.c.closed()
		c.l.release()
	})
	return err
}

// OpenConnections returns the number of client connections being served.
func (s *Server) OpenConnections() int { return int(s.conns.open.Load()) }

// RegisterConnectionMetrics registers the client connection metrics: the
// open count, the limits, and how often memory was reclaimed after a storm.
func (s *Server) RegisterConnectionMetrics(reg prometheus.Registerer) error {
	collectors := []prometheus.Collector{
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Namespace: MetricsNamespace, Subsystem: "server", Name: "connections_open",
			Help: "Client connections being served now; at connections_limit, further clients wait in the socket's backlog.",
		}, func() float64 { return float64(s.conns.open.Load()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Namespace: MetricsNamespace, Subsystem: "server", Name: "connections_limit",
			Help: "Client connections served at once at most (listen.maxConnections); 0 means no limit.",
		}, func() float64 { return float64(s.conns.limit) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Namespace: MetricsNamespace, Subsystem: "server", Name: "streams_per_connection_limit",
			Help: "Calls in flight on one client connection at most (listen.maxConcurrentStreams); further calls wait in the client; 0 means no limit.",
		}, func() float64 { return float64(s.maxStreams) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Namespace: MetricsNamespace, Subsystem: "server", Name: "memory_reclaims_total",
			Help: "Times crishim returned free memory to the OS after a storm of client connections closed.",
		}, func() float64 { return float64(s.conns.reclaims.Load()) }),
	}
	{
		collectors = append(collectors,
			prometheus.NewGaugeFunc(prometheus.GaugeOpts{
				Namespace: MetricsNamespace, Subsystem: "passthrough", Name: "buffered_bytes",
				Help: "Bytes the frame passthrough holds for readers slower than their writers (bounded by the stream windows and a 64 MiB budget).",
			}, func() float64 { return float64(s.router.Stats().Buffered) }),
			prometheus.NewGaugeFunc(prometheus.GaugeOpts{
				Namespace: MetricsNamespace, Subsystem: "passthrough", Name: "upstream_connections",
				Help: "HTTP/2 connections the frame passthrough keeps to the runtime and image endpoints.",
			}, func() float64 { return float64(s.router.Stats().Upstreams) }),
			s.clientErrors)
	}
	return RegisterCollectors(reg, collectors...)
}
