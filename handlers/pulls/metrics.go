package pulls

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/crishim/crishim/handlers/registry"
	"github.com/crishim/crishim/shim"
)

// Buckets span image pulls: a cached layer check in 100 ms to a
// multi-gigabyte image over a slow link in half an hour.
var Buckets = []float64{0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1200, 1800}

// Metrics are the pull scheduler's metrics. The registry label is the
// canonical registry of the image, bounded by a registry.Labels (registries
// beyond the bound are "other"); never an image name, tag or credential.
type Metrics struct {
	labels           *registry.Labels
	queued           *prometheus.GaugeVec
	inFlight         prometheus.Gauge
	registryInFlight *prometheus.GaugeVec
	wait             prometheus.Histogram
	duration         *prometheus.HistogramVec
	pulls            *prometheus.CounterVec
	deduplicated     *prometheus.CounterVec
}

// NewMetrics creates the metrics and registers them with reg. labels
// bounds the registry label (nil: registry.DefaultMaxLabels registries);
// share one with credentials.NewMetrics so both name the same registries.
func NewMetrics(reg prometheus.Registerer, labels *registry.Labels) (*Metrics, error) {
	if labels == nil {
		labels = registry.NewLabels(0)
	}
	m := &Metrics{
		labels: labels,
		queued: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: shim.MetricsNamespace, Subsystem: "image_pull", Name: "queue_length",
			Help: "Image pulls waiting for a slot, by queue (priority, normal).",
		}, []string{"queue"}),
		inFlight: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: shim.MetricsNamespace, Subsystem: "image_pull", Name: "in_flight",
			Help: "Upstream image pulls running now, node-wide.",
		}),
		registryInFlight: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: shim.MetricsNamespace, Subsystem: "image_pull", Name: "registry_in_flight",
			Help: "Upstream image pulls running now, by registry host.",
		}, []string{"registry"}),
		wait: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: shim.MetricsNamespace, Subsystem: "image_pull", Name: "queue_wait_seconds",
			Help: "Time an upstream pull waited for a slot.", Buckets: append([]float64{0.001, 0.01}, Buckets...),
		}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: shim.MetricsNamespace, Subsystem: "image_pull", Name: "duration_seconds",
			Help: "Time of the upstream PullImage call, by registry host.", Buckets: Buckets,
		}, []string{"registry"}),
		pulls: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: shim.MetricsNamespace, Subsystem: "image_pull", Name: "upstream_pulls_total",
			Help: "Upstream PullImage calls by registry host and result (success, error, canceled).",
		}, []string{"registry", "result"}),
		deduplicated: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: shim.MetricsNamespace, Subsystem: "image_pull", Name: "deduplicated_total",
			Help: "PullImage calls that joined an identical pull (same image, handler and credentials) instead of calling the runtime.",
		}, []string{"registry"}),
	}
	if err := shim.RegisterCollectors(reg, m.queued, m.inFlight, m.registryInFlight, m.wait, m.duration, m.pulls, m.deduplicated); err != nil {
		return nil, err
	}
	return m, nil
}

// label is the bounded registry label value of a canonical registry.
func (m *Metrics) label(reg string) string { return m.labels.Value(reg) }
