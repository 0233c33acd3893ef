package plugins

import (
	"context"

	"github.com/containerd/nri/pkg/api"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/crishim/crishim/shim"
)

// StopPodSandbox stops the sandbox, then tells the plugins: its containers
// that had no NRI StopContainer yet get one first, as the runtime stopped
// them. Plugin failures here are logged (the sandbox is stopped).
func (h *Host) StopPodSandbox(ctx context.Context, req *runtimeapi.StopPodSandboxRequest,
	next shim.Next[*runtimeapi.StopPodSandboxRequest, *runtimeapi.StopPodSandboxResponse]) (*runtimeapi.StopPodSandboxResponse, error) {
	return afterRuntime(h, ctx, req, next, func() {
		id := req.GetPodSandboxId()
		for _, rtID := range h.state.containersOf(id) {
			h.stopped(ctx, rtID, nil)
		}
		h.podStopped(ctx, id)
	})
}

// podStopped sends a pod's NRI StopPodSandbox once (the kubelet may call
// StopPodSandbox again, and RemovePodSandbox stops a pod first).
func (h *Host) podStopped(ctx context.Context, id string) {
	pod := h.state.pod(id)
	if pod == nil || !h.state.markPodStopped(id) {
		return
	}
	if err := h.nri.StopPodSandbox(ctx, &api.StopPodSandboxRequest{Pod: protoClone(pod)}); err != nil {
		h.log.WithError(err).WithField("pod", podName(pod)).Warn("nri: plugins failed StopPodSandbox (the sandbox is stopped)")
	}
}
