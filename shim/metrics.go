package shim

import "github.com/prometheus/client_golang/prometheus"

// MetricsNamespace starts the name of every crishim metric
// ("crishim_grpc_server_handled_total"); every package that registers
// metrics uses it, so the prefix is written once.
const MetricsNamespace = "crishim"

// RegisterCollectors registers collectors with reg in order and returns the
// first error (a name registered twice): each package builds its metrics
// into one struct and registers them with this one call, with the
// prometheus.Registerer the daemon injects (never the global registry).
func RegisterCollectors(reg prometheus.Registerer, collectors ...prometheus.Collector) error {
	for _, c := range collectors {
		if err := reg.Register(c); err != nil {
			return err
		}
	}
	return nil
}
