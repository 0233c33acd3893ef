package routing

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"sync/atomic"

	"github.com/sirupsen/logrus"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/crishim/crishim/shim"
)

// SandboxRunner intercepts RunPodSandbox: it routes the pod to a runtime
// handler, refuses what policy denies and handlers nobody knows, fills in
// the handler's overhead and Kata VM size, and records its decision on the
// sandbox.
type SandboxRunner struct {
	router    atomic.Pointer[Router]
	inventory *Inventory
	metrics   *Metrics
	log       logrus.FieldLogger
}

// NewSandboxRunner returns the RunPodSandbox handler for a validated
// configuration. Nil arguments get harmless defaults rather than a panic on
// the first pod: no router routes nothing (every pod keeps its handler), no
// inventory knows no runtime handlers, nil metrics are registered nowhere,
// a nil log is logrus's standard logger.
func NewSandboxRunner(router *Router, inv *Inventory, m *Metrics, log logrus.FieldLogger) *SandboxRunner {
	if log == nil {
		log = logrus.StandardLogger()
	}
	if m == nil {
		m = unregisteredMetrics()
	}
	if router == nil {
		router = NewRouter(nil, Routing{})
	}
	if inv == nil {
		inv = NewInventory(log, m, router.Known(), 0)
	}
	s := &SandboxRunner{inventory: inv, metrics: m, log: log}
	s.router.Store(router)
	return s
}

// SetRouter swaps the routing configuration (on reload); calls already
// routing finish with the one they started with.
func (s *SandboxRunner) SetRouter(r *Router) {
	s.router.Store(r)
	s.inventory.SetConfigured(r.Known())
}

// Handler returns the typed handler to register with the shim.
func (s *SandboxRunner) Handler() shim.Handler {
	return shim.Intercept(runtimeapi.RuntimeService_RunPodSandbox_FullMethodName, s.RunPodSandbox)
}

// RunPodSandbox routes one pod and forwards it to the runtime.
func (s *SandboxRunner) RunPodSandbox(ctx context.Context, req *runtimeapi.RunPodSandboxRequest,
	next shim.Next[*runtimeapi.RunPodSandboxRequest, *runtimeapi.RunPodSandboxResponse]) (*runtimeapi.RunPodSandboxResponse, error) {
	cfg := req.GetConfig()
	md := cfg.GetMetadata()
	if md == nil || md.GetName() == "" || md.GetNamespace() == "" {
		return nil, status.Error(codes.InvalidArgument, "crishim: RunPodSandbox needs config.metadata with a name and a namespace to route the pod")
	}
	pod := fmt.Sprintf("%s/%s", md.GetNamespace(), md.GetName())
	router := s.router.Load()
	d := router.Decide(Pod{
		Namespace:        md.GetNamespace(),
		Labels:           cfg.GetLabels(),
		Annotations:      cfg.GetAnnotations(),
		RequestedHandler: req.GetRuntimeHandler(),
	})
	fields := logrus.Fields{"pod": pod, "requested_handler": req.GetRuntimeHandler(), "handler": d.Handler, "rule": d.Rule}
	if d.Denied {
		s.metrics.decisions.WithLabelValues(handlerLabel(d.Handler), d.Rule, "denied").Inc()
		s.log.WithFields(fields).WithField("reason", d.Reason).Info("sandbox denied by routing rule")
		return nil, status.Errorf(codes.PermissionDenied, "crishim: pod %s denied by routing rule %q: %s", pod, d.Rule, d.Reason)
	}
	if err := s.checkKnown(router, d.Handler, pod); err != nil {
		s.metrics.decisions.WithLabelValues("unknown", d.Rule, "rejected").Inc()
		s.log.WithFields(fields).Warn("sandbox rejected: unknown runtime handler")
		return nil, err
	}
	s.metrics.decisions.WithLabelValues(handlerLabel(d.Handler), d.Rule, "allowed").Inc()

	req.RuntimeHandler = d.Handler
	if cfg.Annotations == nil {
		cfg.Annotations = map[string]string{}
	}
	if h := router.Handler(d.Handler); h != nil {
		s.applyHandler(cfg, h, fields)
	}
	cfg.Annotations[HandlerAnnotation] = handlerLabel(d.Handler)
	cfg.Annotations[RuleAnnotation] = d.Rule

	resp, err := next(ctx, req)
	if err != nil {
		return nil, err // the runtime's error, unchanged
	}
	s.metrics.started.WithLabelValues(handlerLabel(d.Handler)).Inc()
	s.inventory.Started(d.Handler)
	s.log.WithFields(fields).WithField("pod_id", resp.GetPodSandboxId()).Info("sandbox routed")
	return resp, nil
}

// checkKnown refuses a handler crishim is not configured with, and one the
// runtime does not report where it reports its handlers: such a pod would
// only fail later, inside the runtime, with a less useful message.
func (s *SandboxRunner) checkKnown(router *Router, handler, pod string) error {
	if handler == "" {
		return nil // no default configured: the runtime's own default
	}
	if router.Handler(handler) == nil {
		return status.Errorf(codes.InvalidArgument,
			"crishim: pod %s asks for runtime handler %q, which is not configured on this node (known: %v); fix the pod's RuntimeClass or add the handler to crishim's handlers",
			pod, handler, router.Known())
	}
	if reported, ok := s.inventory.Reported(); ok && !slices.Contains(reported, handler) {
		return status.Errorf(codes.InvalidArgument,
			"crishim: pod %s asks for runtime handler %q, which crishim knows but the runtime does not report (runtime handlers: %v); add it to the runtime's configuration",
			pod, handler, reported)
	}
	return nil
}

// applyHandler fills the handler's overhead when the kubelet sent none,
// sizes a Kata VM, and adds the handler's annotations.
func (s *SandboxRunner) applyHandler(cfg *runtimeapi.PodSandboxConfig, h *RuntimeHandler, fields logrus.Fields) {
	if h.Overhead != nil || h.VMSizing != nil {
		if cfg.Linux == nil {
			cfg.Linux = &runtimeapi.LinuxPodSandboxConfig{}
		}
	}
	if h.Overhead != nil {
		want := h.Overhead.linuxResources()
		switch {
		case absent(cfg.Linux.Overhead):
			cfg.Linux.Overhead = want
		case !sameOverhead(cfg.Linux.Overhead, want):
			// The RuntimeClass is the cluster's truth: the scheduler and the
			// pod cgroup already used it. Keep it, and say the two drifted.
			s.metrics.mismatches.WithLabelValues(h.Name).Inc()
			s.log.WithFields(fields).WithFields(logrus.Fields{
				"request_overhead_millicpu": milliCPU(cfg.Linux.Overhead), "request_overhead_memory": cfg.Linux.Overhead.MemoryLimitInBytes,
				"configured_overhead_millicpu": milliCPU(want), "configured_overhead_memory": want.MemoryLimitInBytes,
			}).Warn("pod overhead from the RuntimeClass differs from crishim's handler overhead; keeping the request's (regenerate RuntimeClasses with crishim runtimeclasses)")
		}
	}
	maps.Copy(cfg.Annotations, h.Annotations)
	if h.VMSizing != nil {
		maps.Copy(cfg.Annotations, h.VMSizing.vmAnnotations(cfg.Linux.Resources, cfg.Linux.Overhead))
	}
}
