package plugins

import (
	"context"

	"github.com/containerd/nri/pkg/api"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/crishim/crishim/shim"
)

// UpdateContainerResources asks the plugins first (they may change the
// resources, or fail the call), sends the runtime the result, and tells
// them after.
func (h *Host) UpdateContainerResources(ctx context.Context, req *runtimeapi.UpdateContainerResourcesRequest,
	next shim.Next[*runtimeapi.UpdateContainerResourcesRequest, *runtimeapi.UpdateContainerResourcesResponse]) (*runtimeapi.UpdateContainerResourcesResponse, error) {
	block := h.nri.BlockPluginSync()
	defer block.Unblock()
	rtID := req.GetContainerId()
	ctr, pod := h.lookup(ctx, rtID)
	if ctr == nil || req.GetLinux() == nil {
		return next(ctx, req)
	}
	object := "container " + ctr.Name + " in " + podName(pod)
	rpl, err := h.nri.UpdateContainer(ctx, &api.UpdateContainerRequest{Pod: pod, Container: ctr, LinuxResources: resourcesFromCRI(req.GetLinux())})
	if err != nil {
		return nil, h.failed(err, "UpdateContainer", object)
	}
	out := req
	var others []*api.ContainerUpdate
	for _, u := range rpl.GetUpdate() {
		if u == nil {
			continue
		}
		if u.GetContainerId() != ctr.Id {
			others = append(others, u)
			continue
		}
		out = protoClone(req)
		if dropped := applyResources(out.Linux, u.GetLinux().GetResources()); len(dropped) > 0 {
			h.log.WithField("container", rtID).Warnf("nri: a plugin's resources for UpdateContainerResources ask for what CRI cannot carry, left out: %s", describe(dropped))
		}
	}
	resp, err := next(ctx, out)
	if err != nil {
		return nil, err
	}
	res := resourcesFromCRI(out.GetLinux())
	h.state.setState(rtID, ctr.State, func(c *api.Container) {
		if c.Linux == nil {
			c.Linux = &api.LinuxContainer{}
		}
		c.Linux.Resources = res
	})
	h.applyUpdates(ctx, others)
	if ctr.Linux == nil {
		ctr.Linux = &api.LinuxContainer{}
	}
	ctr.Linux.Resources = res
	if err := h.nri.PostUpdateContainer(ctx, &api.PostUpdateContainerRequest{Pod: pod, Container: ctr}); err != nil {
		h.log.WithError(err).WithField("container", rtID).Warn("nri: plugins failed PostUpdateContainer (the container is updated)")
	}
	return resp, nil
}
