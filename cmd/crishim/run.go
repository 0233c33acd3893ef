package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"runtime"
	"strings"

	"github.com/crishim/crishim/cmd/crishim/daemon"
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
// to it directly. They stay caught from main's start until the process
// exits: left to its default action, a SIGHUP arriving while crishim drains
// (systemctl reload racing a stop) would end the process and cut every call
// in flight. daemon.Run says what each signal does; the other commands
// ignore them and finish in moments.
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
	f.fs.StringVar(&f.config, "config", daemon.DefaultConfigPath, "configuration file (YAML); the default path may be absent")
	f.fs.StringVar(&f.listen, "listen", shim.DefaultListenPath, "unix socket path to serve the kubelet on")
	f.fs.StringVar(&f.runtimeEP, "runtime-endpoint", shim.DefaultRuntimeEndpoint, "the real runtime's CRI endpoint (unix:///path)")
	f.fs.StringVar(&f.imageEP, "image-endpoint", "", "the real image service endpoint (default: the runtime endpoint)")
	f.fs.StringVar(&f.metrics, "metrics-address", "127.0.0.1:9810", "HOST:PORT for /metrics, /healthz, /readyz; empty disables")
	f.fs.StringVar(&f.logLevel, "log-level", "info", "log level: error, warn, info, debug, trace")
	return f
}

// load reads the config file and applies the flags that were given.
func (f *serveFlags) load() (*daemon.Config, error) {
	set := map[string]bool{}
	f.fs.Visit(func(fl *flag.Flag) { set[fl.Name] = true })
	cfg, err := daemon.LoadConfig(f.config, !set["config"])
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
	if problems := cfg.Validate(); len(problems) > 0 {
		return nil, daemon.InvalidConfig(f.config, problems)
	}
	return cfg, nil
}

// loadValid parses the --config flag of a subcommand and loads that file,
// failing with every problem it has.
func loadValid(name string, args []string, stderr io.Writer) (*daemon.Config, string, error) {
	fs := flag.NewFlagSet("crishim "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := fs.String("config", daemon.DefaultConfigPath, "configuration file")
	if err := fs.Parse(args); err != nil {
		return nil, "", err
	}
	cfg, err := daemon.LoadConfig(*path, false)
	if err != nil {
		return nil, *path, err
	}
	if problems := cfg.Validate(); len(problems) > 0 {
		return nil, *path, fmt.Errorf("config %s is invalid:\n  %s", *path, strings.Join(problems, "\n  "))
	}
	return cfg, *path, nil
}

// validateCmd checks everything start checks: the file, then what
// daemon.Check makes of it, which reads the files it names.
func validateCmd(args []string, stdout, stderr io.Writer) error {
	cfg, path, err := loadValid("validate", args, stderr)
	if err != nil {
		return err
	}
	if err := daemon.Check(cfg, daemon.NewLogger(cfg.Log, stderr)); err != nil {
		return fmt.Errorf("config %s: %w", path, err)
	}
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
	return daemon.Run(ctx, cfg, flags.config, daemon.NewLogger(cfg.Log, stderr), sigs)
}
