package plugins

import (
	"context"
	"errors"
	"io"
	"sync/atomic"
	"time"

	"github.com/containerd/nri/pkg/api"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// exitPollInterval is how often the runtime's containers are listed for
// exits when it has no event stream (containerd 1.6).
var exitPollInterval = 5 * time.Second

// exitQueue bounds the exits waiting for their StopContainer. The event
// stream is read without waiting for plugins: a runtime (containerd) blocks
// its own CRI calls when a subscriber stops reading its events.
const exitQueue = 1024

// exitEvent is one exit the runtime reported.
type exitEvent struct {
	id   string
	exit func(*api.Container)
}

// watchExits notices containers that exit without a StopContainer call
// (crashes, completed jobs) and gives the plugins their NRI StopContainer,
// as containerd does on a task exit: from the runtime's container events
// while its stream is up, and from a relist every exitPollInterval while it
// is not (a runtime without events: containerd 1.6; CRI-O without
// enable_pod_events, which ends the stream at once) and once each time the
// stream opens (exits while it was down), or when exits came faster than
// plugins took them.
func (h *Host) watchExits(ctx context.Context, rt runtimeapi.RuntimeServiceClient) {
	var live atomic.Int64 // when the current stream opened (unix ns), 0 when down
	relist := make(chan struct{}, 1)
	wake := func() {
		select {
		case relist <- struct{}{}:
		default:
		}
	}
	exits := make(chan exitEvent, exitQueue)
	h.wg.Add(2)
	go func() {
		defer h.wg.Done()
		h.pollExits(ctx, rt, relist, func() bool {
			since := live.Load()
			return since != 0 && time.Since(time.Unix(0, since)) > exitPollInterval/2
		})
	}()
	go func() {
		defer h.wg.Done()
		for {
			select {
			case <-ctx.Done():
				return
			case e := <-exits:
				h.exited(ctx, e.id, e.exit)
			}
		}
	}()
	backoff := time.Second
	for ctx.Err() == nil {
		opened := time.Now()
		err := h.followEvents(ctx, rt, func() { live.Store(time.Now().UnixNano()); wake() }, func(e exitEvent) {
			select {
			case exits <- e:
			default:
				wake() // the relist finds it
			}
		})
		live.Store(0)
		if status.Code(err) == codes.Unimplemented {
			h.log.Info("nri: the runtime has no container events; container exits are found by listing containers")
			return
		}
		if ctx.Err() != nil {
			return
		}
		if time.Since(opened) > time.Minute {
			backoff = time.Second // a stream that was up: reconnect soon
		}
		h.log.WithError(err).Debug("nri: container event stream ended; listing containers until it is back")
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 30*time.Second)
	}
}

func (h *Host) followEvents(ctx context.Context, rt runtimeapi.RuntimeServiceClient, opened func(), exited func(exitEvent)) error {
	stream, err := rt.GetContainerEvents(ctx, &runtimeapi.GetEventsRequest{})
	if err != nil {
		return err
	}
	opened()
	for {
		ev, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return errors.New("the runtime closed the event stream")
		}
		if err != nil {
			return err
		}
		if ev.GetContainerEventType() != runtimeapi.ContainerEventType_CONTAINER_STOPPED_EVENT {
			continue
		}
		id := ev.GetContainerId()
		if _, ok := h.state.container(id); !ok {
			continue
		}
		e := exitEvent{id: id}
		for _, s := range ev.GetContainersStatuses() {
			if s.GetId() == id {
				e.exit = exitFrom(s)
			}
		}
		exited(e)
	}
}

// pollExits lists exited containers every exitPollInterval while streaming
// says the event stream is not up, and whenever relist says.
func (h *Host) pollExits(ctx context.Context, rt runtimeapi.RuntimeServiceClient, relist <-chan struct{}, streaming func() bool) {
	t := time.NewTicker(exitPollInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if streaming() {
				continue
			}
		case <-relist:
		}
		if len(h.state.running()) == 0 {
			continue
		}
		l, err := rt.ListContainers(ctx, &runtimeapi.ListContainersRequest{Filter: &runtimeapi.ContainerFilter{
			State: &runtimeapi.ContainerStateValue{State: runtimeapi.ContainerState_CONTAINER_EXITED}}})
		if err != nil {
			continue
		}
		for _, c := range l.GetContainers() {
			if _, ok := h.state.container(c.GetId()); !ok || !h.state.live(c.GetId()) {
				continue
			}
			var exit func(*api.Container)
			if st, err := rt.ContainerStatus(ctx, &runtimeapi.ContainerStatusRequest{ContainerId: c.GetId()}); err == nil {
				exit = exitFrom(st.GetStatus())
			}
			h.exited(ctx, c.GetId(), exit)
		}
	}
}

// exited gives an exited container its StopContainer if nothing did yet.
// The plugin sync lock is taken as for a CRI call.
func (h *Host) exited(ctx context.Context, rtID string, exit func(*api.Container)) {
	if _, ok := h.state.container(rtID); !ok {
		return
	}
	block := h.nri.BlockPluginSync()
	defer block.Unblock()
	h.stopped(ctx, rtID, exit)
}

func exitFrom(s *runtimeapi.ContainerStatus) func(*api.Container) {
	return func(c *api.Container) {
		c.FinishedAt = s.GetFinishedAt()
		c.ExitCode = s.GetExitCode()
		c.StatusReason = s.GetReason()
		c.StatusMessage = s.GetMessage()
	}
}
