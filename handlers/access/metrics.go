package access

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/crishim/crishim/handlers/registry"
	"github.com/crishim/crishim/shim"
)

// Metrics are the image access feature's metrics. The registry label is
// bounded by a registry.Labels shared with the pull metrics.
type Metrics struct {
	labels    *registry.Labels
	decisions *prometheus.CounterVec
	errors    *prometheus.CounterVec
	images    prometheus.GaugeFunc
}

// NewMetrics creates the metrics and registers them with reg; images
// reports the size of the record. labels nil means a bound of its own.
func NewMetrics(reg prometheus.Registerer, labels *registry.Labels, images func() float64) (*Metrics, error) {
	if labels == nil {
		labels = registry.NewLabels(0)
	}
	if images == nil {
		images = func() float64 { return 0 }
	}
	m := &Metrics{
		labels: labels,
		decisions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: shim.MetricsNamespace, Subsystem: "image_access", Name: "decisions_total",
			Help: "CreateContainer checks by result (allowed, denied, unknown_image: no record, allowed or denied by images.access.unknownImages) and registry.",
		}, []string{"result", "registry"}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: shim.MetricsNamespace, Subsystem: "image_access", Name: "state_errors_total",
			Help: "Failures of the image access record by operation (load: a corrupt file was set aside; write; resolve: an image could not be resolved to its ID).",
		}, []string{"op"}),
		images: prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Namespace: shim.MetricsNamespace, Subsystem: "image_access", Name: "images",
			Help: "Images in the image access record.",
		}, images),
	}
	for _, op := range []string{"load", "write", "resolve"} {
		m.errors.WithLabelValues(op) // every known series from 0, so rates work from the start
	}
	if err := shim.RegisterCollectors(reg, m.decisions, m.errors, m.images); err != nil {
		return nil, err
	}
	return m, nil
}

func (m *Metrics) decision(result, reg string) {
	if reg == "" {
		reg = "unknown" // an image ID without a record or a reference
	}
	if m != nil {
		m.decisions.WithLabelValues(result, m.labels.Value(reg)).Inc()
	}
}

func (m *Metrics) failed(op string) {
	if m != nil {
		m.errors.WithLabelValues(op).Inc()
	}
}

// StateLost counts a record that was corrupt at start and set aside.
func (m *Metrics) StateLost() { m.failed("load") }
