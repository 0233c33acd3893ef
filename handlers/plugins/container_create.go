package plugins

import (
	"context"

	"github.com/containerd/nri/pkg/api"
	"github.com/sirupsen/logrus"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/crishim/crishim/shim"
)

// CreateContainer asks the plugins before the runtime sees the call and
// sends the runtime the request with their adjustments. Adjustments CRI
// cannot carry are refused (the call fails naming the plugin and the
// field) or dropped with a warning, per nri.unsupportedAdjustments;
// conflicts between plugins fail the call naming both, as NRI does. If the
// runtime then fails, the plugins get StopContainer and RemoveContainer to
// undo what they did for it.
func (h *Host) CreateContainer(ctx context.Context, req *runtimeapi.CreateContainerRequest,
	next shim.Next[*runtimeapi.CreateContainerRequest, *runtimeapi.CreateContainerResponse]) (*runtimeapi.CreateContainerResponse, error) {
	block := h.nri.BlockPluginSync()
	defer block.Unblock()
	podID := req.GetPodSandboxId()
	pod := h.state.pod(podID)
	if pod == nil {
		// A pod from before crishim hosted plugins (or before a restart).
		pod = podFromConfig(podID, "", req.GetSandboxConfig())
		h.state.putPod(pod)
	}
	if !h.tracker.any() {
		// No plugin: the request goes as it came, and the container is
		// known to plugins that connect later by its runtime ID. The one
		// exception is crishim's own ID annotation, which a client could
		// set to pass as another container to plugins that connect later.
		if _, spoofed := req.GetConfig().GetAnnotations()[IDAnnotation]; spoofed {
			req = cloneCreate(req)
			delete(req.Config.Annotations, IDAnnotation)
		}
		resp, err := next(ctx, req)
		if err == nil {
			ctr := containerFromCreate(resp.GetContainerId(), req)
			ctr.State = api.ContainerState_CONTAINER_CREATED
			h.state.putContainer(resp.GetContainerId(), ctr)
		}
		return resp, err
	}
	nriID := newID()
	ctr := containerFromCreate(nriID, req)
	object := "container " + ctr.Name + " in " + podName(pod)
	c := &call{}
	nreq := &api.CreateContainerRequest{Pod: protoClone(pod), Container: ctr}
	rpl, err := h.nri.CreateContainer(context.WithValue(ctx, callKey{}, c), nreq)
	for _, u := range c.refused {
		h.metrics.unsupportedField(u.owner, u.field, "refused")
	}
	if err != nil {
		// Plugins before the one that failed may have reserved resources
		// for the container; the kubelet retries with a new one. As
		// containerd does, every plugin hears the container is gone.
		h.undoCreate(ctx, pod, ctr)
		if len(c.refused) > 0 {
			return nil, h.failed(unsupportedError(c.refused), "CreateContainer", object)
		}
		return nil, h.failed(err, "CreateContainer", object)
	}
	if len(c.dropped) > 0 {
		for _, u := range c.dropped {
			h.metrics.unsupportedField(u.owner, u.field, "dropped")
		}
		h.log.WithFields(logrus.Fields{"container": ctr.Name, "pod": podName(pod)}).Warnf("nri: left out adjustments CRI cannot carry (nri.unsupportedFields: drop): %s", describe(c.dropped))
	}
	// nreq.Container is NRI's view after the adjustments.
	out := applyAdjustment(req, nreq.Container, rpl.GetAdjust())
	if out == req {
		out = cloneCreate(req)
	}
	if out.Config == nil {
		out.Config = &runtimeapi.ContainerConfig{}
	}
	if out.Config.Annotations == nil {
		out.Config.Annotations = map[string]string{}
	}
	out.Config.Annotations[IDAnnotation] = nriID
	resp, err := next(ctx, out)
	if err != nil {
		// Plugins may have reserved resources for the container.
		h.undoCreate(ctx, pod, nreq.Container)
		return nil, err
	}
	final := nreq.Container
	final.State = api.ContainerState_CONTAINER_CREATED
	final.Annotations[IDAnnotation] = nriID
	h.state.putContainer(resp.GetContainerId(), final)
	h.applyUpdates(ctx, rpl.GetUpdate())
	if err := h.nri.PostCreateContainer(ctx, &api.PostCreateContainerRequest{Pod: protoClone(pod), Container: protoClone(final)}); err != nil {
		h.log.WithError(err).WithField("container", resp.GetContainerId()).Warn("nri: plugins failed PostCreateContainer (the container is created)")
	}
	return resp, nil
}

// undoCreate tells the plugins a container they were asked about will not
// exist: StopContainer and RemoveContainer, as containerd's NRI does.
func (h *Host) undoCreate(ctx context.Context, pod *api.PodSandbox, ctr *api.Container) {
	undo := context.WithoutCancel(ctx)
	final := protoClone(ctr)
	final.State = api.ContainerState_CONTAINER_STOPPED
	if _, err := h.nri.StopContainer(undo, &api.StopContainerRequest{Pod: protoClone(pod), Container: final}); err != nil {
		h.log.WithError(err).WithField("container", ctr.GetName()).Debug("nri: plugins failed StopContainer for a container that was not created")
	}
	if err := h.nri.RemoveContainer(undo, &api.RemoveContainerRequest{Pod: protoClone(pod), Container: final}); err != nil {
		h.log.WithError(err).WithField("container", ctr.GetName()).Debug("nri: plugins failed RemoveContainer for a container that was not created")
	}
}

// unsupportedError is the refusal of adjustments CRI cannot carry.
type unsupportedError []unsupported

func (e unsupportedError) Error() string {
	return "adjustments CRI cannot carry to the runtime: " + describe(e) +
		"; remove them from the plugin's configuration, or let crishim leave them out with nri.unsupportedFields: {<field>: drop}"
}
