package plugins

import (
	"context"

	"github.com/containerd/nri/pkg/api"
	"google.golang.org/protobuf/proto"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/crishim/crishim/shim"
)

// StopContainer stops the container, then tells the plugins (NRI's
// StopContainer comes after the container stopped). Updates they return
// for other containers are applied; failures are logged.
func (h *Host) StopContainer(ctx context.Context, req *runtimeapi.StopContainerRequest,
	next shim.Next[*runtimeapi.StopContainerRequest, *runtimeapi.StopContainerResponse]) (*runtimeapi.StopContainerResponse, error) {
	return afterRuntime(h, ctx, req, next, func() { h.stopped(ctx, req.GetContainerId(), nil) })
}

// afterRuntime forwards a call, and when the runtime has done it, tells the
// plugins with then: the events that follow a runtime action (stop,
// remove). A plugin connecting meanwhile is synchronized before or after,
// never in between. Plugins' failures there are logged by then: the
// runtime's result stands.
func afterRuntime[Req, Resp proto.Message](h *Host, ctx context.Context, req Req, next shim.Next[Req, Resp], then func()) (Resp, error) {
	block := h.nri.BlockPluginSync()
	defer block.Unblock()
	resp, err := next(ctx, req)
	if err != nil {
		return resp, err
	}
	then()
	return resp, nil
}

// stopped sends a container's NRI StopContainer once, however it stopped;
// exit fills in how it ended when the runtime said.
func (h *Host) stopped(ctx context.Context, rtID string, exit func(*api.Container)) {
	if _, ok := h.state.container(rtID); !ok || !h.state.markStopped(rtID) {
		return
	}
	h.state.setState(rtID, api.ContainerState_CONTAINER_STOPPED, exit)
	ctr, pod := h.lookup(ctx, rtID)
	if ctr == nil {
		return
	}
	rpl, err := h.nri.StopContainer(ctx, &api.StopContainerRequest{Pod: pod, Container: ctr})
	if err != nil {
		h.log.WithError(err).WithField("container", rtID).Warn("nri: plugins failed StopContainer (the container is stopped)")
		return
	}
	h.applyUpdates(ctx, rpl.GetUpdate())
}
