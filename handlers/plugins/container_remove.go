package plugins

import (
	"context"

	"github.com/containerd/nri/pkg/api"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/crishim/crishim/shim"
)

// RemoveContainer removes the container, then tells the plugins (a running
// container the runtime stopped to remove it gets its StopContainer first).
func (h *Host) RemoveContainer(ctx context.Context, req *runtimeapi.RemoveContainerRequest,
	next shim.Next[*runtimeapi.RemoveContainerRequest, *runtimeapi.RemoveContainerResponse]) (*runtimeapi.RemoveContainerResponse, error) {
	return afterRuntime(h, ctx, req, next, func() {
		h.stopped(ctx, req.GetContainerId(), nil)
		h.removed(ctx, req.GetContainerId())
	})
}

// removed sends a container's NRI RemoveContainer and forgets it.
func (h *Host) removed(ctx context.Context, rtID string) {
	ctr, ok := h.state.container(rtID)
	if !ok {
		return
	}
	pod := h.state.pod(ctr.PodSandboxId)
	if pod == nil {
		pod = &api.PodSandbox{Id: ctr.PodSandboxId}
	}
	h.state.removeContainer(rtID)
	if err := h.nri.RemoveContainer(ctx, &api.RemoveContainerRequest{Pod: protoClone(pod), Container: ctr}); err != nil {
		h.log.WithError(err).WithField("container", rtID).Warn("nri: plugins failed RemoveContainer (the container is removed)")
	}
}
