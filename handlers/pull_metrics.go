package handlers

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/crishim/crishim/handlers/registry"
)

// PullBuckets span image pulls: a cached layer check in 100 ms to a
// multi-gigabyte image over a slow link in half an hour.
var PullBuckets = []float64{0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1200, 1800}

// PullMetrics are the pull scheduler's metrics. The registry label is the
// canonical registry of the image, bounded by a registry.Labels (registries
// beyond the bound are "other"); never an image name, tag or credential.
type PullMetrics struct {
	labels           *registry.Labels
	queued           *prometheus.GaugeVec
	inFlight         prometheus.Gauge
	registryInFlight *prometheus.GaugeVec
	wait             prometheus.Histogram
	duration         *prometheus.HistogramVec
	pulls            *prometheus.CounterVec
	deduplicated     *prometheus.CounterVec
}

// NewPullMetrics creates the metrics and registers them with reg. labels
// bounds the registry label (nil: registry.DefaultMaxLabels registries);
// share one with NewCredentialMetrics so both name the same registries.
func NewPullMetrics(reg prometheus.Registerer, labels *registry.Labels) (*PullMetrics, error) {
	if labels == nil {
		labels = registry.NewLabels(0)
	}
	m := &PullMetrics{
		labels: labels,
		queued: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: "crishim", Subsystem: "image_pull", Name: "queue_length",
			Help: "Image pulls waiting for a slot, by queue (priority, normal).",
		}, []string{"queue"}),
		inFlight: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: "crishim", Subsystem: "image_pull", Name: "in_flight",
			Help: "Upstream image pulls running now, node-wide.",
		}),
		registryInFlight: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: "crishim", Subsystem: "image_pull", Name: "registry_in_flight",
			Help: "Upstream image pulls running now, by registry host.",
		}, []string{"registry"}),
		wait: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: "crishim", Subsystem: "image_pull", Name: "queue_wait_seconds",
			Help: "Time an upstream pull waited for a slot.", Buckets: append([]float64{0.001, 0.01}, PullBuckets...),
		}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: "crishim", Subsystem: "image_pull", Name: "duration_seconds",
			Help: "Time of the upstream PullImage call, by registry host.", Buckets: PullBuckets,
		}, []string{"registry"}),
		pulls: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "crishim", Subsystem: "image_pull", Name: "upstream_pulls_total",
			Help: "Upstream PullImage calls by registry host and result (success, error, canceled).",
		}, []string{"registry", "result"}),
		deduplicated: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "crishim", Subsystem: "image_pull", Name: "deduplicated_total",
			Help: "PullImage calls that joined an identical pull (same image, handler and credentials) instead of calling the runtime.",
		}, []string{"registry"}),
	}
	for _, c := range []prometheus.Collector{m.queued, m.inFlight, m.registryInFlight, m.wait, m.duration, m.pulls, m.deduplicated} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// label is the bounded registry label value of a canonical registry.
func (m *PullMetrics) label(reg string) string { return m.labels.Value(reg) }

// CredentialMetrics count credential use by registry host, source
// (request, none, dockerconfig, plugin:NAME, policy) and result; never a
// user name or secret.
type CredentialMetrics struct {
	labels  *registry.Labels
	results *prometheus.CounterVec
}

// NewCredentialMetrics creates the metrics and registers them with reg.
// labels bounds the registry label as in NewPullMetrics.
func NewCredentialMetrics(reg prometheus.Registerer, labels *registry.Labels) (*CredentialMetrics, error) {
	if labels == nil {
		labels = registry.NewLabels(0)
	}
	m := &CredentialMetrics{labels: labels, results: prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "crishim", Subsystem: "image_pull", Name: "credentials_total",
		Help: "Pull attempts by registry host, credential source (request, none, dockerconfig, plugin:NAME; policy for withheld credentials) and result (success, auth_failed, error, denied).",
	}, []string{"registry", "source", "result"})}
	if err := reg.Register(m.results); err != nil {
		return nil, err
	}
	return m, nil
}

// count adds one pull attempt; nil metrics count nothing.
func (m *CredentialMetrics) count(reg, source, result string) {
	if m == nil {
		return
	}
	m.results.WithLabelValues(m.labels.Value(reg), source, result).Inc()
}
