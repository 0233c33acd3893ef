package credentials

import (
	"fmt"
	"path"
	"slices"
	"strings"

	"github.com/sirupsen/logrus"

	"github.com/crishim/crishim/handlers/registry"
)

// Config is images.credentials: where node credentials come from
// and which namespaces may receive them.
type Config struct {
	// DockerConfig reads docker config.json / .dockercfg files.
	DockerConfig *DockerConfigSource `json:"dockerConfig,omitempty"`
	// Providers runs the kubelet's credential-provider exec plugins.
	Providers *ProviderSource `json:"providers,omitempty"`
	// Policy limits which namespaces receive node credentials, per registry.
	// The first rule whose registries match the image decides; an image no
	// rule matches gets credentials in every namespace, as with the kubelet.
	Policy []Rule `json:"policy,omitempty"`
}

// DockerConfigSource names the docker config files to read.
type DockerConfigSource struct {
	// Paths are the files to read, in order; empty means the kubelet's
	// search list under KubeletRootDir.
	Paths []string `json:"paths,omitempty"`
	// KubeletRootDir is the kubelet's --root-dir (default /var/lib/kubelet).
	KubeletRootDir string `json:"kubeletRootDir,omitempty"`
}

// ProviderSource is the kubelet's own credential-provider configuration.
type ProviderSource struct {
	// Config is a CredentialProviderConfig file (the kubelet's
	// --image-credential-provider-config).
	Config string `json:"config"`
	// BinDir holds the plugin binaries (the kubelet's
	// --image-credential-provider-bin-dir).
	BinDir string `json:"binDir"`
}

// Rule says which namespaces may receive node credentials for
// images from some registries.
type Rule struct {
	// Registries are registry host globs ("registry.example",
	// "*.corp.example", "localhost:5001", "*" for all), compared with the
	// image's canonical registry (registry.Canonical): letter case, Docker
	// Hub's aliases and the port 443 do not matter.
	Registries []string `json:"registries"`
	// Namespaces may receive the credentials (exact names or globs); an
	// empty list means none may.
	Namespaces []string `json:"namespaces,omitempty"`
}

// Policy decides whether a namespace may receive node credentials
// for a registry.
type Policy []Rule

// Allows reports whether pods of namespace may pull from reg with node
// credentials. reg is compared by its canonical identity, so every spelling
// of one registry gets one answer. The policy's own patterns must be
// canonical already: the puller canonicalizes a policy once, when it is set.
func (p Policy) Allows(reg, namespace string) bool {
	reg = registry.Canonical(reg)
	for _, r := range p {
		if slices.ContainsFunc(r.Registries, func(pat string) bool { return glob(pat, reg) }) {
			return slices.ContainsFunc(r.Namespaces, func(pat string) bool { return glob(pat, namespace) })
		}
	}
	return true
}

// Restricts reports whether a rule of the policy decides for reg, that is
// whether node credentials for reg go only to the namespaces a rule names
// (no rule: every namespace gets them, as with the kubelet). Like Allows, it
// expects a canonical policy.
func (p Policy) Restricts(reg string) bool {
	reg = registry.Canonical(reg)
	for _, r := range p {
		if slices.ContainsFunc(r.Registries, func(pat string) bool { return glob(pat, reg) }) {
			return true
		}
	}
	return false
}

// Canonical returns the policy with every registry pattern canonicalized
// (registry.Canonical), so that Allows and Restricts compare like with
// like; features that keep a policy canonicalize it once, when it is set.
func (p Policy) Canonical() Policy {
	out := make(Policy, len(p))
	for i, r := range p {
		regs := make([]string, len(r.Registries))
		for j, pat := range r.Registries {
			regs[j] = registry.Canonical(pat)
		}
		out[i] = Rule{Registries: regs, Namespaces: slices.Clone(r.Namespaces)}
	}
	return out
}

// Validate returns every problem of images.credentials.
func (c *Config) Validate() []string {
	var problems []string
	if c.DockerConfig == nil && c.Providers == nil {
		problems = append(problems, "images.credentials: set dockerConfig, providers or both")
	}
	if p := c.Providers; p != nil {
		if p.Config == "" || !path.IsAbs(p.Config) {
			problems = append(problems, fmt.Sprintf("images.credentials.providers.config: %q must be an absolute path to a CredentialProviderConfig file", p.Config))
		}
		if p.BinDir == "" || !path.IsAbs(p.BinDir) {
			problems = append(problems, fmt.Sprintf("images.credentials.providers.binDir: %q must be an absolute directory", p.BinDir))
		}
	}
	if d := c.DockerConfig; d != nil {
		for i, p := range d.Paths {
			if !path.IsAbs(p) {
				problems = append(problems, fmt.Sprintf("images.credentials.dockerConfig.paths[%d]: %q must be absolute", i, p))
			}
		}
	}
	for i, r := range c.Policy {
		key := fmt.Sprintf("images.credentials.policy[%d]", i)
		if len(r.Registries) == 0 {
			problems = append(problems, key+": registries must list at least one registry host or glob")
		}
		for j, pat := range r.Registries {
			if msg := registryPatternProblem(pat); msg != "" {
				problems = append(problems, fmt.Sprintf("%s.registries[%d]: %q %s", key, j, pat, msg))
			}
		}
		for j, pat := range r.Namespaces {
			if msg := namespacePatternProblem(pat); msg != "" {
				problems = append(problems, fmt.Sprintf("%s.namespaces[%d]: %q %s", key, j, pat, msg))
			}
		}
	}
	return problems
}

// glob reports whether s matches the path.Match pattern; a bad pattern
// matches nothing (patterns are validated at load).
func glob(pattern, s string) bool {
	ok, err := path.Match(pattern, s)
	return err == nil && ok
}

// registryPatternProblem says what is wrong with a policy registry pattern,
// or "" when nothing is.
func registryPatternProblem(pat string) string {
	switch {
	case pat == "":
		return "is empty: write a registry host or glob"
	case strings.Contains(pat, "://"):
		return "has a scheme: write the registry host[:port] only (\"registry.example\")"
	case strings.Contains(pat, "/"):
		return "has a path: the policy is per registry host[:port], not per repository"
	}
	if _, err := path.Match(pat, ""); err != nil {
		return "is not a valid glob"
	}
	return ""
}

// namespacePatternProblem says what is wrong with a policy namespace
// pattern. Namespaces are lower-case DNS labels (RFC 1123); a pattern with
// other characters, upper case above all, could never match and would
// silently withhold credentials.
func namespacePatternProblem(pat string) string {
	if _, err := path.Match(pat, ""); err != nil {
		return "is not a valid glob"
	}
	for _, c := range pat {
		if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-' || strings.ContainsRune("*?[]^!", c)) {
			return "can never match: namespaces are lower-case DNS labels (a-z, 0-9, '-'); globs may use * ? [ ]"
		}
	}
	if pat == "" {
		return "is empty: write a namespace or glob"
	}
	return ""
}

// DefaultKubeletRootDir is the kubelet's default --root-dir, the first place
// it looks for config.json.
const DefaultKubeletRootDir = "/var/lib/kubelet"

// NewProvider builds the configured credential sources in the
// kubelet's order: docker config files first, then plugins.
func NewProvider(c *Config, log logrus.FieldLogger) (Provider, error) {
	var providers []Provider
	if d := c.DockerConfig; d != nil {
		paths := d.Paths
		if len(paths) == 0 {
			root := d.KubeletRootDir
			if root == "" {
				root = DefaultKubeletRootDir
			}
			paths = DefaultDockerConfigPaths(root)
		}
		providers = append(providers, NewDockerConfig(paths, log))
	}
	if p := c.Providers; p != nil {
		cfg, err := LoadPluginConfig(p.Config)
		if err != nil {
			return nil, fmt.Errorf("images.credentials.providers.config: %w", err)
		}
		plugins, err := NewPlugins(cfg, p.BinDir, log)
		if err != nil {
			return nil, fmt.Errorf("images.credentials.providers: %w", err)
		}
		providers = append(providers, plugins)
	}
	return Chain(providers...), nil
}
