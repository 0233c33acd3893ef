package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"runtime"
	"strings"
	"syscall"
	"time"

	"github.com/coreos/go-systemd/v22/activation"
	"github.com/coreos/go-systemd/v22/daemon"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/sirupsen/logrus"

	"github.com/crishim/crishim/handlers/routing"
	"github.com/crishim/crishim/shim"
)

const usage = `crishim: a CRI proxy between the kubelet and the container runtime.

Usage:
  crishim [flags]                    serve (flags override the config file)
  crishim validate --config FILE     check a config file; exit 0 if valid, 1 with every problem listed
  crishim runtimeclasses --config FILE
                                     print the RuntimeClass manifests of the configured handlers
  crishim version                    print the version

Flags:
`

// run is the whole program; main only maps its error to the exit status.
// sigs delivers the signals crishim acts on while it serves (SIGTERM,
// SIGINT, SIGHUP): main subscribes it to the process's signals, tests send
// to it directly.
func run(ctx context.Context, args []string, stdout, stderr io.Writer, sigs <-chan os.Signal) error {
	if len(args) > 0 {
		switch args[0] {
		case "version":
			fmt.Fprintf(stdout, "crishim %s %s\n", shim.Version, runtime.Version())
			return nil
		case "validate":
			return validateCmd(args[1:], stdout, stderr)
		case "runtimeclasses":
			return runtimeClassesCmd(args[1:], stdout, stderr)
		}
	}
	return serveCmd(ctx, args, stderr, sigs)
}

// serveFlags are the settings that may override the file, named after the
// kubelet's own flags.
type serveFlags struct {
	fs                                          *flag.FlagSet
	config, listen, runtimeEP, imageEP, metrics string
	logLevel                                    string
}

func newServeFlags(stderr io.Writer) *serveFlags {
	f := &serveFlags{fs: flag.NewFlagSet("crishim", flag.ContinueOnError)}
	f.fs.SetOutput(stderr)
	f.fs.Usage = func() {
		fmt.Fprint(stderr, usage)
		f.fs.PrintDefaults()
	}
	f.fs.StringVar(&f.config, "config", DefaultConfigPath, "configuration file (YAML); the default path may be absent")
	f.fs.StringVar(&f.listen, "listen", shim.DefaultListenPath, "unix socket path to serve the kubelet on")
	f.fs.StringVar(&f.runtimeEP, "runtime-endpoint", shim.DefaultRuntimeEndpoint, "the real runtime's CRI endpoint (unix:///path)")
	f.fs.StringVar(&f.imageEP, "image-endpoint", "", "the real image service endpoint (default: the runtime endpoint)")
	f.fs.StringVar(&f.metrics, "metrics-address", "127.0.0.1:9810", "HOST:PORT for /metrics, /healthz, /readyz; empty disables")
	f.fs.StringVar(&f.logLevel, "log-level", "info", "log level: error, warn, info, debug, trace")
	return f
}

// load reads the config file and applies the flags that were given.
func (f *serveFlags) load() (*Config, error) {
	set := map[string]bool{}
	f.fs.Visit(func(fl *flag.Flag) { set[fl.Name] = true })
	cfg, err := loadConfig(f.config, !set["config"])
	if err != nil {
		return nil, err
	}
	if set["listen"] {
		cfg.Listen.Path = f.listen
	}
	if set["runtime-endpoint"] {
		cfg.RuntimeEndpoint = f.runtimeEP
	}
	if set["image-endpoint"] {
		cfg.ImageEndpoint = f.imageEP
	}
	if set["metrics-address"] {
		cfg.Metrics.Address = &f.metrics
	}
	if set["log-level"] {
		cfg.Log.Level = f.logLevel
	}
	if problems := cfg.validate(); len(problems) > 0 {
		return nil, invalidConfig(f.config, problems)
	}
	return cfg, nil
}

func invalidConfig(path string, problems []string) error {
	return fmt.Errorf("invalid configuration (file %s and flags):\n  %s", path, strings.Join(problems, "\n  "))
}

// loadValid parses the --config flag of a subcommand and loads that file,
// failing with every problem it has.
func loadValid(name string, args []string, stderr io.Writer) (*Config, string, error) {
	fs := flag.NewFlagSet("crishim "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := fs.String("config", DefaultConfigPath, "configuration file")
	if err := fs.Parse(args); err != nil {
		return nil, "", err
	}
	cfg, err := loadConfig(*path, false)
	if err != nil {
		return nil, *path, err
	}
	if problems := cfg.validate(); len(problems) > 0 {
		return nil, *path, fmt.Errorf("config %s is invalid:\n  %s", *path, strings.Join(problems, "\n  "))
	}
	return cfg, *path, nil
}

// validateCmd checks everything start checks: the file, then what build
// makes of it, which reads the files it names.
func validateCmd(args []string, stdout, stderr io.Writer) error {
	cfg, path, err := loadValid("validate", args, stderr)
	if err != nil {
		return err
	}
	inst, err := build(cfg, newLogger(cfg.Log, stderr))
	if err != nil {
		return fmt.Errorf("config %s: %w", path, err)
	}
	inst.close()
	fmt.Fprintf(stdout, "config %s is valid\n", path)
	return nil
}

func runtimeClassesCmd(args []string, stdout, stderr io.Writer) error {
	cfg, path, err := loadValid("runtimeclasses", args, stderr)
	if err != nil {
		return err
	}
	if len(cfg.Handlers) == 0 {
		return fmt.Errorf("config %s has no handlers to make RuntimeClasses of", path)
	}
	out, err := routing.RuntimeClassesYAML(cfg.Handlers)
	if err != nil {
		return err
	}
	_, err = stdout.Write(out)
	return err
}

func newLogger(cfg LogConfig, out io.Writer) *logrus.Logger {
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

func serveCmd(ctx context.Context, args []string, stderr io.Writer, sigs <-chan os.Signal) error {
	flags := newServeFlags(stderr)
	if err := flags.fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	if flags.fs.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q; see crishim --help", flags.fs.Arg(0))
	}
	cfg, err := flags.load()
	if err != nil {
		return err
	}
	return serve(ctx, cfg, flags.config, newLogger(cfg.Log, stderr), sigs)
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

// instance is what serve runs, built from a configuration.
type instance struct {
	node *node
	srv  *shim.Server
	reg  *prometheus.Registry
}

// build makes everything serve runs from a validated cfg, short of
// listening and serving: it reads every file cfg names (the
// credential-provider config, the plugin binaries) and fails wherever start
// would. crishim validate builds the same and throws it away, so the two
// cannot disagree: a check start needs belongs here.
func build(cfg *Config, log *logrus.Logger) (*instance, error) {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	n, opts, err := newNode(cfg, log, reg)
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

// serve runs crishim until SIGTERM, SIGINT or the end of ctx, then shuts
// down gracefully. SIGHUP and changes of configPath reload the
// configuration.
//
// Signals while shutting down: SIGHUP is logged and ignored, as a reload
// racing a stop (systemctl reload, then stop) must neither reload nor end
// the process; a second SIGTERM or SIGINT ends the grace period at once:
// the calls still in flight are cancelled and crishim exits 0, as when the
// grace period runs out. That is the way out for an operator who does not
// want to wait (a second Ctrl-C), while systemd, which sends SIGTERM once,
// keeps the full grace period.
func serve(ctx context.Context, cfg *Config, configPath string, log *logrus.Logger, sigs <-chan os.Signal) error {
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

	inst, err := build(cfg, log)
	if err != nil {
		return err
	}
	defer inst.close()
	n, srv, reg := inst.node, inst.srv, inst.reg
	n.start(srv)
	rl, err := newReloader(configPath, n, reg, log)
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
	if _, err := daemon.SdNotify(false, daemon.SdNotifyReady); err != nil {
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
	_, _ = daemon.SdNotify(false, daemon.SdNotifyStopping)
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

// signalName names the signals serve handles as operators write them.
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
