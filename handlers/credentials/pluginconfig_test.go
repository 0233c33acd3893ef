package credentials

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

const validPluginConfig = `apiVersion: kubelet.config.k8s.io/v1
kind: CredentialProviderConfig
providers:
  - name: ecr-credential-provider
    matchImages:
      - "*.dkr.ecr.*.amazonaws.com"
      - "registry.example:5000/team"
    defaultCacheDuration: "12h"
    apiVersion: credentialprovider.kubelet.k8s.io/v1
    args: [get-credentials]
    env:
      - name: AWS_PROFILE
        value: temp
  - name: other
    matchImages: ["other.example"]
    defaultCacheDuration: 0s
    apiVersion: credentialprovider.kubelet.k8s.io/v1
`

// TestLoadPluginConfig decodes a valid file, JSON or YAML.
func TestLoadPluginConfig(t *testing.T) {
	for _, tc := range []struct{ desc, content string }{
		{"yaml", validPluginConfig},
		{"json", `{"apiVersion": "kubelet.config.k8s.io/v1", "kind": "CredentialProviderConfig", "providers": [
			{"name": "ecr-credential-provider", "matchImages": ["*.dkr.ecr.*.amazonaws.com", "registry.example:5000/team"],
			 "defaultCacheDuration": "12h", "apiVersion": "credentialprovider.kubelet.k8s.io/v1", "args": ["get-credentials"],
			 "env": [{"name": "AWS_PROFILE", "value": "temp"}]},
			{"name": "other", "matchImages": ["other.example"], "defaultCacheDuration": "0s", "apiVersion": "credentialprovider.kubelet.k8s.io/v1"}]}`},
		{"v1beta1 file", strings.Replace(validPluginConfig, "kubelet.config.k8s.io/v1\n", "kubelet.config.k8s.io/v1beta1\n", 1)},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "config.yaml")
			writeFile(t, path, tc.content)
			cfg, err := LoadPluginConfig(path)
			if err != nil {
				t.Fatalf("LoadPluginConfig: %v", err)
			}
			if len(cfg.Providers) != 2 {
				t.Fatalf("providers = %d, want 2", len(cfg.Providers))
			}
			p := cfg.Providers[0]
			if p.Name != "ecr-credential-provider" || len(p.MatchImages) != 2 || p.DefaultCacheDuration.Duration != 12*time.Hour ||
				p.Args[0] != "get-credentials" || p.Env[0].Name != "AWS_PROFILE" || p.Env[0].Value != "temp" {
				t.Errorf("provider decoded as %+v", p)
			}
			if d := cfg.Providers[1].DefaultCacheDuration; d == nil || d.Duration != 0 {
				t.Errorf("defaultCacheDuration 0s decoded as %v", d)
			}
		})
	}
}

// TestLoadPluginConfigErrors checks that each problem is reported with the
// file, the provider and the key, all problems at once.
func TestLoadPluginConfigErrors(t *testing.T) {
	provider := func(lines ...string) string {
		return "apiVersion: kubelet.config.k8s.io/v1\nkind: CredentialProviderConfig\nproviders:\n  - " + strings.Join(lines, "\n    ") + "\n"
	}
	ok := []string{`name: ecr`, `matchImages: ["*.example"]`, `defaultCacheDuration: 1h`, `apiVersion: credentialprovider.kubelet.k8s.io/v1`}
	with := func(replace map[string]string, extra ...string) string {
		var lines []string
		for _, l := range ok {
			key, _, _ := strings.Cut(l, ":")
			if r, found := replace[key]; found {
				if r != "" {
					lines = append(lines, r)
				}
				continue
			}
			lines = append(lines, l)
		}
		return provider(append(lines, extra...)...)
	}
	tests := []struct {
		desc, content string
		want          []string
	}{
		{"unknown top-level key", strings.Replace(with(nil), "kind:", "provider: []\nkind:", 1), []string{"provider: unknown key"}},
		{"unknown provider key", with(nil, `matchImage: ["x"]`), []string{`providers[0] ("ecr"): matchImage: unknown key`}},
		// env entries may hold secrets: even an unknown key there is not quoted
		{"unknown env key", with(nil, "env:\n      - name: A\n        valeu: b"), []string{`providers[0] ("ecr"): env[0]: unknown key (not shown: it may be a secret)`}},
		{"wrong type", with(map[string]string{"matchImages": `matchImages: "*.example"`}), []string{"matchImages", `matchImages: want a list, got the string "*.example"`}},
		{"file apiVersion", strings.Replace(with(nil), "kubelet.config.k8s.io/v1", "kubelet.config.k8s.io/v2", 1), []string{`apiVersion: "kubelet.config.k8s.io/v2" is not supported`}},
		{"file kind", strings.Replace(with(nil), "kind: CredentialProviderConfig", "kind: KubeletConfiguration", 1), []string{`kind: "KubeletConfiguration", want CredentialProviderConfig`}},
		{"no providers", "apiVersion: kubelet.config.k8s.io/v1\nkind: CredentialProviderConfig\nproviders: []\n", []string{"providers: at least one provider is required"}},
		{"name with a slash", with(map[string]string{"name": "name: ../bin/evil"}), []string{`providers[0] ("../bin/evil"): name: must be a file name in the plugin directory, without path separators`}},
		{"name ..", with(map[string]string{"name": "name: .."}), []string{`name: must not be ".."`}},
		{"name with a space", with(map[string]string{"name": "name: a b"}), []string{"name: must not contain spaces"}},
		{"no name", with(map[string]string{"name": ""}), []string{"providers[0]: name: required"}},
		{"duplicate names", with(nil) + "  - " + strings.Join(ok, "\n    ") + "\n", []string{`providers[1] ("ecr"): name: duplicate provider name`}},
		{"plugin apiVersion v1beta1", with(map[string]string{"apiVersion": "apiVersion: credentialprovider.kubelet.k8s.io/v1beta1"}), []string{`providers[0] ("ecr"): apiVersion: "credentialprovider.kubelet.k8s.io/v1beta1" is not supported: crishim speaks only credentialprovider.kubelet.k8s.io/v1`}},
		{"plugin apiVersion missing", with(map[string]string{"apiVersion": ""}), []string{`providers[0] ("ecr"): apiVersion: required`}},
		{"matchImages missing", with(map[string]string{"matchImages": ""}), []string{`providers[0] ("ecr"): matchImages: at least one image pattern is required`}},
		{"matchImages invalid", with(map[string]string{"matchImages": `matchImages: ["ok.example", "[.io", "bad:port"]`}), []string{`matchImages[1]: "[.io" is invalid`, `matchImages[2]: "bad:port" is invalid`}},
		{"matchImages with a backslash", with(map[string]string{"matchImages": `matchImages: ['reg\istry.example']`}), []string{`matchImages[0]`, "invalid character"}},
		{"defaultCacheDuration missing", with(map[string]string{"defaultCacheDuration": ""}), []string{`providers[0] ("ecr"): defaultCacheDuration: required`}},
		{"defaultCacheDuration negative", with(map[string]string{"defaultCacheDuration": "defaultCacheDuration: -1m"}), []string{"defaultCacheDuration: must be 0 or more, got -1m0s"}},
		{"tokenAttributes", with(nil, "tokenAttributes:\n      serviceAccountTokenAudience: aud\n      requireServiceAccount: true\n      cacheType: Token"), []string{`providers[0] ("ecr"): tokenAttributes: service account tokens for credential providers are not supported by crishim`}},
		{"env without a name", with(nil, "env:\n      - value: x"), []string{"env[0].name: must be a non-empty variable name"}},
		{"every problem at once", with(map[string]string{"matchImages": "", "defaultCacheDuration": "", "name": "name: a/b"}, "bogus: 1"),
			[]string{"bogus: unknown key", "name: must be a file name", "matchImages: at least one", "defaultCacheDuration: required"}},
		{"not YAML", "providers: [\n", []string{"not valid YAML"}},
		{"not a mapping", "- a\n- b\n", []string{"want a mapping at the top level"}},
	}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "credential-providers.yaml")
			writeFile(t, path, tc.content)
			_, err := LoadPluginConfig(path)
			if err == nil {
				t.Fatalf("LoadPluginConfig accepted:\n%s", tc.content)
			}
			for _, w := range append([]string{path}, tc.want...) {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error does not contain %q:\n%v", w, err)
				}
			}
		})
	}
	if _, err := LoadPluginConfig(filepath.Join(t.TempDir(), "missing.yaml")); err == nil || !strings.Contains(err.Error(), "missing.yaml") {
		t.Errorf("missing file: err = %v, want one naming it", err)
	}
}

// TestNewPluginsBinaries checks the kubelet's start-up checks on the plugin
// directory and binaries.
func TestNewPluginsBinaries(t *testing.T) {
	path := filepath.Join(t.TempDir(), "config.yaml")
	writeFile(t, path, validPluginConfig)
	cfg, err := LoadPluginConfig(path)
	if err != nil {
		t.Fatal(err)
	}
	log, _ := newLog(t)
	bin := t.TempDir()
	if _, err := NewPlugins(cfg, filepath.Join(bin, "missing"), log); err == nil || !strings.Contains(err.Error(), "plugin directory") {
		t.Errorf("missing directory: err = %v", err)
	}
	if _, err := NewPlugins(cfg, bin, log); err == nil || !strings.Contains(err.Error(), `providers[0] ("ecr-credential-provider"): plugin binary `+filepath.Join(bin, "ecr-credential-provider")) {
		t.Errorf("missing binary: err = %v", err)
	}
	writeFile(t, filepath.Join(bin, "ecr-credential-provider"), "#!/bin/sh\n")
	if _, err := NewPlugins(cfg, bin, log); err == nil || !strings.Contains(err.Error(), "not executable") {
		t.Errorf("binary not executable: err = %v", err)
	}
	if err := os.Chmod(filepath.Join(bin, "ecr-credential-provider"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(bin, "other"), 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := NewPlugins(cfg, bin, log); err == nil || !strings.Contains(err.Error(), "not a regular file") {
		t.Errorf("binary is a directory: err = %v", err)
	}
	if err := os.Remove(filepath.Join(bin, "other")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(pluginBinary, filepath.Join(bin, "other")); err != nil {
		t.Fatal(err)
	}
	if _, err := NewPlugins(cfg, bin, log); err != nil {
		t.Errorf("valid setup: %v", err)
	}
	// World-writable plugins, their directory or the config are refused.
	if err := os.Chmod(filepath.Join(bin, "ecr-credential-provider"), 0o777); err != nil {
		t.Fatal(err)
	}
	if _, err := NewPlugins(cfg, bin, log); err == nil || !strings.Contains(err.Error(), "world-writable") {
		t.Errorf("world-writable binary: err = %v", err)
	}
	if err := os.Chmod(filepath.Join(bin, "ecr-credential-provider"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(bin, 0o777); err != nil {
		t.Fatal(err)
	}
	if _, err := NewPlugins(cfg, bin, log); err == nil || !strings.Contains(err.Error(), "world-writable") {
		t.Errorf("world-writable plugin directory: err = %v", err)
	}
	if err := os.Chmod(bin, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, 0o666); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadPluginConfig(path); err == nil || !strings.Contains(err.Error(), "world-writable") {
		t.Errorf("world-writable provider config: err = %v", err)
	}
	cfg.Providers[1].APIVersion = "credentialprovider.kubelet.k8s.io/v1alpha1"
	if _, err := NewPlugins(cfg, bin, log); err == nil || !strings.Contains(err.Error(), "apiVersion") {
		t.Errorf("invalid config in code: err = %v", err)
	}
	if _, err := NewPlugins(nil, bin, log); err == nil {
		t.Errorf("nil config accepted")
	}
}
