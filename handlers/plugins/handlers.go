package plugins

import (
	"github.com/crishim/crishim/shim"
)

const runtimeService = "/runtime.v1.RuntimeService/"

// Handlers returns the typed handlers of the calls NRI has events for.
func (h *Host) Handlers() []shim.Handler {
	return []shim.Handler{
		shim.Intercept(runtimeService+"RunPodSandbox", h.RunPodSandbox),
		shim.Intercept(runtimeService+"StopPodSandbox", h.StopPodSandbox),
		shim.Intercept(runtimeService+"RemovePodSandbox", h.RemovePodSandbox),
		shim.Intercept(runtimeService+"UpdatePodSandboxResources", h.UpdatePodSandboxResources),
		shim.Intercept(runtimeService+"CreateContainer", h.CreateContainer),
		shim.Intercept(runtimeService+"StartContainer", h.StartContainer),
		shim.Intercept(runtimeService+"UpdateContainerResources", h.UpdateContainerResources),
		shim.Intercept(runtimeService+"StopContainer", h.StopContainer),
		shim.Intercept(runtimeService+"RemoveContainer", h.RemoveContainer),
	}
}
