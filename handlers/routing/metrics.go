package routing

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/crishim/crishim/shim"
)

// Metrics are the sandbox routing metrics. Label values are bounded by the
// configuration: handler names (plus "default" for the runtime's default and
// "unknown" for rejected requests), rule names (plus "requested", "default").
type Metrics struct {
	decisions  *prometheus.CounterVec
	started    *prometheus.CounterVec
	mismatches *prometheus.CounterVec
	running    *prometheus.GaugeVec
	missing    *prometheus.GaugeVec
}

// NewMetrics creates the metrics and registers them with reg.
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	m := &Metrics{
		decisions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: shim.MetricsNamespace, Subsystem: "sandbox", Name: "routing_decisions_total",
			Help: "RunPodSandbox routing decisions by chosen handler, deciding rule and result (allowed, denied by a rule, rejected for an unknown handler).",
		}, []string{"handler", "rule", "result"}),
		started: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: shim.MetricsNamespace, Subsystem: "sandbox", Name: "started_total",
			Help: "Sandboxes the runtime started through crishim, by runtime handler.",
		}, []string{"handler"}),
		mismatches: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: shim.MetricsNamespace, Subsystem: "sandbox", Name: "overhead_mismatches_total",
			Help: "RunPodSandbox requests whose overhead (from the RuntimeClass) differs from the handler's configured overhead; the request's value is kept.",
		}, []string{"handler"}),
		running: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: shim.MetricsNamespace, Subsystem: "sandbox", Name: "running",
			Help: "Ready sandboxes by runtime handler, rebuilt from ListPodSandbox at start and on every resync.",
		}, []string{"handler"}),
		missing: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: shim.MetricsNamespace, Name: "runtime_handler_missing",
			Help: "1 for a configured handler the runtime does not report in StatusResponse.runtime_handlers (pods routed to it are rejected).",
		}, []string{"handler"}),
	}
	if err := shim.RegisterCollectors(reg, m.decisions, m.started, m.mismatches, m.running, m.missing); err != nil {
		return nil, err
	}
	return m, nil
}

func handlerLabel(h string) string {
	if h == "" {
		return "default"
	}
	return h
}

// unregisteredMetrics are metrics registered nowhere, for constructors
// given none: the code paths stay the same and nothing is nil.
func unregisteredMetrics() *Metrics {
	m, _ := NewMetrics(prometheus.NewRegistry()) // a fresh registry cannot refuse
	return m
}
