package plugins

import (
	"context"
	"testing"
	"time"

	"github.com/containerd/nri/pkg/api"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/crishim/crishim/test/fakecri"
)

// stopWatcher is a plugin that reports the StopContainer events it gets.
type stopWatcher struct {
	testPlugin
	stopped chan *api.Container
}

func (p *stopWatcher) StopContainer(_ context.Context, _ *api.PodSandbox, c *api.Container) ([]*api.ContainerUpdate, error) {
	p.stopped <- c
	return nil, nil
}

// TestContainerExitReachesPlugins: a container that exits without a
// StopContainer call gets its NRI StopContainer, with its exit code, from
// the runtime's event stream, or, for a runtime without one, from a relist.
func TestContainerExitReachesPlugins(t *testing.T) {
	saved := exitPollInterval
	exitPollInterval = 100 * time.Millisecond
	t.Cleanup(func() { exitPollInterval = saved })
	exitedStatus := &runtimeapi.ContainerStatus{Id: "rt-1", State: runtimeapi.ContainerState_CONTAINER_EXITED, ExitCode: 137, Reason: "OOMKilled"}
	for _, tc := range []struct {
		desc   string
		events bool
	}{
		{"event stream", true},
		{"relist without events", false},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			r := newRig(t, &Config{}, func(f *fakecri.Server) {
				createScript(f)
				if tc.events {
					// the first stream ends at once; crishim reopens it
					f.Script(runtimeService+"GetContainerEvents", fakecri.Script{})
				} else {
					f.Script(runtimeService+"GetContainerEvents", fakecri.Script{Err: status.Error(codes.Unimplemented, "not here")})
				}
			})
			p := &stopWatcher{stopped: make(chan *api.Container, 4)}
			r.connect(t, "watcher", "10", p)
			if _, err := r.RC.CreateContainer(context.Background(), createReq()); err != nil {
				t.Fatal(err)
			}
			// the container exits on its own
			if tc.events {
				r.Fake.Script(runtimeService+"GetContainerEvents", fakecri.Script{Hold: true, Stream: []proto.Message{&runtimeapi.ContainerEventResponse{
					ContainerId: "rt-1", ContainerEventType: runtimeapi.ContainerEventType_CONTAINER_STOPPED_EVENT,
					ContainersStatuses: []*runtimeapi.ContainerStatus{exitedStatus}}}})
			} else {
				r.Fake.Script(runtimeService+"ListContainers", fakecri.Script{Response: &runtimeapi.ListContainersResponse{Containers: []*runtimeapi.Container{
					{Id: "rt-1", PodSandboxId: "pod1", State: runtimeapi.ContainerState_CONTAINER_EXITED}}}})
				r.Fake.Script(runtimeService+"ContainerStatus", fakecri.Script{Response: &runtimeapi.ContainerStatusResponse{Status: exitedStatus}})
			}
			select {
			case c := <-p.stopped:
				if c.GetState() != api.ContainerState_CONTAINER_STOPPED || c.GetExitCode() != 137 || c.GetStatusReason() != "OOMKilled" {
					t.Errorf("StopContainer for %v: want state stopped, exit code 137, reason OOMKilled", c)
				}
			case <-time.After(30 * time.Second):
				t.Fatal("the plugin got no StopContainer for the exited container")
			}
			// the kubelet's StopContainer later sends no second one
			if _, err := r.RC.StopContainer(context.Background(), &runtimeapi.StopContainerRequest{ContainerId: "rt-1"}); err != nil {
				t.Fatal(err)
			}
			select {
			case c := <-p.stopped:
				t.Errorf("a second StopContainer: %v", c)
			case <-time.After(300 * time.Millisecond):
			}
		})
	}
}

// podWatcher reports the pod events a plugin gets.
type podWatcher struct {
	testPlugin
	events chan string
}

func (p *podWatcher) StopPodSandbox(_ context.Context, pod *api.PodSandbox) error {
	p.events <- "StopPodSandbox " + pod.GetId()
	return nil
}

func (p *podWatcher) RemovePodSandbox(_ context.Context, pod *api.PodSandbox) error {
	p.events <- "RemovePodSandbox " + pod.GetId()
	return nil
}

// TestPodEventsOnce: a pod gets one StopPodSandbox however often the
// kubelet stops it, and one before RemovePodSandbox when it was never
// stopped.
func TestPodEventsOnce(t *testing.T) {
	r := newRig(t, &Config{}, func(f *fakecri.Server) {
		n := 0
		f.Script(runtimeService+"RunPodSandbox", fakecri.Script{Respond: func(proto.Message) (proto.Message, error) {
			n++
			return &runtimeapi.RunPodSandboxResponse{PodSandboxId: []string{"", "pod-a", "pod-b"}[min(n, 2)]}, nil
		}})
	})
	p := &podWatcher{events: make(chan string, 16)}
	r.connect(t, "pods", "10", p)
	ctx := context.Background()
	cfg := &runtimeapi.PodSandboxConfig{Metadata: &runtimeapi.PodSandboxMetadata{Name: "p", Namespace: "ns"}}
	for range 2 {
		if _, err := r.RC.RunPodSandbox(ctx, &runtimeapi.RunPodSandboxRequest{Config: cfg}); err != nil {
			t.Fatal(err)
		}
	}
	calls := []func() error{
		func() error {
			_, err := r.RC.StopPodSandbox(ctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: "pod-a"})
			return err
		},
		func() error {
			_, err := r.RC.StopPodSandbox(ctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: "pod-a"})
			return err
		},
		func() error {
			_, err := r.RC.RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: "pod-a"})
			return err
		},
		func() error {
			_, err := r.RC.RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: "pod-b"})
			return err
		},
	}
	for _, call := range calls {
		if err := call(); err != nil {
			t.Fatal(err)
		}
	}
	want := []string{"StopPodSandbox pod-a", "RemovePodSandbox pod-a", "StopPodSandbox pod-b", "RemovePodSandbox pod-b"}
	for _, w := range want {
		select {
		case got := <-p.events:
			if got != w {
				t.Fatalf("event %q, want %q (all: %v)", got, w, want)
			}
		case <-time.After(30 * time.Second):
			t.Fatalf("no %q", w)
		}
	}
	select {
	case got := <-p.events:
		t.Errorf("an extra event: %q", got)
	default:
	}
}

// lifeWatcher reports the end-of-life events a plugin gets.
type lifeWatcher struct {
	testPlugin
	events chan string
}

func (p *lifeWatcher) StopContainer(_ context.Context, _ *api.PodSandbox, c *api.Container) ([]*api.ContainerUpdate, error) {
	p.events <- "StopContainer"
	return nil, nil
}

func (p *lifeWatcher) RemoveContainer(_ context.Context, _ *api.PodSandbox, c *api.Container) error {
	p.events <- "RemoveContainer"
	return nil
}

func (p *lifeWatcher) RemovePodSandbox(_ context.Context, pod *api.PodSandbox) error {
	p.events <- "RemovePodSandbox " + pod.GetId()
	return nil
}

// TestPruneGone: a container and its pod removed behind crishim's back
// (the runtime no longer lists them) end for the plugins too, and crishim
// forgets them.
func TestPruneGone(t *testing.T) {
	saved := pruneInterval
	pruneInterval = 100 * time.Millisecond
	t.Cleanup(func() { pruneInterval = saved })
	r := newRig(t, &Config{}, createScript)
	p := &lifeWatcher{events: make(chan string, 8)}
	r.connect(t, "life", "10", p)
	if _, err := r.RC.CreateContainer(context.Background(), createReq()); err != nil {
		t.Fatal(err)
	}
	// the fake lists nothing: the container and its pod are gone
	for _, want := range []string{"StopContainer", "RemoveContainer", "RemovePodSandbox pod1"} {
		select {
		case got := <-p.events:
			if got != want {
				t.Fatalf("event %q, want %q", got, want)
			}
		case <-time.After(30 * time.Second):
			t.Fatalf("no %s", want)
		}
	}
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		pods, ctrs := r.host.state.known()
		if len(pods)+len(ctrs) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("crishim still knows pods %v and containers %v", pods, ctrs)
		}
	}
}
