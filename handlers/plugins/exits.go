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

// watchExits notices containers that exit without a StopContainer call
// (crashes, completed jobs) and gives the plugins their NRI StopContainer,
// as containerd does on a task exit: from the runtime's container events
// while its stream is up, and from a relist every exitPollInterval while it
// is not: a runtime without events (containerd 1.6), CRI-O without
// enable_pod_events (it ends the stream at once), or the gaps while the
// stream reconnects.
func (h *Host) watchExits(ctx context.Context, rt runtimeapi.RuntimeServiceClient) {
	var live atomic.Int64 // when the current stream opened (unix ns), 0 when down
	h.wg.Add(1)
	go func() {
		defer h.wg.Done()
		h.pollExits(ctx, rt, func() bool {
			since := live.Load()
			return since != 0 && time.Since(time.Unix(0, since)) > exitPollInterval/2
		})
	}()
	backoff := time.Second
	for ctx.Err() == nil {
		err := h.followEvents(ctx, rt, func() { live.Store(time.Now().UnixNano()) })
		live.Store(0)
		if status.Code(err) == codes.Unimplemented {
			h.log.Info("nri: the runtime has no container events; container exits are found by listing containers")
			return
		}
		if ctx.Err() != nil {
			return
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

func (h *Host) followEvents(ctx context.Context, rt runtimeapi.RuntimeServiceClient, opened func()) error {
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
		var exit func(*api.Container)
		for _, s := range ev.GetContainersStatuses() {
			if s.GetId() == id {
				exit = exitFrom(s)
			}
		}
		h.exited(ctx, id, exit)
	}
}

// pollExits lists exited containers every exitPollInterval, unless
// streaming says the event stream is up.
func (h *Host) pollExits(ctx context.Context, rt runtimeapi.RuntimeServiceClient, streaming func() bool) {
	t := time.NewTicker(exitPollInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if streaming() || len(h.state.running()) == 0 {
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
