package plugins

import (
	"context"

	"github.com/containerd/nri/pkg/api"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/crishim/crishim/shim"
)

// UpdatePodSandboxResources (in-place pod resize) asks the plugins first:
// their failure fails the call, as in containerd; their answer carries
// nothing CRI could apply. They are told again after the runtime's update.
func (h *Host) UpdatePodSandboxResources(ctx context.Context, req *runtimeapi.UpdatePodSandboxResourcesRequest,
	next shim.Next[*runtimeapi.UpdatePodSandboxResourcesRequest, *runtimeapi.UpdatePodSandboxResourcesResponse]) (*runtimeapi.UpdatePodSandboxResourcesResponse, error) {
	pod := h.state.pod(req.GetPodSandboxId())
	if pod == nil {
		return next(ctx, req)
	}
	pod = protoClone(pod)
	if _, err := h.nri.UpdatePodSandbox(ctx, &api.UpdatePodSandboxRequest{Pod: pod,
		OverheadLinuxResources: resourcesFromCRI(req.GetOverhead()), LinuxResources: resourcesFromCRI(req.GetResources())}); err != nil {
		return nil, h.failed(err, "UpdatePodSandbox", podName(pod))
	}
	resp, err := next(ctx, req)
	if err != nil {
		return nil, err
	}
	if err := h.nri.PostUpdatePodSandbox(ctx, &api.PostUpdatePodSandboxRequest{Pod: pod}); err != nil {
		h.log.WithError(err).WithField("pod", podName(pod)).Warn("nri: plugins failed PostUpdatePodSandbox (the pod is updated)")
	}
	return resp, nil
}
