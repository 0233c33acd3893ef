package plugins

import (
	"context"
	"errors"
	"sync"
	"time"

	nri "github.com/containerd/nri/pkg/adaptation"
	"github.com/containerd/ttrpc"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/crishim/crishim/shim"
)

// maxPluginLabels bounds the plugin label: names come from whoever can
// connect to the plugin socket (root), and series are never deleted.
const maxPluginLabels = 32

// Metrics are the plugin host's metrics, per plugin. It implements NRI's
// adaptation.Metrics, which the adaptation calls for every event a plugin
// handles.
type Metrics struct {
	events      *prometheus.CounterVec
	latency     *prometheus.HistogramVec
	adjustments *prometheus.CounterVec
	unsupported *prometheus.CounterVec
	registered  *prometheus.GaugeVec
	disconnects *prometheus.CounterVec
	refusals    *prometheus.CounterVec

	mu   sync.Mutex
	seen map[string]bool
}

var _ nri.Metrics = (*Metrics)(nil)

// NewMetrics creates the metrics and registers them with reg.
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	m := &Metrics{
		events: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: shim.MetricsNamespace, Subsystem: "nri", Name: "plugin_events_total",
			Help: "Events NRI plugins handled, by plugin, event and result (ok; error: the plugin refused; timeout: nri.requestTimeout passed; closed: the connection was lost).",
		}, []string{"plugin", "event", "result"}),
		// A plugin answers in microseconds to milliseconds; the default
		// request timeout is 2s, so the buckets end there.
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: shim.MetricsNamespace, Subsystem: "nri", Name: "plugin_event_duration_seconds",
			Help:    "Time NRI plugins took per event, by plugin and event.",
			Buckets: []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2, 5},
		}, []string{"plugin", "event"}),
		adjustments: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: shim.MetricsNamespace, Subsystem: "nri", Name: "plugin_adjustments_total",
			Help: "Container adjustments, updates and evictions NRI plugins asked for, by plugin and kind (adjust, update, evict).",
		}, []string{"plugin", "kind"}),
		unsupported: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: shim.MetricsNamespace, Subsystem: "nri", Name: "unsupported_adjustments_total",
			Help: "Adjustments CRI cannot carry, by plugin, field and action (refused: CreateContainer failed; dropped: the rest was applied).",
		}, []string{"plugin", "field", "action"}),
		registered: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: shim.MetricsNamespace, Subsystem: "nri", Name: "plugins_registered",
			Help: "Connections of NRI plugins that registered and are connected, by plugin.",
		}, []string{"plugin"}),
		disconnects: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: shim.MetricsNamespace, Subsystem: "nri", Name: "plugin_disconnects_total",
			Help: "Registered NRI plugins whose connection closed (crash, exit, or dropped after a failure), by plugin.",
		}, []string{"plugin"}),
		refusals: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: shim.MetricsNamespace, Subsystem: "nri", Name: "required_plugin_refusals_total",
			Help: "RunPodSandbox calls refused because a required NRI plugin was not registered, by plugin.",
		}, []string{"plugin"}),
		seen: map[string]bool{},
	}
	if err := shim.RegisterCollectors(reg, m.events, m.latency, m.adjustments, m.unsupported, m.registered, m.disconnects, m.refusals); err != nil {
		return nil, err
	}
	return m, nil
}

// label is a plugin's label value: its name without NRI's index ("10-foo"
// is "foo", as nri.plugins names it), bounded: the first maxPluginLabels
// names keep theirs.
func (m *Metrics) label(name string) string {
	if len(name) > 3 && name[2] == '-' && name[0] >= '0' && name[0] <= '9' && name[1] >= '0' && name[1] <= '9' {
		name = name[3:]
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.seen[name] {
		return name
	}
	if len(m.seen) >= maxPluginLabels {
		return "other"
	}
	m.seen[name] = true
	return name
}

// RecordPluginInvocation counts an event a plugin handled.
func (m *Metrics) RecordPluginInvocation(plugin, event string, err error) {
	if m == nil {
		return
	}
	m.events.WithLabelValues(m.label(plugin), event, eventResult(err)).Inc()
}

// eventResult classifies a plugin's answer the way NRI's failure policy
// does.
func eventResult(err error) string {
	switch {
	case err == nil:
		return "ok"
	case errors.Is(err, context.DeadlineExceeded):
		return "timeout"
	case errors.Is(err, ttrpc.ErrClosed), errors.Is(err, ttrpc.ErrServerClosed), errors.Is(err, ttrpc.ErrProtocol):
		return "closed"
	default:
		return "error"
	}
}

// RecordPluginLatency observes the time a plugin took for an event.
func (m *Metrics) RecordPluginLatency(plugin, event string, d time.Duration) {
	if m == nil {
		return
	}
	m.latency.WithLabelValues(m.label(plugin), event).Observe(d.Seconds())
}

// RecordPluginAdjustments counts what a plugin asked to change.
func (m *Metrics) RecordPluginAdjustments(plugin, _ string, adjust *nri.ContainerAdjustment, updates, evicts int) {
	if m == nil {
		return
	}
	l := m.label(plugin)
	if adjust != nil && !isEmptyAdjustment(adjust) {
		m.adjustments.WithLabelValues(l, "adjust").Inc()
	}
	m.adjustments.WithLabelValues(l, "update").Add(float64(updates))
	m.adjustments.WithLabelValues(l, "evict").Add(float64(evicts))
}

// UpdatePluginCount is NRI's count of plugins; crishim counts per plugin
// in registered instead.
func (m *Metrics) UpdatePluginCount(int) {}

// known starts the series of the plugins the configuration names at 0, so
// that rates and alerts on them work before their first event.
func (m *Metrics) known(cfg *Config) {
	if m == nil {
		return
	}
	for _, p := range cfg.Plugins {
		l := m.label(p.Name)
		m.registered.WithLabelValues(l)
		m.disconnects.WithLabelValues(l)
		if p.Required {
			m.refusals.WithLabelValues(l)
		}
	}
}

func (m *Metrics) unsupportedField(plugin, field, action string) {
	if m != nil {
		m.unsupported.WithLabelValues(m.label(plugin), field, action).Inc()
	}
}

func (m *Metrics) connected(plugin string, delta float64) {
	if m != nil {
		m.registered.WithLabelValues(m.label(plugin)).Add(delta)
	}
}

func (m *Metrics) disconnected(plugin string) {
	if m != nil {
		m.registered.WithLabelValues(m.label(plugin)).Dec()
		m.disconnects.WithLabelValues(m.label(plugin)).Inc()
	}
}

func (m *Metrics) refused(plugin string) {
	if m != nil {
		m.refusals.WithLabelValues(m.label(plugin)).Inc()
	}
}
