package daemon

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	systemd "github.com/coreos/go-systemd/v22/daemon"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/sirupsen/logrus"

	"github.com/crishim/crishim/handlers/configfile"
	"github.com/crishim/crishim/shim"
)

// watchInterval is how often the config file is checked for changes.
var watchInterval = time.Second

// reloader reloads the configuration on request (Run's SIGHUP) and when
// the file changes: the new file is read and validated whole, then swapped
// in; calls in flight finish under the configuration they started with. An
// invalid file changes nothing.
type reloader struct {
	path string
	node *node
	log  *logrus.Logger

	reloads    *prometheus.CounterVec
	lastOK     prometheus.Gauge
	lastOKTime prometheus.Gauge

	seen     []configfile.Stamp // of watched()
	requests chan struct{}      // reload requests; requests during a reload make one more
}

// watched lists the files whose change triggers a reload: the config file
// and the credential-provider config it names (docker config files are
// re-read by the keyring itself).
func (r *reloader) watched() []string {
	paths := []string{r.path}
	if cc := r.node.cfg.Load().Images.Credentials; cc != nil && cc.Providers != nil {
		paths = append(paths, cc.Providers.Config)
	}
	return paths
}

func (r *reloader) stamps() []configfile.Stamp {
	var out []configfile.Stamp
	for _, p := range r.watched() {
		out = append(out, configfile.StampOf(p))
	}
	return out
}

// newReloader starts watching from initial, the stamps of watched() taken
// before the running configuration was read.
func newReloader(path string, n *node, reg prometheus.Registerer, log *logrus.Logger, initial []configfile.Stamp) (*reloader, error) {
	r := &reloader{
		path: path, node: n, log: log,
		reloads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: shim.MetricsNamespace, Subsystem: "config", Name: "reloads_total",
			Help: "Configuration reloads by result (success, failure: the file was invalid and nothing changed).",
		}, []string{"result"}),
		lastOK: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: shim.MetricsNamespace, Subsystem: "config", Name: "last_reload_successful",
			Help: "1 if the last reload applied, 0 if it was rejected (the running configuration is older than the file).",
		}),
		lastOKTime: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: shim.MetricsNamespace, Subsystem: "config", Name: "last_reload_success_timestamp_seconds",
			Help: "When the configuration was last loaded successfully (start or reload).",
		}),
	}
	if err := shim.RegisterCollectors(reg, r.reloads, r.lastOK, r.lastOKTime); err != nil {
		return nil, err
	}
	r.lastOK.Set(1)
	r.lastOKTime.SetToCurrentTime()
	r.seen = initial
	r.requests = make(chan struct{}, 1)
	return r, nil
}

// request asks run for a reload without waiting for it.
func (r *reloader) request() {
	select {
	case r.requests <- struct{}{}:
	default: // one is pending already and will read the file as it is then
	}
}

// run reloads on request and on file changes until ctx ends.
func (r *reloader) run(ctx context.Context) {
	tick := time.NewTicker(watchInterval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-r.requests:
			r.reload()
		case <-tick.C:
			if now := r.stamps(); !slices.Equal(now, r.seen) {
				r.log.WithField("files", r.watched()).Info("configuration files changed: reloading")
				r.reload()
			}
		}
	}
}

// reload applies the file if it is valid, and reports what it could not
// apply without a restart.
func (r *reloader) reload() {
	// Stamped before the files are read: a change made while they are read
	// (a non-atomic write caught half-way) differs from these stamps and
	// is reloaded at the next check, never lost.
	before, watched := r.stamps(), r.watched()
	defer func() {
		if slices.Equal(watched, r.watched()) {
			r.seen = before
		} else {
			r.seen = r.stamps() // the new config names other files
		}
	}()
	_, _ = systemd.SdNotify(false, systemd.SdNotifyReloading)
	defer systemd.SdNotify(false, systemd.SdNotifyReady)
	err := r.apply()
	if err != nil {
		r.reloads.WithLabelValues("failure").Inc()
		r.lastOK.Set(0)
		r.log.WithField("config", r.path).Error("configuration reload rejected, the running configuration stays: " + err.Error())
		return
	}
	r.reloads.WithLabelValues("success").Inc()
	r.lastOK.Set(1)
	r.lastOKTime.SetToCurrentTime()
}

func (r *reloader) apply() error {
	next, err := LoadConfig(r.path, false)
	if err != nil {
		return err
	}
	if problems := next.Validate(); len(problems) > 0 {
		return InvalidConfig(r.path, problems)
	}
	// Keep what can only change with a restart as it runs, and say so.
	if keys := r.node.restartOnly(next); len(keys) > 0 {
		r.log.WithField("settings", strings.Join(keys, ", ")).
			Warn("configuration reload: these settings changed but need a restart of crishim to apply; the rest is applied")
	}
	swap, err := r.node.prepare(next)
	if err != nil {
		return fmt.Errorf("config %s: %w", r.path, err)
	}
	swap()
	r.log.WithField("config", r.path).Info("configuration reloaded")
	return nil
}
