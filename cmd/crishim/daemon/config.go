package daemon

import (
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/sirupsen/logrus"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"

	"github.com/crishim/crishim/handlers/access"
	"github.com/crishim/crishim/handlers/configfile"
	"github.com/crishim/crishim/handlers/credentials"
	"github.com/crishim/crishim/handlers/plugins"
	"github.com/crishim/crishim/handlers/pulls"
	"github.com/crishim/crishim/handlers/registry"
	"github.com/crishim/crishim/handlers/routing"
	"github.com/crishim/crishim/shim"
)

// DefaultConfigPath is the configuration file crishim reads when none is
// named (no --config); it may be absent.
const DefaultConfigPath = "/etc/crishim/config.yaml"

// Config is crishim's configuration file (configs/crishim.yaml documents
// every key).
type Config struct {
	Listen              ListenConfig       `json:"listen"`
	RuntimeEndpoint     string             `json:"runtimeEndpoint"`
	ImageEndpoint       string             `json:"imageEndpoint,omitempty"`
	MaxMessageSize      *resource.Quantity `json:"maxMessageSize,omitempty"`
	ShutdownGracePeriod *metav1.Duration   `json:"shutdownGracePeriod,omitempty"`
	Log                 LogConfig          `json:"log"`
	Metrics             MetricsConfig      `json:"metrics"`
	// Handlers and Routing enable RunPodSandbox routing; without handlers
	// RunPodSandbox passes through untouched.
	Handlers []routing.RuntimeHandler `json:"handlers,omitempty"`
	Routing  routing.Routing          `json:"routing,omitempty"`
	// Images configures PullImage; without it PullImage passes through.
	Images ImagesConfig `json:"images,omitempty"`
	// NRI hosts NRI plugins; without it the calls NRI has events for pass
	// through untouched.
	NRI *plugins.Config `json:"nri,omitempty"`
	// loaded is the config file's stamp taken before LoadConfig read it.
	loaded configfile.Stamp
}

// ImagesConfig is the images section.
type ImagesConfig struct {
	// Pulls schedules and de-duplicates pulls.
	Pulls *pulls.Config `json:"pulls,omitempty"`
	// Credentials injects node registry credentials.
	Credentials *credentials.Config `json:"credentials,omitempty"`
	// Access lets pods run only images their namespace was allowed to
	// pull; it needs Credentials.
	Access *access.Config `json:"access,omitempty"`
}

// ListenConfig is the socket crishim serves the kubelet on.
type ListenConfig struct {
	Path string `json:"path"`
	// Mode is the socket's permission bits in octal, as a string ("0660").
	Mode string `json:"mode,omitempty"`
	// MaxConnections caps the client connections served at once; further
	// clients wait in the socket's backlog until one closes.
	MaxConnections int `json:"maxConnections,omitempty"`
	// MaxConcurrentStreams caps the calls in flight on one connection;
	// further calls wait in the client until one ends.
	MaxConcurrentStreams int `json:"maxConcurrentStreams,omitempty"`
}

// Connection limits. They bound what a misbehaving local client can make
// crishim hold (10,000 idle connections took crishim from 21 to 197 MiB),
// while staying far above what the kubelet needs: it keeps two connections
// (its runtime and image clients), and crictl, node agents and reconnects
// add a few more; at its busiest (a node full of pods with exec probes, a
// pod storm) it has a few hundred calls in flight, nearly all on its
// runtime connection.
const (
	// defaultMaxConnections is 50 times the kubelet's handful; at the limit
	// crishim holds about 10 MiB more than idle (measured: 24 to 33 MiB).
	defaultMaxConnections = 256
	// minMaxConnections leaves room for the kubelet's two connections,
	// crictl and agents, and the kubelet's reconnects while old connections
	// close: a lower limit could leave the kubelet waiting behind others.
	minMaxConnections = 16
	// maxMaxConnections is the systemd unit's LimitNOFILE: a larger limit
	// could never be reached.
	maxMaxConnections = 1 << 20
	// defaultMaxConcurrentStreams is a few times the kubelet's busiest.
	defaultMaxConcurrentStreams = 1000
	// minMaxConcurrentStreams is HTTP/2's recommended minimum (RFC 9113
	// section 6.5.2): a lower limit would queue a busy kubelet's calls.
	minMaxConcurrentStreams = 100
	// maxMaxConcurrentStreams bounds what one connection can hold.
	maxMaxConcurrentStreams = 1 << 20
)

// LogConfig selects the log level and format.
type LogConfig struct {
	Level  string `json:"level,omitempty"`
	Format string `json:"format,omitempty"`
}

// MetricsConfig is the HTTP listener for /metrics, /healthz and /readyz.
type MetricsConfig struct {
	// Address is HOST:PORT; empty disables the listener.
	Address *string `json:"address,omitempty"`
	// Pprof serves Go's profiler at /debug/pprof/ on the same listener. Off
	// by default: profiles expose memory contents.
	Pprof bool `json:"pprof,omitempty"`
	// MaxRegistryLabels bounds the registry label of the image metrics: the
	// first this many registries seen keep their name, later ones count as
	// "other" (registry names come from pod specs). 0 means
	// registry.DefaultMaxLabels.
	MaxRegistryLabels int `json:"maxRegistryLabels,omitempty"`
}

// maxRegistryLabelsLimit caps metrics.maxRegistryLabels: beyond it the bound
// no longer protects Prometheus.
const maxRegistryLabelsLimit = 10000

// minMessageSize is what the kubelet and containerd exchange; a lower limit
// would break calls that work without crishim.
const minMessageSize = shim.DefaultMaxMessageSize

// DefaultConfig returns the configuration used for keys a file leaves out:
// what LoadConfig starts from.
func DefaultConfig() *Config {
	addr := "127.0.0.1:9810"
	return &Config{
		Listen: ListenConfig{
			Path: shim.DefaultListenPath, Mode: "0660",
			MaxConnections: defaultMaxConnections, MaxConcurrentStreams: defaultMaxConcurrentStreams,
		},
		RuntimeEndpoint:     shim.DefaultRuntimeEndpoint,
		MaxMessageSize:      resource.NewQuantity(shim.DefaultMaxMessageSize, resource.BinarySI),
		ShutdownGracePeriod: &metav1.Duration{Duration: shim.DefaultShutdownGracePeriod},
		Log:                 LogConfig{Level: "info", Format: "text"},
		Metrics:             MetricsConfig{Address: &addr},
	}
}

// LoadConfig reads path over the defaults (DefaultConfig). Unknown keys and
// wrong types are errors naming the file and the key; a world-writable file
// is refused. A missing file is an error unless optional is set (the default
// path may be absent). It does not validate the result: see Validate.
func LoadConfig(path string, optional bool) (*Config, error) {
	cfg := DefaultConfig()
	// Stamped before it is read, so that Run's reloader notices a change
	// made while or after it is read (see Run).
	cfg.loaded = configfile.StampOf(path)
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) && optional {
		return cfg, nil
	}
	if err != nil {
		return nil, fmt.Errorf("config %s: %w", path, err)
	}
	if err := configfile.CheckNotWorldWritable(path); err != nil {
		return nil, fmt.Errorf("config %w", err)
	}
	if err := parseConfig(data, cfg); err != nil {
		return nil, fmt.Errorf("config %s:%w", path, err)
	}
	return cfg, nil
}

// parseConfig decodes data over cfg, strictly.
func parseConfig(data []byte, cfg *Config) error {
	if problems := configfile.Check(data, cfg); len(problems) > 0 {
		return errors.New("\n  " + strings.Join(configfile.Strings(problems), "\n  "))
	}
	// Check found every problem the strict decoder could meet; this error
	// is a backstop.
	if err := yaml.UnmarshalStrict(data, cfg); err != nil {
		return fmt.Errorf(" %w", err)
	}
	return nil
}

// Validate returns every problem of c, each naming its key; none means c is
// valid, as Check and Run require. InvalidConfig makes an error of them.
func (c *Config) Validate() []string {
	var problems []string
	add := func(key, format string, args ...any) {
		problems = append(problems, key+": "+fmt.Sprintf(format, args...))
	}
	if c.Listen.Path == "" {
		add("listen.path", "must be set")
	} else if !strings.HasPrefix(c.Listen.Path, "/") {
		add("listen.path", "%q must be an absolute path", c.Listen.Path)
	} else if len(c.Listen.Path) > 107 {
		add("listen.path", "%q is %d bytes, over the 107-byte unix socket limit", c.Listen.Path, len(c.Listen.Path))
	}
	if _, err := c.socketMode(); err != nil {
		add("listen.mode", "%v", err)
	}
	if n := c.Listen.MaxConnections; n < minMaxConnections {
		add("listen.maxConnections", "%d is below %d: the kubelet alone keeps 2 connections, and crictl, agents and reconnects need room", n, minMaxConnections)
	} else if n > maxMaxConnections {
		add("listen.maxConnections", "%d is above %d, more file descriptors than crishim's unit allows", n, maxMaxConnections)
	}
	if n := c.Listen.MaxConcurrentStreams; n < minMaxConcurrentStreams {
		add("listen.maxConcurrentStreams", "%d is below %d, HTTP/2's recommended minimum: a busy kubelet's calls would queue", n, minMaxConcurrentStreams)
	} else if n > maxMaxConcurrentStreams {
		add("listen.maxConcurrentStreams", "%d is above %d", n, maxMaxConcurrentStreams)
	}
	if _, err := shim.ParseEndpoint(c.RuntimeEndpoint); err != nil {
		add("runtimeEndpoint", "%v", err)
	}
	if c.ImageEndpoint != "" {
		if _, err := shim.ParseEndpoint(c.ImageEndpoint); err != nil {
			add("imageEndpoint", "%v", err)
		}
	}
	if p, err := shim.ParseEndpoint(c.RuntimeEndpoint); err == nil && p == c.Listen.Path {
		add("runtimeEndpoint", "is crishim's own listen socket %q: point it at the real runtime", p)
	}
	if c.MaxMessageSize != nil && c.MaxMessageSize.Value() < minMessageSize {
		add("maxMessageSize", "%s is below 16Mi, the size the kubelet and containerd exchange", c.MaxMessageSize.String())
	}
	if c.MaxMessageSize != nil && c.MaxMessageSize.Value() > 1<<30 {
		add("maxMessageSize", "%s is above 1Gi", c.MaxMessageSize.String())
	}
	if c.ShutdownGracePeriod != nil && c.ShutdownGracePeriod.Duration < 0 {
		add("shutdownGracePeriod", "%s must not be negative", c.ShutdownGracePeriod.Duration)
	}
	if _, err := logrus.ParseLevel(c.Log.Level); err != nil {
		add("log.level", "%q is not one of panic, fatal, error, warn, info, debug, trace", c.Log.Level)
	}
	if c.Log.Format != "text" && c.Log.Format != "json" {
		add("log.format", "%q is not text or json", c.Log.Format)
	}
	if a := c.metricsAddress(); a != "" {
		if host, port, err := net.SplitHostPort(a); err != nil {
			add("metrics.address", "%q: want HOST:PORT, or empty to disable: %v", a, err)
		} else if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
			add("metrics.address", "%q: port %q is not a number from 0 to 65535", a, port)
		} else if host != "" && net.ParseIP(host) == nil && host != "localhost" {
			add("metrics.address", "%q: host must be an IP address or localhost", a)
		}
	}
	if n := c.Metrics.MaxRegistryLabels; n < 0 || n > maxRegistryLabelsLimit {
		add("metrics.maxRegistryLabels", "%d is not from 1 to %d (0 or absent: %d)", n, maxRegistryLabelsLimit, registry.DefaultMaxLabels)
	}
	problems = append(problems, routing.Validate(c.Handlers, c.Routing)...)
	if c.Images.Pulls != nil {
		problems = append(problems, c.Images.Pulls.Validate()...)
	}
	if c.Images.Access != nil {
		problems = append(problems, c.Images.Access.Validate()...)
		if c.Images.Credentials == nil {
			problems = append(problems, "images.access: needs images.credentials: it enforces who may use the node credentials crishim injects")
		}
	}
	if c.Images.Credentials != nil {
		problems = append(problems, c.Images.Credentials.Validate()...)
	}
	if c.NRI != nil {
		problems = append(problems, c.NRI.Validate()...)
		if s := c.NRI.SocketPath(); s == c.Listen.Path {
			problems = append(problems, fmt.Sprintf("nri.socket: %q is crishim's CRI socket (listen.path)", s))
		}
	}
	return problems
}

// InvalidConfig is the error for the problems Validate found in the
// configuration read from path, with any flags given over it.
func InvalidConfig(path string, problems []string) error {
	return fmt.Errorf("invalid configuration (file %s and flags):\n  %s", path, strings.Join(problems, "\n  "))
}

func (c *Config) socketMode() (os.FileMode, error) {
	if c.Listen.Mode == "" {
		return shim.DefaultSocketMode, nil
	}
	m, err := strconv.ParseUint(c.Listen.Mode, 8, 32)
	if err != nil || m > 0o777 {
		return 0, fmt.Errorf("%q is not an octal permission like \"0660\"", c.Listen.Mode)
	}
	if m&0o002 != 0 {
		return 0, fmt.Errorf("%q lets every local user write to the socket and so control the node's containers; use 0660 and a group", c.Listen.Mode)
	}
	return os.FileMode(m), nil
}

func (c *Config) metricsAddress() string {
	if c.Metrics.Address == nil {
		return ""
	}
	return *c.Metrics.Address
}

func (c *Config) shimConfig() shim.Config {
	sc := shim.Config{
		RuntimeEndpoint: c.RuntimeEndpoint, ImageEndpoint: c.ImageEndpoint,
		MaxConnections: c.Listen.MaxConnections, MaxConcurrentStreams: uint32(max(c.Listen.MaxConcurrentStreams, 0)),
	}
	if c.MaxMessageSize != nil {
		sc.MaxMessageSize = int(c.MaxMessageSize.Value())
	}
	return sc
}

func (c *Config) gracePeriod() time.Duration {
	if c.ShutdownGracePeriod == nil {
		return shim.DefaultShutdownGracePeriod
	}
	return c.ShutdownGracePeriod.Duration
}
