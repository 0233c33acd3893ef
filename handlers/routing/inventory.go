package routing

import (
	"context"
	"slices"
	"sync"
	"time"

	"github.com/sirupsen/logrus"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// DefaultResyncInterval is how often the inventory re-reads the runtime.
const DefaultResyncInterval = time.Minute

// Inventory tracks what the runtime has: the runtime handlers it reports
// (StatusResponse.runtime_handlers; containerd 1.6 reports none) and the
// ready sandboxes per handler, so the running gauge is right after a crishim
// restart and whatever else started or stopped sandboxes.
type Inventory struct {
	log        logrus.FieldLogger
	metrics    *Metrics
	configured []string
	interval   time.Duration

	mu       sync.RWMutex
	reported []string // nil: the runtime does not report handlers

	cancel context.CancelFunc
	done   chan struct{}
}

// NewInventory returns an inventory for the configured handler names. A nil
// log is logrus's standard logger; nil metrics are registered nowhere.
func NewInventory(log logrus.FieldLogger, m *Metrics, configured []string, interval time.Duration) *Inventory {
	if interval <= 0 {
		interval = DefaultResyncInterval
	}
	if log == nil {
		log = logrus.StandardLogger()
	}
	if m == nil {
		m = unregisteredMetrics()
	}
	return &Inventory{log: log, metrics: m, configured: configured, interval: interval}
}

// Start resyncs now and then every interval, until Stop. A failed resync is
// retried sooner.
func (inv *Inventory) Start(client runtimeapi.RuntimeServiceClient) {
	ctx, cancel := context.WithCancel(context.Background())
	inv.cancel, inv.done = cancel, make(chan struct{})
	go func() {
		defer close(inv.done)
		for {
			wait := inv.interval
			if err := inv.Resync(ctx, client); err != nil {
				if ctx.Err() != nil {
					return
				}
				inv.log.WithError(err).Warn("sandbox inventory: could not read the runtime; retrying")
				wait = min(wait, 5*time.Second)
			}
			select {
			case <-ctx.Done():
				return
			case <-time.After(wait):
			}
		}
	}()
}

// Stop ends the resync loop.
func (inv *Inventory) Stop() {
	if inv.cancel != nil {
		inv.cancel()
		<-inv.done
	}
}

// Resync reads the runtime's handlers and ready sandboxes once.
func (inv *Inventory) Resync(ctx context.Context, client runtimeapi.RuntimeServiceClient) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	st, err := client.Status(ctx, &runtimeapi.StatusRequest{})
	if err != nil {
		return err
	}
	var reported []string
	if hs := st.GetRuntimeHandlers(); len(hs) > 0 {
		reported = []string{}
		for _, h := range hs {
			if h.GetName() != "" {
				reported = append(reported, h.GetName())
			}
		}
	}
	inv.setReported(reported)

	list, err := client.ListPodSandbox(ctx, &runtimeapi.ListPodSandboxRequest{
		Filter: &runtimeapi.PodSandboxFilter{State: &runtimeapi.PodSandboxStateValue{State: runtimeapi.PodSandboxState_SANDBOX_READY}},
	})
	if err != nil {
		return err
	}
	counts := map[string]float64{}
	for _, h := range inv.configuredNames() {
		counts[h] = 0
	}
	for _, sb := range list.GetItems() {
		counts[handlerLabel(sandboxHandler(sb))]++
	}
	inv.metrics.running.Reset()
	for h, n := range counts {
		inv.metrics.running.WithLabelValues(h).Set(n)
	}
	return nil
}

// sandboxHandler is the handler a sandbox runs with: what crishim recorded
// when it started the sandbox, else what the runtime reports (CRI-O reports
// "" even for a non-default handler).
func sandboxHandler(sb *runtimeapi.PodSandbox) string {
	if h, ok := sb.GetAnnotations()[HandlerAnnotation]; ok {
		return h
	}
	return sb.GetRuntimeHandler()
}

func (inv *Inventory) setReported(reported []string) {
	inv.mu.Lock()
	changed := !slices.Equal(inv.reported, reported)
	inv.reported = reported
	inv.mu.Unlock()
	if reported == nil {
		return
	}
	inv.metrics.missing.Reset()
	for _, h := range inv.configuredNames() {
		if slices.Contains(reported, h) {
			inv.metrics.missing.WithLabelValues(h).Set(0)
			continue
		}
		inv.metrics.missing.WithLabelValues(h).Set(1)
		if changed {
			inv.log.WithFields(logrus.Fields{"handler": h, "runtime_handlers": reported}).
				Error("configured runtime handler is not reported by the runtime: pods routed to it will be rejected; add it to the runtime's configuration or remove it from crishim's handlers")
		}
	}
}

// SetConfigured changes the configured handler names (on reload).
func (inv *Inventory) SetConfigured(names []string) {
	inv.mu.Lock()
	inv.configured = names
	reported := inv.reported
	inv.reported = nil // report missing handlers anew
	inv.mu.Unlock()
	inv.setReported(reported)
}

func (inv *Inventory) configuredNames() []string {
	inv.mu.RLock()
	defer inv.mu.RUnlock()
	return inv.configured
}

// Reported returns the handlers the runtime reports, and false when it
// reports none (containerd 1.6) or has not been read yet.
func (inv *Inventory) Reported() ([]string, bool) {
	inv.mu.RLock()
	defer inv.mu.RUnlock()
	return inv.reported, inv.reported != nil
}

// Started counts a sandbox the runtime just started.
func (inv *Inventory) Started(handler string) {
	inv.metrics.running.WithLabelValues(handlerLabel(handler)).Inc()
}
