package daemon

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"syscall"
	"time"

	"github.com/coreos/go-systemd/v22/activation"
	systemd "github.com/coreos/go-systemd/v22/daemon"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/sirupsen/logrus"

	"github.com/crishim/crishim/handlers/configfile"
	"github.com/crishim/crishim/shim"
)

// instance is what Run serves, built from a configuration.
type instance struct {
	node *node
	srv  *shim.Server
	reg  *prometheus.Registry
}

// build makes everything Run serves from a validated cfg, short of
// listening and serving: it reads every file cfg names (the
// credential-provider config, the plugin binaries) and fails wherever start
// would. Check (crishim validate) builds the same and throws it away, so the
// two cannot disagree: a check start needs belongs here.
//
// checkOnly is set by Check: nothing is created or changed on disk.
func build(cfg *Config, log *logrus.Logger, checkOnly bool) (*instance, error) {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	n, opts, err := newNode(cfg, log, reg, checkOnly)
	if err != nil {
		return nil, err
	}
	srv, err := shim.New(cfg.shimConfig(), opts...)
	if err != nil {
		n.close()
		return nil, err
	}
	inst := &instance{node: n, srv: srv, reg: reg}
	if err := srv.RegisterMetrics(reg); err != nil {
		inst.close()
		return nil, err
	}
	if err := srv.RegisterConnectionMetrics(reg); err != nil {
		inst.close()
		return nil, err
	}
	return inst, nil
}

// close stops the server at once and the node's background work.
func (i *instance) close() {
	i.srv.Close()
	i.node.close()
}

// Check builds everything Run would serve from cfg and throws it away:
// what crishim validate runs. It reads every file cfg names, so it fails
// wherever Run would before serving. cfg must be valid (see Validate).
func Check(cfg *Config, log *logrus.Logger) error {
	inst, err := build(cfg, log, true)
	if err != nil {
		return err
	}
	inst.close()
	return nil
}

// Run serves the kubelet as cfg says until SIGTERM, SIGINT or the end of
// ctx, then shuts down gracefully and returns nil (crishim exits 0). SIGHUP
// and changes of configPath (the file cfg was loaded from) or of the files
// it names reload the configuration. cfg must be valid (see Validate); log
// is the logger from NewLogger, which reloads reconfigure. sigs delivers the
// signals: main subscribes it to the process's, tests send to it; nil
// delivers none.
//
// Run listens first, on the socket systemd passed (socket activation) or
// else on listen.path, so that a second crishim fails before touching
// anything, and removes the socket it made when it returns. It returns an
// error if it cannot start (the socket, what Check checks, the metrics
// address) or if serving fails.
//
// Signals while shutting down: SIGHUP is logged and ignored, as a reload
// racing a stop (systemctl reload, then stop) must neither reload nor end
// the process; a second SIGTERM or SIGINT ends the grace period at once:
// the calls still in flight are cancelled and crishim exits 0, as when the
// grace period runs out. That is the way out for an operator who does not
// want to wait (a second Ctrl-C), while systemd, which sends SIGTERM once,
// keeps the full grace period.
func Run(ctx context.Context, cfg *Config, configPath string, log *logrus.Logger, sigs <-chan os.Signal) error {
	// Listen first: a second crishim must fail before touching anything.
	l, activated, err := listen(cfg)
	if err != nil {
		return err
	}
	if !activated {
		defer os.Remove(cfg.Listen.Path)
	}
	listening := true
	defer func() {
		if listening {
			l.Close()
		}
	}()

	// The files the configuration was read from, as they were before they
	// were read (the config by LoadConfig, the credential-provider config
	// by build): a change made meanwhile is reloaded at the first check.
	initial := []configfile.Stamp{cfg.loaded}
	if cc := cfg.Images.Credentials; cc != nil && cc.Providers != nil {
		initial = append(initial, configfile.StampOf(cc.Providers.Config))
	}
	inst, err := build(cfg, log, false)
	if err != nil {
		return err
	}
	defer inst.close()
	n, srv, reg := inst.node, inst.srv, inst.reg
	if err := n.start(srv); err != nil {
		return err
	}
	rl, err := newReloader(configPath, n, reg, log, initial)
	if err != nil {
		return err
	}

	var ops *http.Server
	if addr := cfg.metricsAddress(); addr != "" {
		ml, err := net.Listen("tcp", addr)
		if err != nil {
			return fmt.Errorf("metrics.address %s: %w", addr, err)
		}
		handler := srv.OpsHandler(reg)
		if cfg.Metrics.Pprof {
			handler = withPprof(handler)
		}
		ops = &http.Server{Handler: handler, ReadHeaderTimeout: 10 * time.Second}
		go func() {
			if err := ops.Serve(ml); err != nil && !errors.Is(err, http.ErrServerClosed) {
				log.WithError(err).Error("metrics listener failed")
			}
		}()
	}

	imageEP := cfg.ImageEndpoint
	if imageEP == "" {
		imageEP = cfg.RuntimeEndpoint
	}
	log.WithFields(logrus.Fields{
		"listen": l.Addr().String(), "socket_activated": activated, "runtime_endpoint": cfg.RuntimeEndpoint, "image_endpoint": imageEP,
		"metrics_address": cfg.metricsAddress(), "version": shim.Version, "handlers": len(cfg.Handlers), "routing_rules": len(cfg.Routing.Rules),
		"max_connections": cfg.Listen.MaxConnections, "max_concurrent_streams": cfg.Listen.MaxConcurrentStreams,
	}).Info("crishim serving")

	listening = false // the server owns the listener now
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(l) }()
	// Type=notify: the kubelet, ordered after crishim, starts once the
	// socket accepts calls. Without systemd this does nothing.
	if _, err := systemd.SdNotify(false, systemd.SdNotifyReady); err != nil {
		log.WithError(err).Warn("could not notify systemd of readiness")
	}
	rctx, stopReloads := context.WithCancel(ctx)
	reloadsDone := make(chan struct{})
	go func() { defer close(reloadsDone); rl.run(rctx) }()
	defer func() { stopReloads(); <-reloadsDone }()

	reason := "context done"
	for waiting := true; waiting; {
		select {
		case err := <-errc:
			return err
		case <-ctx.Done():
			waiting = false
		case sig := <-sigs:
			if sig == syscall.SIGHUP {
				log.WithField("config", configPath).Info("SIGHUP: reloading the configuration")
				rl.request()
				continue
			}
			reason, waiting = signalName(sig), false
		}
	}
	stopReloads()
	<-reloadsDone
	_, _ = systemd.SdNotify(false, systemd.SdNotifyStopping)
	n.drain()
	grace := n.gracePeriod()
	log.WithFields(logrus.Fields{"grace_period": grace.String(), "reason": reason}).
		Info("shutting down: no new calls, waiting for in-flight calls")
	sctx, cancel := context.WithTimeout(context.Background(), grace)
	defer cancel()
	drained := make(chan struct{})
	watcherDone := make(chan struct{})
	go func() {
		defer close(watcherDone)
		for {
			select {
			case <-drained:
				return
			case sig := <-sigs:
				if sig == syscall.SIGHUP {
					log.WithField("signal", signalName(sig)).Warn("shutting down: SIGHUP ignored, no reload while shutting down")
					continue
				}
				log.WithField("signal", signalName(sig)).
					Warn("second stop signal while shutting down: ending the grace period now, cancelling the calls still in flight")
				cancel()
			}
		}
	}()
	if !srv.Shutdown(sctx) {
		log.Warn("grace period ended: cancelled the calls still in flight")
	}
	if ops != nil {
		_ = ops.Shutdown(sctx)
	}
	<-errc
	close(drained)
	<-watcherDone
	log.Info("crishim stopped")
	return nil
}

// listen returns the socket to serve the kubelet on: the one systemd passed
// (socket activation, crishim.socket), so that restarts of crishim refuse no
// connection, else a socket of crishim's own at listen.path.
func listen(cfg *Config) (l net.Listener, activated bool, err error) {
	ls, err := activation.Listeners()
	if err != nil {
		return nil, false, fmt.Errorf("socket activation (LISTEN_FDS): %w", err)
	}
	switch len(ls) {
	case 0:
		mode, _ := cfg.socketMode() // validated
		l, err := shim.Listen(cfg.Listen.Path, mode)
		return l, false, err
	case 1:
		if ls[0] == nil || ls[0].Addr().Network() != "unix" {
			return nil, false, errors.New("socket activation passed a socket that is not a unix stream socket; crishim.socket needs ListenStream=/run/crishim/crishim.sock")
		}
		return ls[0], true, nil
	default:
		for _, l := range ls {
			if l != nil {
				l.Close()
			}
		}
		return nil, false, fmt.Errorf("socket activation passed %d sockets; crishim.socket must have exactly one ListenStream", len(ls))
	}
}

// withPprof adds Go's profiler endpoints under /debug/pprof/.
func withPprof(h http.Handler) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	mux.Handle("/", h)
	return mux
}

// signalName names the signals Run handles as operators write them.
func signalName(sig os.Signal) string {
	switch sig {
	case syscall.SIGHUP:
		return "SIGHUP"
	case syscall.SIGINT:
		return "SIGINT"
	case syscall.SIGTERM:
		return "SIGTERM"
	}
	return sig.String()
}

// NewLogger returns the logger crishim logs to: on out, at cfg's level and
// in its format. Run reconfigures it when a reload changes them.
func NewLogger(cfg LogConfig, out io.Writer) *logrus.Logger {
	log := logrus.New()
	log.SetOutput(out)
	configureLogger(log, cfg)
	return log
}

// configureLogger sets level and format; a reload calls it again.
func configureLogger(log *logrus.Logger, cfg LogConfig) {
	level, _ := logrus.ParseLevel(cfg.Level) // validated
	log.SetLevel(level)
	if cfg.Format == "json" {
		log.SetFormatter(&logrus.JSONFormatter{})
	} else {
		log.SetFormatter(&logrus.TextFormatter{FullTimestamp: true, DisableColors: true})
	}
}
