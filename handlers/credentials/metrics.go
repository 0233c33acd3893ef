package credentials

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/crishim/crishim/handlers/registry"
	"github.com/crishim/crishim/shim"
)

// Metrics count credential use by registry host, source
// (request, none, dockerconfig, plugin:NAME, policy) and result; never a
// user name or secret.
type Metrics struct {
	labels  *registry.Labels
	results *prometheus.CounterVec
}

// NewMetrics creates the metrics and registers them with reg.
// labels bounds the registry label as in pulls.NewMetrics; share one.
func NewMetrics(reg prometheus.Registerer, labels *registry.Labels) (*Metrics, error) {
	if labels == nil {
		labels = registry.NewLabels(0)
	}
	m := &Metrics{labels: labels, results: prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: shim.MetricsNamespace, Subsystem: "image_pull", Name: "credentials_total",
		Help: "Pull attempts by registry host, credential source (request, none, dockerconfig, plugin:NAME; policy for withheld credentials) and result (success, auth_failed, error, denied).",
	}, []string{"registry", "source", "result"})}
	if err := shim.RegisterCollectors(reg, m.results); err != nil {
		return nil, err
	}
	return m, nil
}

// count adds one pull attempt; nil metrics count nothing.
func (m *Metrics) count(reg, source, result string) {
	if m == nil {
		return
	}
	m.results.WithLabelValues(m.labels.Value(reg), source, result).Inc()
}
