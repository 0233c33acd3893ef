package pulls

import (
	"container/list"
	"context"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// Limits are the scheduler's limits; they can change while it runs.
type Limits struct {
	// MaxParallel is how many pulls run at once node-wide (1 = serial).
	MaxParallel int
	// MaxParallelPerRegistry caps pulls from one registry (0: no cap).
	MaxParallelPerRegistry int
	// Timeout bounds one upstream pull (0: none; the kubelet sets none).
	Timeout time.Duration
}

// Key identifies pulls that may share one upstream call: the same image,
// for the same runtime handler, with the same image annotations and the same
// credentials. The credential part is a fingerprint, never the secret.
type Key struct {
	Image, Handler, Annotations, Credentials string
}

// Result is what a shared pull returns to each waiter.
type Result struct {
	Response proto.Message
	Err      error
	// Shared is set for waiters that joined another caller's pull.
	Shared bool
	// Wait is the time spent queued before the upstream call started.
	Wait time.Duration
}

// Scheduler orders pulls: FIFO within a priority class, priority first,
// within node-wide and per-registry limits, and merges identical concurrent
// pulls into one upstream call.
type Scheduler struct {
	metrics *Metrics
	dedup   atomic.Bool

	root   context.Context
	cancel context.CancelFunc
	// draining is closed by Drain: queued pulls leave, running ones finish.
	draining  chan struct{}
	drainOnce sync.Once

	mu          sync.Mutex
	limits      Limits
	inFlight    int
	perRegistry map[string]int
	queues      [2]*list.List // [0] priority, [1] normal
	flights     map[Key]*flight
}

// NewScheduler returns a scheduler with the given limits. Nil metrics
// are registered nowhere.
func NewScheduler(limits Limits, dedup bool, m *Metrics) *Scheduler {
	if m == nil {
		m, _ = NewMetrics(prometheus.NewRegistry(), nil) // a fresh registry cannot refuse
	}
	root, cancel := context.WithCancel(context.Background())
	s := &Scheduler{
		metrics: m, root: root, cancel: cancel, draining: make(chan struct{}),
		limits: normalizeLimits(limits), perRegistry: map[string]int{},
		queues:  [2]*list.List{list.New(), list.New()},
		flights: map[Key]*flight{},
	}
	s.dedup.Store(dedup)
	return s
}

// SetDedup turns de-duplication on or off for pulls that start later.
func (s *Scheduler) SetDedup(on bool) { s.dedup.Store(on) }

func normalizeLimits(l Limits) Limits {
	if l.MaxParallel < 1 {
		l.MaxParallel = 1
	}
	return l
}

// SetLimits changes the limits for pulls not yet started; queued pulls stay
// queued in order, running ones finish.
func (s *Scheduler) SetLimits(l Limits) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.limits = normalizeLimits(l)
	s.dispatchLocked()
}

// errDraining is what queued pulls get at shutdown; the kubelet retries the
// pull against the restarted proxy.
var errDraining = status.Error(codes.Unavailable, "crishim is shutting down: the queued pull did not start; retry")

// Drain starts shutdown: pulls still queued, and new ones, fail with
// Unavailable at once instead of holding the shutdown; running pulls finish.
func (s *Scheduler) Drain() { s.drainOnce.Do(func() { close(s.draining) }) }

// Close cancels every queued and running pull; callers get Canceled.
func (s *Scheduler) Close() { s.cancel() }

// flight is one upstream pull and the callers waiting for it.
type flight struct {
	key       Key
	waiters   int
	abandoned bool
	cancel    context.CancelFunc
	done      chan struct{}
	result    Result
}

// Pull runs fn, the upstream pull, once a slot is free, or joins an
// identical pull already queued or running. ctx is this caller's: when it
// ends the caller leaves at once with the matching status, and the upstream
// pull is cancelled only when every caller of it has left. fnCtx is the
// context fn runs with: the scheduler's, carrying the first caller's values
// (request metadata) but not its cancellation.
func (s *Scheduler) Pull(ctx context.Context, key Key, registry string, priority bool,
	fnCtx func(context.Context) context.Context, fn func(context.Context) (proto.Message, error)) Result {
	s.mu.Lock()
	f, joined := s.flights[key]
	joined = joined && !f.abandoned
	if joined {
		f.waiters++
		s.mu.Unlock()
		s.metrics.deduplicated.WithLabelValues(s.metrics.label(registry)).Inc()
	} else {
		fctx, cancel := context.WithCancel(fnCtx(s.root))
		f = &flight{key: key, waiters: 1, cancel: cancel, done: make(chan struct{})}
		if s.dedup.Load() {
			s.flights[key] = f
		}
		s.mu.Unlock()
		go s.run(fctx, f, registry, priority, fn)
	}
	select {
	case <-f.done:
		r := f.result
		r.Shared = joined
		if r.Response != nil {
			// Each caller marshals its own copy.
			r.Response = proto.Clone(r.Response)
		}
		return r
	case <-ctx.Done():
		s.mu.Lock()
		f.waiters--
		if f.waiters == 0 {
			// Nobody wants this pull any more; a later caller starts anew.
			f.abandoned = true
			f.cancel()
		}
		s.mu.Unlock()
		return Result{Err: status.FromContextError(ctx.Err()).Err()}
	}
}

func (s *Scheduler) run(ctx context.Context, f *flight, registry string, priority bool, fn func(context.Context) (proto.Message, error)) {
	defer close(f.done)
	defer func() {
		s.mu.Lock()
		if s.flights[f.key] == f {
			delete(s.flights, f.key)
		}
		s.mu.Unlock()
		f.cancel()
	}()
	start := time.Now()
	err := s.acquire(ctx, registry, priority)
	f.result.Wait = time.Since(start)
	s.metrics.wait.Observe(f.result.Wait.Seconds())
	if err != nil {
		f.result.Err = err
		s.metrics.pulls.WithLabelValues(s.metrics.label(registry), "canceled").Inc()
		return
	}
	defer s.release(registry)
	s.mu.Lock()
	timeout := s.limits.Timeout
	s.mu.Unlock()
	if timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, timeout)
		defer cancel()
	}
	pullStart := time.Now()
	f.result.Response, f.result.Err = fn(ctx)
	s.metrics.duration.WithLabelValues(s.metrics.label(registry)).Observe(time.Since(pullStart).Seconds())
	s.metrics.pulls.WithLabelValues(s.metrics.label(registry), pullOutcome(f.result.Err)).Inc()
}

func pullOutcome(err error) string {
	switch status.Code(err) {
	case codes.OK:
		return "success"
	case codes.Canceled, codes.DeadlineExceeded:
		return "canceled"
	}
	return "error"
}

// waiter is a pull waiting in a queue for a slot.
type waiter struct {
	registry string
	ready    chan struct{}
	granted  bool
	queue    int
}

func (s *Scheduler) acquire(ctx context.Context, registry string, priority bool) error {
	w := &waiter{registry: registry, ready: make(chan struct{}), queue: 1}
	if priority {
		w.queue = 0
	}
	s.mu.Lock()
	e := s.queues[w.queue].PushBack(w)
	s.metrics.queued.WithLabelValues(queueName(w.queue)).Inc()
	s.dispatchLocked()
	s.mu.Unlock()
	var err error
	select {
	case <-w.ready:
		return nil
	case <-ctx.Done():
		err = status.FromContextError(ctx.Err()).Err()
	case <-s.draining:
		err = errDraining
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if w.granted {
		// Granted while we were giving up: hand the slot on.
		s.releaseLocked(registry)
	} else {
		s.queues[w.queue].Remove(e)
		s.metrics.queued.WithLabelValues(queueName(w.queue)).Dec()
	}
	return err
}

func (s *Scheduler) release(registry string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.releaseLocked(registry)
}

func (s *Scheduler) releaseLocked(registry string) {
	s.inFlight--
	s.perRegistry[registry]--
	if s.perRegistry[registry] == 0 {
		delete(s.perRegistry, registry)
	}
	s.metrics.inFlight.Dec()
	s.metrics.registryInFlight.WithLabelValues(s.metrics.label(registry)).Dec()
	s.dispatchLocked()
}

// dispatchLocked grants free slots in queue order: priority first, FIFO
// within a class. A pull held back only by its registry's limit does not
// hold back pulls from other registries behind it.
func (s *Scheduler) dispatchLocked() {
	for q := range s.queues {
		for e := s.queues[q].Front(); e != nil && s.inFlight < s.limits.MaxParallel; {
			next := e.Next()
			w := e.Value.(*waiter)
			if s.limits.MaxParallelPerRegistry == 0 || s.perRegistry[w.registry] < s.limits.MaxParallelPerRegistry {
				s.queues[q].Remove(e)
				s.metrics.queued.WithLabelValues(queueName(q)).Dec()
				s.inFlight++
				s.perRegistry[w.registry]++
				s.metrics.inFlight.Inc()
				s.metrics.registryInFlight.WithLabelValues(s.metrics.label(w.registry)).Inc()
				w.granted = true
				close(w.ready)
			}
			e = next
		}
	}
}

func queueName(q int) string {
	if q == 0 {
		return "priority"
	}
	return "normal"
}

// Stats reports the scheduler's state, for tests and debugging.
func (s *Scheduler) Stats() (inFlight, queued int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.inFlight, s.queues[0].Len() + s.queues[1].Len()
}
