package shim

import (
	"context"
	"fmt"
	"net/http"
	"runtime"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// ReadyTimeout bounds the readiness probe's calls to the upstreams.
const ReadyTimeout = time.Second

// RegisterMetrics registers the server's own metrics: the state of each
// upstream connection and the build info.
func (s *Server) RegisterMetrics(reg prometheus.Registerer) error {
	up := prometheus.NewDesc(prometheus.BuildFQName(MetricsNamespace, "", "upstream_up"),
		"Whether crishim's connection to the upstream CRI endpoint is established (1) or not (0).",
		[]string{"upstream", "endpoint"}, nil)
	info := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Namespace: MetricsNamespace, Name: "build_info", Help: "crishim's version and Go version; always 1.",
	}, []string{"version", "goversion"})
	info.WithLabelValues(Version, runtime.Version()).Set(1)
	return RegisterCollectors(reg, upstreamCollector{s: s, desc: up}, info)
}

type upstreamCollector struct {
	s    *Server
	desc *prometheus.Desc
}

func (c upstreamCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c upstreamCollector) Collect(ch chan<- prometheus.Metric) {
	for _, st := range c.s.UpstreamStates() {
		v := 0.0
		if st.Up {
			v = 1
		}
		ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, v, st.Role.String(), st.Endpoint)
	}
}

// OpsHandler serves the operator endpoints: /metrics from gatherer,
// /healthz (the process is alive and serving HTTP) and /readyz (every
// upstream answers within ReadyTimeout).
func (s *Server) OpsHandler(gatherer prometheus.Gatherer) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(gatherer, promhttp.HandlerOpts{}))
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), ReadyTimeout)
		defer cancel()
		if err := s.Ready(ctx); err != nil {
			http.Error(w, "not ready: "+err.Error(), http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ok")
	})
	return mux
}
