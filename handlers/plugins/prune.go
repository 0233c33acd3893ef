package plugins

import (
	"context"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// pruneInterval is how often crishim compares what it knows with what the
// runtime has.
var pruneInterval = 5 * time.Minute

// pruneGone gives plugins the end of pods and containers that left the
// runtime without a CRI call through crishim (removed with crictl against
// the runtime's own socket, or while crishim was down), and forgets them:
// plugins release what they hold for them, and crishim's state stays as
// large as the node.
func (h *Host) pruneGone(ctx context.Context, rt runtimeapi.RuntimeServiceClient) {
	t := time.NewTicker(pruneInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		h.prune(ctx, rt)
	}
}

func (h *Host) prune(ctx context.Context, rt runtimeapi.RuntimeServiceClient) {
	// Only what crishim knew before listing can be gone: a pod or container
	// created meanwhile is in crishim's state but not in the lists.
	pods, ctrs := h.state.known()
	pl, err := rt.ListPodSandbox(ctx, &runtimeapi.ListPodSandboxRequest{})
	if err != nil {
		return
	}
	cl, err := rt.ListContainers(ctx, &runtimeapi.ListContainersRequest{})
	if err != nil {
		return
	}
	there := map[string]bool{}
	for _, p := range pl.GetItems() {
		there[p.GetId()] = true
	}
	for _, c := range cl.GetContainers() {
		there[c.GetId()] = true
	}
	block := h.nri.BlockPluginSync()
	defer block.Unblock()
	for _, id := range ctrs {
		if !there[id] {
			h.log.WithField("container", id).Info("nri: a container left the runtime without a RemoveContainer through crishim; telling the plugins")
			h.stopped(ctx, id, nil)
			h.removed(ctx, id)
		}
	}
	for _, id := range pods {
		if there[id] {
			continue
		}
		h.log.WithField("pod_id", id).Info("nri: a pod left the runtime without a RemovePodSandbox through crishim; telling the plugins")
		h.podRemoved(ctx, id)
	}
}
