package credentials

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"os"
	"slices"
	"strings"

	kubeletconfigv1 "k8s.io/kubelet/config/v1"
	credentialproviderv1 "k8s.io/kubelet/pkg/apis/credentialprovider/v1"
	"sigs.k8s.io/yaml"

	"github.com/crishim/crishim/handlers/configfile"
)

// pluginAPIVersion is the only exec plugin protocol version crishim speaks.
// The kubelet also speaks v1alpha1 and v1beta1 (plugin.go apiVersions); v1
// is GA since Kubernetes 1.26 and what current plugins serve.
var pluginAPIVersion = credentialproviderv1.SchemeGroupVersion.String()

// configAPIVersions are the CredentialProviderConfig file versions accepted.
// The kubelet decodes all three (plugin/config.go decode); they have the same
// fields as far as crishim uses them, so all three decode into the v1 type.
var configAPIVersions = []string{
	"kubelet.config.k8s.io/v1",
	"kubelet.config.k8s.io/v1beta1",
	"kubelet.config.k8s.io/v1alpha1",
}

// LoadPluginConfig reads a kubelet CredentialProviderConfig file (the
// kubelet's --image-credential-provider-config) strictly: an unknown key is
// an error naming it, and the config is validated like the kubelet's
// validateCredentialProviderConfig (pkg/credentialprovider/plugin/config.go).
// The error names the file and lists every problem, each with the provider
// and key it concerns.
func LoadPluginConfig(path string) (*kubeletconfigv1.CredentialProviderConfig, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("credential provider config %s: %w", path, err)
	}
	if err := configfile.CheckNotWorldWritable(path); err != nil {
		return nil, fmt.Errorf("credential provider config %w", err)
	}
	cfg, problems := decodePluginConfig(data)
	if cfg != nil {
		problems = append(problems, validatePluginConfig(cfg)...)
	}
	if len(problems) > 0 {
		return nil, fmt.Errorf("credential provider config %s:\n  %s", path, strings.Join(problems, "\n  "))
	}
	return cfg, nil
}

// decodePluginConfig decodes YAML or JSON, reporting unknown keys by path and
// a wrong apiVersion or kind.
func decodePluginConfig(data []byte) (*kubeletconfigv1.CredentialProviderConfig, []string) {
	j, err := yaml.YAMLToJSON(data)
	if err != nil {
		// by line only: the parser's message can quote an env value
		return nil, []string{configfile.YAMLErrorLine(err)}
	}
	var doc any
	if err := json.Unmarshal(j, &doc); err != nil {
		return nil, []string{"not valid YAML or JSON"}
	}
	top, ok := doc.(map[string]any)
	if !ok {
		return nil, []string{"want a mapping at the top level"}
	}
	var problems []string
	names := providerNames(top)
	var cfg kubeletconfigv1.CredentialProviderConfig
	decodable := true
	for _, p := range configfile.Check(data, &cfg, configfile.Redact(secretPath)) {
		problems = append(problems, describePath(p.Path, names)+": "+p.Msg)
		// Unknown keys do not stop the decoding, so the rest of the file
		// is validated too; a value of the wrong type does.
		decodable = decodable && p.Msg == "unknown key"
	}
	if !decodable {
		return nil, problems
	}
	if err := json.Unmarshal(j, &cfg); err != nil {
		return nil, append(problems, describeJSONError(err).Error())
	}
	if !slices.Contains(configAPIVersions, cfg.APIVersion) {
		problems = append(problems, fmt.Sprintf("apiVersion: %q is not supported, want one of %s", cfg.APIVersion, strings.Join(configAPIVersions, ", ")))
	}
	if cfg.Kind != "CredentialProviderConfig" {
		problems = append(problems, fmt.Sprintf("kind: %q, want CredentialProviderConfig", cfg.Kind))
	}
	return &cfg, problems
}

// secretPath reports whether a config path holds what may be a secret: a
// provider's env entries (values are tokens more often than not) and its
// args. Problems there are reported by path and reason only.
func secretPath(path string) bool {
	_, rest, ok := strings.Cut(path, "].")
	if !ok || !strings.HasPrefix(path, "providers[") {
		return false
	}
	return rest == "env" || strings.HasPrefix(rest, "env[") || strings.HasPrefix(rest, "env.") ||
		rest == "args" || strings.HasPrefix(rest, "args[")
}

// validatePluginConfig applies the kubelet's rules (plugin/config.go
// validateCredentialProviderConfig), with crishim's own limits: only the v1
// plugin protocol, no service account tokens, and names and env names that
// cannot go wrong at exec time (a non-empty name without '/' or a backslash,
// env names without '=').
func validatePluginConfig(cfg *kubeletconfigv1.CredentialProviderConfig) []string {
	var problems []string
	if len(cfg.Providers) == 0 {
		problems = append(problems, "providers: at least one provider is required")
	}
	seen := map[string]bool{}
	for i, p := range cfg.Providers {
		where := providerLabel(i, p.Name)
		bad := func(key, format string, args ...any) {
			problems = append(problems, fmt.Sprintf("%s: %s: %s", where, key, fmt.Sprintf(format, args...)))
		}
		switch {
		case p.Name == "":
			bad("name", "required: the plugin binary's file name")
		case strings.ContainsAny(p.Name, `/\`):
			bad("name", "must be a file name in the plugin directory, without path separators")
		case strings.Contains(p.Name, " "):
			bad("name", "must not contain spaces")
		case p.Name == "." || p.Name == "..":
			bad("name", "must not be %q", p.Name)
		}
		if p.Name != "" && seen[p.Name] {
			bad("name", "duplicate provider name")
		}
		seen[p.Name] = true

		switch {
		case p.APIVersion == "":
			bad("apiVersion", "required (%s)", pluginAPIVersion)
		case p.APIVersion != pluginAPIVersion:
			bad("apiVersion", "%q is not supported: crishim speaks only %s to plugins", p.APIVersion, pluginAPIVersion)
		}

		if len(p.MatchImages) == 0 {
			bad("matchImages", "at least one image pattern is required")
		}
		for j, m := range p.MatchImages {
			if err := validMatchImage(m); err != nil {
				bad(fmt.Sprintf("matchImages[%d]", j), "%q is invalid: %v", m, err)
			}
		}

		switch {
		case p.DefaultCacheDuration == nil:
			bad("defaultCacheDuration", "required (for example 0s, or 12h)")
		case p.DefaultCacheDuration.Duration < 0:
			bad("defaultCacheDuration", "must be 0 or more, got %s", p.DefaultCacheDuration.Duration)
		}

		for j, e := range p.Env {
			if e.Name == "" || strings.Contains(e.Name, "=") {
				bad(fmt.Sprintf("env[%d].name", j), "must be a non-empty variable name without '='")
			}
		}

		if p.TokenAttributes != nil {
			bad("tokenAttributes", "service account tokens for credential providers are not supported by crishim (it pulls with node credentials only); remove tokenAttributes or leave this provider to the kubelet")
		}
	}
	return problems
}

// validMatchImage applies the kubelet's check: the pattern parses as a
// schemeless URL (keyring.go ParseSchemelessURL). Host characters that would
// make a bad filepath.Match pattern ('[' or a backslash) fail that parse
// already.
func validMatchImage(m string) error {
	if _, err := url.Parse("https://" + m); err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return err
	}
	return nil
}

// providerLabel names a provider in errors: its index and, when known, name.
func providerLabel(i int, name string) string {
	if name == "" {
		return fmt.Sprintf("providers[%d]", i)
	}
	return fmt.Sprintf("providers[%d] (%q)", i, name)
}

// providerNames collects providers[i].name from the raw document, so that
// unknown-key errors name the provider too.
func providerNames(top map[string]any) map[int]string {
	names := map[int]string{}
	list, _ := top["providers"].([]any)
	for i, p := range list {
		if m, ok := p.(map[string]any); ok {
			if n, ok := m["name"].(string); ok {
				names[i] = n
			}
		}
	}
	return names
}

// describePath turns "providers[2].matchImage" into
// `providers[2] ("ecr"): matchImage`.
func describePath(path string, names map[int]string) string {
	var i int
	var rest string
	if n, _ := fmt.Sscanf(path, "providers[%d]", &i); n == 1 {
		_, rest, _ = strings.Cut(path, "].")
		if rest == "" {
			return providerLabel(i, names[i])
		}
		return providerLabel(i, names[i]) + ": " + rest
	}
	return path
}
