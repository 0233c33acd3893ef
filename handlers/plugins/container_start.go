package plugins

import (
	"context"

	"github.com/containerd/nri/pkg/api"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/crishim/crishim/shim"
)

// StartContainer tells the plugins before the runtime starts the container
// (their failure fails the call, and they get StopContainer, as in
// containerd), and again after it started.
func (h *Host) StartContainer(ctx context.Context, req *runtimeapi.StartContainerRequest,
	next shim.Next[*runtimeapi.StartContainerRequest, *runtimeapi.StartContainerResponse]) (*runtimeapi.StartContainerResponse, error) {
	block := h.nri.BlockPluginSync()
	defer block.Unblock()
	rtID := req.GetContainerId()
	ctr, pod := h.lookup(ctx, rtID)
	if ctr == nil {
		return next(ctx, req)
	}
	object := "container " + ctr.Name + " in " + podName(pod)
	if err := h.nri.StartContainer(ctx, &api.StartContainerRequest{Pod: pod, Container: ctr}); err != nil {
		ferr := h.failed(err, "StartContainer", object)
		h.stopped(context.WithoutCancel(ctx), rtID, nil)
		return nil, ferr
	}
	resp, err := next(ctx, req)
	if err != nil {
		return nil, err
	}
	h.state.setState(rtID, api.ContainerState_CONTAINER_RUNNING, nil)
	ctr.State = api.ContainerState_CONTAINER_RUNNING
	if err := h.nri.PostStartContainer(ctx, &api.PostStartContainerRequest{Pod: pod, Container: ctr}); err != nil {
		h.log.WithError(err).WithField("container", rtID).Warn("nri: plugins failed PostStartContainer (the container is running)")
	}
	return resp, nil
}

// lookup returns the NRI container and pod of a runtime container, asking
// the runtime for ones crishim has not seen (created before it hosted
// plugins); nil when the runtime does not know it either.
func (h *Host) lookup(ctx context.Context, rtID string) (*api.Container, *api.PodSandbox) {
	ctr, ok := h.state.container(rtID)
	if !ok {
		rt := h.runtime()
		if rt == nil {
			return nil, nil
		}
		st, err := rt.ContainerStatus(ctx, &runtimeapi.ContainerStatusRequest{ContainerId: rtID})
		if err != nil {
			return nil, nil
		}
		// ContainerStatus does not name the pod; ListContainers does.
		l, err := rt.ListContainers(ctx, &runtimeapi.ListContainersRequest{Filter: &runtimeapi.ContainerFilter{Id: rtID}})
		if err != nil || len(l.GetContainers()) == 0 {
			return nil, nil
		}
		ctr = containerFromStatus(l.GetContainers()[0].GetPodSandboxId(), st.GetStatus())
		h.state.putContainer(rtID, ctr)
		ctr = protoClone(ctr)
	}
	pod := h.state.pod(ctr.PodSandboxId)
	if pod == nil {
		pod = &api.PodSandbox{Id: ctr.PodSandboxId}
		if rt := h.runtime(); rt != nil {
			if st, err := rt.PodSandboxStatus(ctx, &runtimeapi.PodSandboxStatusRequest{PodSandboxId: ctr.PodSandboxId}); err == nil {
				pod = podFromStatus(st.GetStatus())
				h.state.putPod(pod)
			}
		}
	}
	return ctr, protoClone(pod)
}
