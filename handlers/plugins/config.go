package plugins

import (
	"fmt"
	"maps"
	"path"
	"slices"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/crishim/crishim/handlers/configfile"
	"k8s.io/apimachinery/pkg/util/validation"
)

// DefaultSocket is where plugins connect when nri.socket is not set: crishim's
// own socket, never the runtime's /var/run/nri/nri.sock, which NRI's
// adaptation would remove at start.
const DefaultSocket = "/run/crishim/nri.sock"

// Failure policies an operator can set for a plugin.
const (
	// FailurePolicyFail fails the CRI call when the plugin times out or
	// disconnects while handling it, with a status naming the plugin.
	FailurePolicyFail = "fail"
	// FailurePolicyIgnore lets the call proceed without the plugin; the
	// failure is logged and counted, and the plugin may reconnect.
	FailurePolicyIgnore = "ignore"
)

// What happens to adjustments CRI cannot carry to the runtime.
const (
	// UnsupportedRefuse fails CreateContainer with an error naming the
	// plugin and the field (default).
	UnsupportedRefuse = "refuse"
	// UnsupportedDrop applies the rest of the adjustment and logs a warning
	// naming the plugin and the dropped field.
	UnsupportedDrop = "drop"
)

// Config is the nri section: crishim hosts NRI plugins in front of the
// runtime. Without it crishim has no plugin socket and intercepts none of
// the calls NRI would.
type Config struct {
	// Socket is the unix socket plugins connect to (DefaultSocket). Its
	// directory is created 0700: only root can connect.
	Socket string `json:"socket,omitempty"`
	// PluginDir holds pre-installed plugins crishim starts itself
	// (NRI's layout: executables named NN-name); empty: none.
	PluginDir string `json:"pluginDir,omitempty"`
	// PluginConfigDir holds their configuration (NRI's conf.d layout).
	PluginConfigDir string `json:"pluginConfigDir,omitempty"`
	// RegistrationTimeout bounds a plugin's registration (NRI's default 5s).
	RegistrationTimeout *metav1.Duration `json:"registrationTimeout,omitempty"`
	// RequestTimeout bounds each event a plugin handles (NRI's default 2s).
	RequestTimeout *metav1.Duration `json:"requestTimeout,omitempty"`
	// Unsupported is refuse (default) or drop: adjustments CRI cannot
	// express (OCI hooks, rlimits, seccomp, namespaces, sysctls, ...).
	Unsupported string `json:"unsupportedAdjustments,omitempty"`
	// UnsupportedFields overrides Unsupported per field (the names README
	// lists, e.g. rlimits: drop).
	UnsupportedFields map[string]string `json:"unsupportedFields,omitempty"`
	// Plugins sets the operator's policy per plugin, by the name a plugin
	// registers with (without its index).
	Plugins []PluginConfig `json:"plugins,omitempty"`
	// ExemptNamespaces run pods while a required plugin is absent
	// (kube-system, for instance, where the plugin itself may run).
	ExemptNamespaces []string `json:"exemptNamespaces,omitempty"`
	// ExemptStaticPods runs static pods (kubelet config source other than
	// the API server) while a required plugin is absent (default true): a
	// node whose control plane runs as static pods must come up first.
	ExemptStaticPods *bool `json:"exemptStaticPods,omitempty"`
}

// PluginConfig is one plugin's policy.
type PluginConfig struct {
	// Name is the name the plugin registers with, e.g. "topology-aware".
	Name string `json:"name"`
	// FailurePolicy is fail or ignore; empty: what the plugin declares
	// (NRI's own default is ignore).
	FailurePolicy string `json:"failurePolicy,omitempty"`
	// Required refuses pods (outside the exempt namespaces) with
	// Unavailable until the plugin is registered.
	Required bool `json:"required,omitempty"`
}

// UnsupportedFieldNames are the adjustment fields CRI cannot carry, by the
// names nri.unsupportedFields and errors use.
var UnsupportedFieldNames = []string{
	"hooks", "rlimits", "cgroupsPath", "ioPriority", "seccompPolicy", "namespaces", "sysctl",
	"netDevices", "scheduler", "rdt", "memoryPolicy", "memory.reservation", "memory.kernel",
	"memory.kernelTCP", "memory.swappiness", "memory.disableOOMKiller", "memory.useHierarchy",
	"cpu.realtimeRuntime", "cpu.realtimePeriod", "pids", "blockioClass", "rdtClass", "mounts.nonBind",
	"devices.unresolved", "devices.cgroup", "annotations.kubelet",
}

// SocketPath returns the plugin socket.
func (c *Config) SocketPath() string {
	if c.Socket == "" {
		return DefaultSocket
	}
	return c.Socket
}

func (c *Config) registrationTimeout() time.Duration {
	if c.RegistrationTimeout == nil {
		return 5 * time.Second
	}
	return c.RegistrationTimeout.Duration
}

func (c *Config) requestTimeout() time.Duration {
	if c.RequestTimeout == nil {
		return 2 * time.Second
	}
	return c.RequestTimeout.Duration
}

// unsupportedPolicy returns refuse or drop for a field.
func (c *Config) unsupportedPolicy(field string) string {
	if p, ok := c.UnsupportedFields[field]; ok {
		return p
	}
	if c.Unsupported == "" {
		return UnsupportedRefuse
	}
	return c.Unsupported
}

func (c *Config) exemptStatic() bool { return c.ExemptStaticPods == nil || *c.ExemptStaticPods }

// plugin returns the operator's policy for a plugin name.
func (c *Config) plugin(name string) (PluginConfig, bool) {
	i := slices.IndexFunc(c.Plugins, func(p PluginConfig) bool { return p.Name == name })
	if i < 0 {
		return PluginConfig{}, false
	}
	return c.Plugins[i], true
}

// required lists the required plugin names.
func (c *Config) required() []string {
	var out []string
	for _, p := range c.Plugins {
		if p.Required {
			out = append(out, p.Name)
		}
	}
	return out
}

// Validate returns every problem of the nri section, each naming its key.
func (c *Config) Validate() []string {
	var problems []string
	add := func(key, format string, args ...any) {
		problems = append(problems, "nri."+key+": "+fmt.Sprintf(format, args...))
	}
	if c.Socket != "" && !path.IsAbs(c.Socket) {
		add("socket", "%q must be an absolute path", c.Socket)
	}
	if s := path.Clean(c.SocketPath()); s == "/var/run/nri/nri.sock" || s == "/run/nri/nri.sock" {
		add("socket", "%q is the runtime's own NRI socket, which crishim would remove at start; use %s", c.Socket, DefaultSocket)
	}
	for key, dir := range map[string]string{"pluginDir": c.PluginDir, "pluginConfigDir": c.PluginConfigDir} {
		if dir != "" && !path.IsAbs(dir) {
			add(key, "%q must be an absolute directory", dir)
		}
	}
	for key, d := range map[string]*metav1.Duration{"registrationTimeout": c.RegistrationTimeout, "requestTimeout": c.RequestTimeout} {
		if d != nil && d.Duration <= 0 {
			add(key, "%s must be positive", d.Duration)
		}
	}
	okPolicy := func(p string) bool { return p == UnsupportedRefuse || p == UnsupportedDrop }
	if c.Unsupported != "" && !okPolicy(c.Unsupported) {
		add("unsupportedAdjustments", "%q is not refuse or drop", c.Unsupported)
	}
	for _, f := range sortedKeys(c.UnsupportedFields) {
		if !slices.Contains(UnsupportedFieldNames, f) {
			add("unsupportedFields", "%q is not a field CRI cannot carry (one of %v)", f, UnsupportedFieldNames)
		} else if !okPolicy(c.UnsupportedFields[f]) {
			add("unsupportedFields."+f, "%q is not refuse or drop", c.UnsupportedFields[f])
		}
	}
	seen := map[string]bool{}
	for i, p := range c.Plugins {
		key := fmt.Sprintf("plugins[%d]", i)
		if p.Name == "" {
			add(key+".name", "must be set: the name the plugin registers with")
		} else if seen[p.Name] {
			add(key+".name", "%q is listed twice", p.Name)
		}
		seen[p.Name] = true
		switch p.FailurePolicy {
		case "", FailurePolicyFail, FailurePolicyIgnore:
		default:
			add(key+".failurePolicy", "%q is not fail or ignore", p.FailurePolicy)
		}
	}
	for i, ns := range c.ExemptNamespaces {
		if errs := validation.IsDNS1123Label(ns); len(errs) > 0 {
			add(fmt.Sprintf("exemptNamespaces[%d]", i), "%q is not a namespace name: %s", ns, errs[0])
		}
	}
	return problems
}

// CheckFiles checks the directories crishim runs plugins from: they must
// exist and not be world-writable, since crishim (root) executes what they
// hold.
func (c *Config) CheckFiles() error {
	for key, dir := range map[string]string{"nri.pluginDir": c.PluginDir, "nri.pluginConfigDir": c.PluginConfigDir} {
		if dir == "" {
			continue
		}
		if err := configfile.CheckNotWorldWritable(dir); err != nil {
			return fmt.Errorf("%s: %w", key, err)
		}
	}
	return nil
}

// RestartOnly lists the keys of next that differ from c and need a restart:
// the socket and the pre-installed plugins are set up once, at start.
func (c *Config) RestartOnly(next *Config) []string {
	var keys []string
	if c.SocketPath() != next.SocketPath() {
		keys = append(keys, "nri.socket")
	}
	if c.PluginDir != next.PluginDir {
		keys = append(keys, "nri.pluginDir")
	}
	if c.PluginConfigDir != next.PluginConfigDir {
		keys = append(keys, "nri.pluginConfigDir")
	}
	return keys
}

func sortedKeys(m map[string]string) []string { return slices.Sorted(maps.Keys(m)) }
