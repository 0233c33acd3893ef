package pulls

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// gate is a controllable upstream: every pull records its start and blocks
// until released.
type gate struct {
	mu       sync.Mutex
	started  []string
	cur, max int
	calls    atomic.Int32
	release  chan struct{}
	err      error
	ctxErrs  chan error
}

func newGate() *gate {
	return &gate{release: make(chan struct{}, 1000), ctxErrs: make(chan error, 100)}
}

func (g *gate) fn(name string) func(context.Context) (proto.Message, error) {
	return func(ctx context.Context) (proto.Message, error) {
		g.calls.Add(1)
		g.mu.Lock()
		g.started = append(g.started, name)
		g.cur++
		g.max = max(g.max, g.cur)
		g.mu.Unlock()
		defer func() {
			g.mu.Lock()
			g.cur--
			g.mu.Unlock()
		}()
		select {
		case <-g.release:
			if g.err != nil {
				return nil, g.err
			}
			return &runtimeapi.PullImageResponse{ImageRef: "sha256:" + name}, nil
		case <-ctx.Done():
			g.ctxErrs <- ctx.Err()
			return nil, status.FromContextError(ctx.Err()).Err()
		}
	}
}

func (g *gate) snapshot() (started []string, cur, maxSeen int) {
	g.mu.Lock()
	defer g.mu.Unlock()
	return append([]string(nil), g.started...), g.cur, g.max
}

func newTestScheduler(t *testing.T, l Limits, dedup bool) *Scheduler {
	t.Helper()
	m, err := NewMetrics(prometheus.NewRegistry(), nil)
	if err != nil {
		t.Fatal(err)
	}
	s := NewScheduler(l, dedup, m)
	t.Cleanup(s.Close)
	return s
}

func same(ctx context.Context) context.Context { return ctx }

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// pullAsync starts a pull and returns its result channel.
func pullAsync(ctx context.Context, s *Scheduler, key Key, registry string, prio bool, g *gate, name string) <-chan Result {
	ch := make(chan Result, 1)
	go func() { ch <- s.Pull(ctx, key, registry, prio, same, g.fn(name)) }()
	return ch
}

func TestLimits(t *testing.T) {
	tests := []struct {
		desc       string
		limits     Limits
		registries []string // one pull per entry
		wantMax    int
		wantPerReg map[string]int
	}{
		{"serial", Limits{MaxParallel: 1}, []string{"a", "a", "b", "c", "a", "b"}, 1, nil},
		{"parallel 3", Limits{MaxParallel: 3}, []string{"a", "b", "c", "d", "e", "f", "g", "h", "i", "j"}, 3, nil},
		{"per registry 2 without head-of-line blocking", Limits{MaxParallel: 4, MaxParallelPerRegistry: 2}, []string{"a", "a", "a", "a", "a", "a", "b", "b"}, 4, map[string]int{"a": 2, "b": 2}},
	}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			s := newTestScheduler(t, tc.limits, true)
			g := newGate()
			var results []<-chan Result
			for i, reg := range tc.registries {
				results = append(results, pullAsync(context.Background(), s, Key{Image: fmt.Sprint(i)}, reg, false, g, reg))
			}
			// The limit is reached when there is enough work...
			eventually(t, fmt.Sprintf("%d pulls in flight", tc.wantMax), func() bool { _, cur, _ := g.snapshot(); return cur == tc.wantMax })
			time.Sleep(20 * time.Millisecond) // ...and never exceeded, even given time.
			started, cur, _ := g.snapshot()
			if cur != tc.wantMax {
				t.Fatalf("%d in flight, want %d", cur, tc.wantMax)
			}
			perReg := map[string]int{}
			for _, r := range started {
				perReg[r]++
			}
			for reg, want := range tc.wantPerReg {
				if perReg[reg] != want {
					t.Errorf("registry %s: %d in flight, want %d (started %v)", reg, perReg[reg], want, started)
				}
			}
			for range tc.registries {
				g.release <- struct{}{}
			}
			for i, ch := range results {
				if r := <-ch; r.Err != nil {
					t.Errorf("pull %d: %v", i, r.Err)
				}
			}
			if _, _, maxSeen := g.snapshot(); maxSeen != tc.wantMax {
				t.Errorf("max in flight over the run = %d, want %d", maxSeen, tc.wantMax)
			}
			if inFlight, queued := s.Stats(); inFlight != 0 || queued != 0 {
				t.Errorf("after the run: %d in flight, %d queued", inFlight, queued)
			}
		})
	}
}

func TestQueueOrder(t *testing.T) {
	tests := []struct {
		desc  string
		queue []struct {
			name string
			prio bool
		}
		want []string
	}{
		{"FIFO", []struct {
			name string
			prio bool
		}{{"n1", false}, {"n2", false}, {"n3", false}, {"n4", false}}, []string{"n1", "n2", "n3", "n4"}},
		{"priority namespaces first, FIFO within each", []struct {
			name string
			prio bool
		}{{"n1", false}, {"n2", false}, {"k1", true}, {"n3", false}, {"k2", true}}, []string{"k1", "k2", "n1", "n2", "n3"}},
	}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			s := newTestScheduler(t, Limits{MaxParallel: 1}, true)
			g := newGate()
			blocker := pullAsync(context.Background(), s, Key{Image: "blocker"}, "r", false, g, "blocker")
			eventually(t, "the blocker to run", func() bool { _, cur, _ := g.snapshot(); return cur == 1 })
			var results []<-chan Result
			for i, q := range tc.queue {
				results = append(results, pullAsync(context.Background(), s, Key{Image: q.name}, "r", q.prio, g, q.name))
				eventually(t, "the pull to queue", func() bool { _, queued := s.Stats(); return queued == i+1 })
			}
			for range len(tc.queue) + 1 {
				g.release <- struct{}{}
			}
			<-blocker
			for _, ch := range results {
				<-ch
			}
			started, _, _ := g.snapshot()
			if got := fmt.Sprint(started[1:]); got != fmt.Sprint(tc.want) {
				t.Errorf("order %v, want %v", got, tc.want)
			}
		})
	}
}

func TestCancelledWaiterLeaves(t *testing.T) {
	for _, tc := range []struct {
		desc string
		ctx  func() (context.Context, context.CancelFunc)
		code codes.Code
	}{
		{"cancelled", func() (context.Context, context.CancelFunc) { return context.WithCancel(context.Background()) }, codes.Canceled},
		{"deadline", func() (context.Context, context.CancelFunc) {
			return context.WithTimeout(context.Background(), 200*time.Millisecond)
		}, codes.DeadlineExceeded},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			s := newTestScheduler(t, Limits{MaxParallel: 1}, true)
			g := newGate()
			blocker := pullAsync(context.Background(), s, Key{Image: "blocker"}, "r", false, g, "blocker")
			eventually(t, "the blocker to run", func() bool { _, cur, _ := g.snapshot(); return cur == 1 })
			ctx, cancel := tc.ctx()
			defer cancel()
			queued := pullAsync(ctx, s, Key{Image: "queued"}, "r", false, g, "queued")
			eventually(t, "the pull to queue", func() bool { _, q := s.Stats(); return q == 1 })
			if tc.code == codes.Canceled {
				cancel()
			} // else the deadline passes by itself
			r := <-queued
			if status.Code(r.Err) != tc.code {
				t.Errorf("got %v, want %s", r.Err, tc.code)
			}
			eventually(t, "the queue to empty", func() bool { _, q := s.Stats(); return q == 0 })
			// Its place is free: the next pull runs right after the blocker.
			after := pullAsync(context.Background(), s, Key{Image: "after"}, "r", false, g, "after")
			g.release <- struct{}{}
			g.release <- struct{}{}
			<-blocker
			if r := <-after; r.Err != nil {
				t.Fatal(r.Err)
			}
			if started, _, _ := g.snapshot(); fmt.Sprint(started) != "[blocker after]" {
				t.Errorf("started %v: the cancelled pull ran", started)
			}
		})
	}
}

func TestDeduplication(t *testing.T) {
	s := newTestScheduler(t, Limits{MaxParallel: 4}, true)
	g := newGate()
	key := Key{Image: "docker.io/library/busybox:latest", Credentials: "fp1"}
	var results []<-chan Result
	for range 32 {
		results = append(results, pullAsync(context.Background(), s, key, "docker.io", false, g, "busybox"))
	}
	eventually(t, "the upstream pull", func() bool { return g.calls.Load() == 1 })
	time.Sleep(20 * time.Millisecond)
	g.release <- struct{}{}
	shared := 0
	var first proto.Message
	for _, ch := range results {
		r := <-ch
		if r.Err != nil {
			t.Fatal(r.Err)
		}
		if first == nil {
			first = r.Response
		} else if !proto.Equal(first, r.Response) || first == r.Response {
			t.Errorf("answers differ or share one message: %v / %v", first, r.Response)
		}
		if r.Shared {
			shared++
		}
	}
	if n := g.calls.Load(); n != 1 {
		t.Errorf("%d upstream calls for 32 identical pulls, want 1", n)
	}
	if shared != 31 {
		t.Errorf("%d shared answers, want 31", shared)
	}
}

func TestDeduplicationNeverMixesCredentials(t *testing.T) {
	s := newTestScheduler(t, Limits{MaxParallel: 8}, true)
	g := newGate()
	var results []<-chan Result
	for _, cred := range []string{"", "alice", "bob", "alice", ""} {
		results = append(results, pullAsync(context.Background(), s, Key{Image: "img", Credentials: cred}, "r", false, g, cred))
	}
	eventually(t, "three upstream pulls", func() bool { return g.calls.Load() == 3 })
	time.Sleep(20 * time.Millisecond)
	for range 3 {
		g.release <- struct{}{}
	}
	for _, ch := range results {
		<-ch
	}
	if n := g.calls.Load(); n != 3 {
		t.Errorf("%d upstream calls for 3 credential identities, want 3", n)
	}
}

func TestDedupOff(t *testing.T) {
	s := newTestScheduler(t, Limits{MaxParallel: 8}, false)
	g := newGate()
	var results []<-chan Result
	for range 5 {
		results = append(results, pullAsync(context.Background(), s, Key{Image: "img"}, "r", false, g, "img"))
	}
	eventually(t, "five upstream pulls", func() bool { return g.calls.Load() == 5 })
	for range 5 {
		g.release <- struct{}{}
	}
	for _, ch := range results {
		if r := <-ch; r.Shared || r.Err != nil {
			t.Errorf("result %+v", r)
		}
	}
}

func TestLeaderLeavesFollowersStay(t *testing.T) {
	s := newTestScheduler(t, Limits{MaxParallel: 1}, true)
	g := newGate()
	key := Key{Image: "img"}
	leaderCtx, cancelLeader := context.WithCancel(context.Background())
	leader := pullAsync(leaderCtx, s, key, "r", false, g, "img")
	eventually(t, "the pull to start", func() bool { return g.calls.Load() == 1 })
	followers := []<-chan Result{
		pullAsync(context.Background(), s, key, "r", false, g, "img"),
		pullAsync(context.Background(), s, key, "r", false, g, "img"),
	}
	time.Sleep(20 * time.Millisecond)
	cancelLeader()
	if r := <-leader; status.Code(r.Err) != codes.Canceled {
		t.Errorf("leader got %v, want Canceled", r.Err)
	}
	select {
	case err := <-g.ctxErrs:
		t.Fatalf("the upstream pull was cancelled (%v) although followers wait", err)
	case <-time.After(50 * time.Millisecond):
	}
	g.release <- struct{}{}
	for _, ch := range followers {
		if r := <-ch; r.Err != nil || !r.Shared {
			t.Errorf("follower: %+v", r)
		}
	}
	if n := g.calls.Load(); n != 1 {
		t.Errorf("%d upstream calls, want 1", n)
	}
}

func TestAllWaitersLeaveCancelsUpstream(t *testing.T) {
	s := newTestScheduler(t, Limits{MaxParallel: 1}, true)
	g := newGate()
	ctx, cancel := context.WithCancel(context.Background())
	a := pullAsync(ctx, s, Key{Image: "img"}, "r", false, g, "img")
	b := pullAsync(ctx, s, Key{Image: "img"}, "r", false, g, "img")
	eventually(t, "the pull to start", func() bool { return g.calls.Load() == 1 })
	cancel()
	<-a
	<-b
	select {
	case err := <-g.ctxErrs:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("upstream ended with %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the upstream pull was not cancelled after every caller left")
	}
	// A new caller starts a fresh pull rather than joining the abandoned one.
	c := pullAsync(context.Background(), s, Key{Image: "img"}, "r", false, g, "img")
	g.release <- struct{}{}
	if r := <-c; r.Err != nil || r.Shared {
		t.Errorf("fresh pull after abandonment: %+v", r)
	}
}

func TestErrorFanOut(t *testing.T) {
	s := newTestScheduler(t, Limits{MaxParallel: 1}, true)
	g := newGate()
	g.err = status.Error(codes.Unknown, "RegistryUnavailable: connection refused")
	var results []<-chan Result
	for range 5 {
		results = append(results, pullAsync(context.Background(), s, Key{Image: "img"}, "r", false, g, "img"))
	}
	eventually(t, "the pull", func() bool { return g.calls.Load() == 1 })
	time.Sleep(10 * time.Millisecond)
	g.release <- struct{}{}
	for _, ch := range results {
		r := <-ch
		if st := status.Convert(r.Err); st.Code() != codes.Unknown || st.Message() != "RegistryUnavailable: connection refused" {
			t.Errorf("got %v, want the runtime's error", r.Err)
		}
	}
}

func TestSetLimitsKeepsQueue(t *testing.T) {
	s := newTestScheduler(t, Limits{MaxParallel: 1}, true)
	g := newGate()
	var results []<-chan Result
	for i := range 4 {
		results = append(results, pullAsync(context.Background(), s, Key{Image: fmt.Sprint(i)}, "r", false, g, fmt.Sprint(i)))
	}
	eventually(t, "1 running, 3 queued", func() bool { in, q := s.Stats(); return in == 1 && q == 3 })
	s.SetLimits(Limits{MaxParallel: 3})
	eventually(t, "3 running after raising the limit", func() bool { _, cur, _ := g.snapshot(); return cur == 3 })
	for range 4 {
		g.release <- struct{}{}
	}
	for _, ch := range results {
		if r := <-ch; r.Err != nil {
			t.Error(r.Err)
		}
	}
}

func TestCloseCancelsQueued(t *testing.T) {
	s := newTestScheduler(t, Limits{MaxParallel: 1}, true)
	g := newGate()
	running := pullAsync(context.Background(), s, Key{Image: "a"}, "r", false, g, "a")
	queued := pullAsync(context.Background(), s, Key{Image: "b"}, "r", false, g, "b")
	eventually(t, "one queued", func() bool { _, q := s.Stats(); return q == 1 })
	s.Close()
	for _, ch := range []<-chan Result{running, queued} {
		if r := <-ch; status.Code(r.Err) != codes.Canceled {
			t.Errorf("got %v, want Canceled", r.Err)
		}
	}
}

func TestDrainFailsQueuedAndLetsRunningFinish(t *testing.T) {
	s := newTestScheduler(t, Limits{MaxParallel: 1}, true)
	g := newGate()
	running := pullAsync(context.Background(), s, Key{Image: "a"}, "r", false, g, "a")
	eventually(t, "a running", func() bool { _, cur, _ := g.snapshot(); return cur == 1 })
	queued := pullAsync(context.Background(), s, Key{Image: "b"}, "r", false, g, "b")
	eventually(t, "b queued", func() bool { _, q := s.Stats(); return q == 1 })
	s.Drain()
	if r := <-queued; status.Code(r.Err) != codes.Unavailable {
		t.Errorf("queued pull at drain: got %v, want Unavailable", r.Err)
	}
	if r := <-pullAsync(context.Background(), s, Key{Image: "c"}, "r", false, g, "c"); status.Code(r.Err) != codes.Unavailable {
		t.Errorf("new pull while draining: got %v, want Unavailable", r.Err)
	}
	g.release <- struct{}{}
	if r := <-running; r.Err != nil {
		t.Errorf("running pull at drain: %v, want it to finish", r.Err)
	}
}
