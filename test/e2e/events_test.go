//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// rawRuntime is a plain generated CRI client on a unix socket: the kubelet's client hides the
// moment a GetContainerEvents stream ends and why, which these tests look at.
func rawRuntime(t *testing.T, sock string) runtimeapi.RuntimeServiceClient {
	t.Helper()
	conn, err := grpc.NewClient("unix://"+sock, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatalf("dial %s: %v", sock, err)
	}
	t.Cleanup(func() { conn.Close() })
	return runtimeapi.NewRuntimeServiceClient(conn)
}

// subscriber collects one GetContainerEvents stream.
type subscriber struct {
	label  string
	cancel context.CancelFunc
	done   chan struct{}

	mu     sync.Mutex
	events []*runtimeapi.ContainerEventResponse
	err    error // why the stream ended
}

func subscribe(t *testing.T, label string, c runtimeapi.RuntimeServiceClient) *subscriber {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	stream, err := c.GetContainerEvents(ctx, &runtimeapi.GetEventsRequest{})
	if err != nil {
		cancel()
		t.Fatalf("GetContainerEvents (%s): %v", label, err)
	}
	s := &subscriber{label: label, cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(s.done)
		for {
			ev, err := stream.Recv()
			s.mu.Lock()
			if err != nil {
				s.err = err
				s.mu.Unlock()
				return
			}
			s.events = append(s.events, ev)
			s.mu.Unlock()
		}
	}()
	t.Cleanup(func() { cancel(); <-s.done })
	return s
}

// forPod returns the events of one sandbox and its containers, in arrival order.
func (s *subscriber) forPod(pod string) []*runtimeapi.ContainerEventResponse {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []*runtimeapi.ContainerEventResponse
	for _, ev := range s.events {
		if ev.GetPodSandboxStatus().GetId() == pod || ev.GetContainerId() == pod {
			out = append(out, ev)
		}
	}
	return out
}

// ended returns the stream's end error, or nil while it is open.
func (s *subscriber) ended() (bool, error) {
	select {
	case <-s.done:
		s.mu.Lock()
		defer s.mu.Unlock()
		return true, s.err
	default:
		return false, nil
	}
}

func describeEvents(evs []*runtimeapi.ContainerEventResponse, pod string) string {
	var parts []string
	for _, ev := range evs {
		id := ev.GetContainerId()
		if id == pod {
			id = "sandbox"
		} else if len(id) > 8 {
			id = id[:8]
		}
		parts = append(parts, fmt.Sprintf("%s(%s)", strings.TrimSuffix(ev.GetContainerEventType().String(), "_EVENT"), id))
	}
	return strings.Join(parts, " ")
}

// inFlightEvents is the number of GetContainerEvents streams crishim is serving.
func (b *bed) inFlightEvents(t *testing.T) float64 {
	t.Helper()
	return b.metrics(t).value("crishim_grpc_server_in_flight", map[string]string{"grpc_method": "GetContainerEvents"})
}

// podLifecycle runs one pod with one container from RunPodSandbox to RemovePodSandbox through
// crishim, calling mid with the sandbox id once the container runs.
func (b *bed) podLifecycle(t *testing.T, name string, mid func(pod string)) string {
	t.Helper()
	ctx := testContext(t, 2*callTimeout)
	rs, is := b.crishim(t)
	ensureImage(ctx, t, is, b.busybox())
	podCfg := b.podConfig(t, name)
	pod, err := rs.RunPodSandbox(ctx, podCfg, "")
	if err != nil {
		t.Fatalf("RunPodSandbox: %v", err)
	}
	ctr := startContainer(ctx, t, rs, pod, podCfg, b.busyboxContainer("events", "trap 'exit 0' TERM; while true; do sleep 0.2; done"))
	if mid != nil {
		mid(pod)
	}
	for _, step := range []struct {
		what string
		call func() error
	}{
		{"StopContainer", func() error { return rs.StopContainer(ctx, ctr, 5) }},
		{"RemoveContainer", func() error { return rs.RemoveContainer(ctx, ctr) }},
		{"StopPodSandbox", func() error { return rs.StopPodSandbox(ctx, pod) }},
		{"RemovePodSandbox", func() error { return rs.RemovePodSandbox(ctx, pod) }},
	} {
		if err := step.call(); err != nil {
			t.Fatalf("%s: %v", step.what, err)
		}
	}
	return pod
}

// TestContainerEventsThroughCrishim subscribes to GetContainerEvents directly and through crishim
// at the same time while a pod lifecycle runs: both must see the same events for the pod, in the
// same order, equal field by field. A third subscriber through crishim leaves mid-lifecycle: its
// stream ends with Canceled, crishim ends that stream upstream, and the other subscribers, the
// direct one included, still see every event. (containerd 2.x and CRI-O both send every event to
// every subscriber; containerd 2.x also replays events from times without subscribers to the
// first one, hence the filter by pod.)
func TestContainerEventsThroughCrishim(t *testing.T) {
	b := getBed(t)
	if !b.rt.events {
		t.Skipf("%s does not implement GetContainerEvents (TestGetContainerEvents asserts Unimplemented)", b.rt.label)
	}
	direct, through := rawRuntime(t, b.runtimeSock), rawRuntime(t, b.crishimSock)
	base := b.inFlightEvents(t)
	d := subscribe(t, "direct", direct)
	c := subscribe(t, "crishim", through)
	leaver := subscribe(t, "crishim, leaves mid-lifecycle", through)
	// a stream is served once crishim counts it in flight; give the runtime a moment to register
	// both of crishim's upstream subscriptions and the direct one
	waitFor(t, 10*time.Second, "crishim serving two GetContainerEvents streams", func() (bool, error) {
		return b.inFlightEvents(t)-base >= 2, nil
	})
	time.Sleep(time.Second)

	pod := b.podLifecycle(t, t.Name(), func(pod string) {
		// the container runs: the leaver has the first events, then goes
		waitFor(t, 10*time.Second, "the leaving subscriber's first event", func() (bool, error) {
			return len(leaver.forPod(pod)) > 0, nil
		})
		leaver.cancel()
		waitFor(t, 10*time.Second, "the leaving subscriber's stream to end", func() (bool, error) {
			done, _ := leaver.ended()
			return done, nil
		})
	})
	want := b.rt.eventsPerLifecycle
	waitFor(t, 15*time.Second, fmt.Sprintf("%d events for the pod on both subscribers", want), func() (bool, error) {
		return len(d.forPod(pod)) >= want && len(c.forPod(pod)) >= want, nil
	})
	time.Sleep(500 * time.Millisecond) // nothing more may come
	de, ce, le := d.forPod(pod), c.forPod(pod), leaver.forPod(pod)
	t.Logf("%s, direct:  %s", b.rt.label, describeEvents(de, pod))
	t.Logf("%s, crishim: %s", b.rt.label, describeEvents(ce, pod))
	t.Logf("%s, leaver:  %s", b.rt.label, describeEvents(le, pod))

	if _, err := leaver.ended(); status.Code(err) != codes.Canceled {
		t.Errorf("the leaving subscriber's stream ended with %v, want Canceled", err)
	}
	if done, err := d.ended(); done {
		t.Errorf("the direct stream ended (%v) when a subscriber through crishim left", err)
	}
	if done, err := c.ended(); done {
		t.Errorf("the other stream through crishim ended (%v) when a subscriber through crishim left", err)
	}
	waitFor(t, 10*time.Second, "crishim to end the leaving stream (in-flight GetContainerEvents back to one)", func() (bool, error) {
		return b.inFlightEvents(t)-base == 1, nil
	})
	if len(de) != want {
		t.Errorf("%s: the direct subscriber got %d events for the pod, want %d", b.rt.label, len(de), want)
	}
	if len(de) != len(ce) {
		t.Fatalf("the direct subscriber got %d events, the one through crishim %d", len(de), len(ce))
	}
	for i := range de {
		if !proto.Equal(de[i], ce[i]) {
			t.Errorf("event %d differs:\n direct:  %v\n crishim: %v", i, de[i], ce[i])
		}
	}
	if len(le) == 0 || len(le) >= want {
		t.Errorf("the leaving subscriber got %d events, want some but not all %d", len(le), want)
	}
	for i := range le {
		if i < len(de) && !proto.Equal(le[i], de[i]) {
			t.Errorf("the leaving subscriber's event %d differs from the direct one", i)
		}
	}
}

// TestContainerEventsCrishimStops: a GetContainerEvents stream through crishim ends when crishim
// stops (Unavailable, which the kubelet answers by reconnecting), while a direct subscriber keeps
// streaming.
func TestContainerEventsCrishimStops(t *testing.T) {
	b := getBed(t)
	if !b.rt.events {
		t.Skipf("%s does not implement GetContainerEvents (TestGetContainerEvents asserts Unimplemented)", b.rt.label)
	}
	c := b.startCrishim(t, "events-stop", "")
	d := subscribe(t, "direct", rawRuntime(t, b.runtimeSock))
	s := subscribe(t, "own crishim", rawRuntime(t, c.sock))
	waitFor(t, 10*time.Second, "the own crishim serving the stream", func() (bool, error) {
		return c.metrics(t).value("crishim_grpc_server_in_flight", map[string]string{"grpc_method": "GetContainerEvents"}) == 1, nil
	})
	c.stop(t)
	waitFor(t, 15*time.Second, "the stream through the stopped crishim to end", func() (bool, error) {
		done, _ := s.ended()
		return done, nil
	})
	if _, err := s.ended(); status.Code(err) != codes.Unavailable {
		t.Errorf("stream through a stopping crishim ended with %v, want Unavailable", err)
	}
	if done, err := d.ended(); done {
		t.Errorf("the direct stream ended (%v) when crishim stopped", err)
	}
}
