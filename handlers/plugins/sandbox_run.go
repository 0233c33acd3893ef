package plugins

import (
	"context"

	"github.com/containerd/nri/pkg/api"
	"github.com/sirupsen/logrus"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/crishim/crishim/shim"
)

// RunPodSandbox refuses the pod while a required plugin is missing, runs
// it, and then tells the plugins (NRI RunPodSandbox comes after the sandbox
// exists, with its ID and IPs, as in containerd). If the plugins fail the
// event, the sandbox is stopped and removed and the call fails. It runs
// after crishim's routing, so plugins see the final runtime handler.
func (h *Host) RunPodSandbox(ctx context.Context, req *runtimeapi.RunPodSandboxRequest,
	next shim.Next[*runtimeapi.RunPodSandboxRequest, *runtimeapi.RunPodSandboxResponse]) (*runtimeapi.RunPodSandboxResponse, error) {
	if err := h.required(h.cfg.Load(), req.GetConfig()); err != nil {
		return nil, err
	}
	// The runtime's part (CNI, the pause image) can take seconds: a plugin
	// connecting meanwhile is not held up by it, as in containerd, which
	// blocks plugin synchronization only around the NRI event. Such a
	// plugin may see the pod in its Synchronize and then in RunPodSandbox.
	resp, err := next(ctx, req)
	if err != nil {
		return nil, err
	}
	block := h.nri.BlockPluginSync()
	defer block.Unblock()
	id := resp.GetPodSandboxId()
	pod := podFromConfig(id, req.GetRuntimeHandler(), req.GetConfig())
	if !h.tracker.any() {
		// No plugin to tell; one that connects later lists the pod.
		h.state.putPod(pod)
		return resp, nil
	}
	if rt := h.runtime(); rt != nil {
		if st, err := rt.PodSandboxStatus(ctx, &runtimeapi.PodSandboxStatusRequest{PodSandboxId: id}); err == nil {
			pod.Ips = podIPs(st.GetStatus())
		}
	}
	h.state.putPod(pod)
	if err := h.nri.RunPodSandbox(ctx, &api.RunPodSandboxRequest{Pod: protoClone(pod)}); err != nil {
		ferr := h.failed(err, "RunPodSandbox", podName(pod))
		h.undoSandbox(ctx, pod)
		return nil, ferr
	}
	return resp, nil
}

// undoSandbox stops and removes a sandbox the plugins failed, telling them.
func (h *Host) undoSandbox(ctx context.Context, pod *api.PodSandbox) {
	ctx = context.WithoutCancel(ctx)
	_ = h.nri.StopPodSandbox(ctx, &api.StopPodSandboxRequest{Pod: pod})
	_ = h.nri.RemovePodSandbox(ctx, &api.RemovePodSandboxRequest{Pod: pod})
	h.state.removePod(pod.Id)
	rt := h.runtime()
	if rt == nil {
		return
	}
	log := h.log.WithFields(logrus.Fields{"pod": podName(pod), "pod_id": pod.Id})
	if _, err := rt.StopPodSandbox(ctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: pod.Id}); err != nil {
		log.WithError(err).Warn("nri: stopping the sandbox the plugins failed")
	}
	if _, err := rt.RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: pod.Id}); err != nil {
		log.WithError(err).Warn("nri: removing the sandbox the plugins failed")
	}
}

func podName(p *api.PodSandbox) string { return "pod " + p.GetNamespace() + "/" + p.GetName() }
