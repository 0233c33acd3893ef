package plugins

import (
	"context"

	"github.com/containerd/nri/pkg/api"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/crishim/crishim/shim"
)

// RemovePodSandbox removes the sandbox, then tells the plugins, with the
// events it and its containers still needed (a pod removed without a
// StopPodSandbox gets one first, as in containerd). Plugin failures are
// logged.
func (h *Host) RemovePodSandbox(ctx context.Context, req *runtimeapi.RemovePodSandboxRequest,
	next shim.Next[*runtimeapi.RemovePodSandboxRequest, *runtimeapi.RemovePodSandboxResponse]) (*runtimeapi.RemovePodSandboxResponse, error) {
	return afterRuntime(h, ctx, req, next, func() {
		id := req.GetPodSandboxId()
		for _, rtID := range h.state.containersOf(id) {
			h.stopped(ctx, rtID, nil)
			h.removed(ctx, rtID)
		}
		h.podRemoved(ctx, id)
	})
}

// podRemoved sends a pod's NRI StopPodSandbox if it had none, then its
// RemovePodSandbox, and forgets it.
func (h *Host) podRemoved(ctx context.Context, id string) {
	h.podStopped(ctx, id)
	pod := h.state.pod(id)
	if pod == nil {
		return
	}
	if err := h.nri.RemovePodSandbox(ctx, &api.RemovePodSandboxRequest{Pod: protoClone(pod)}); err != nil {
		h.log.WithError(err).WithField("pod", podName(pod)).Warn("nri: plugins failed RemovePodSandbox (the sandbox is removed)")
	}
	h.state.removePod(id)
}
