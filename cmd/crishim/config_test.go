package main

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/crishim/crishim/handlers/credentials"
)

func writeConfig(t *testing.T, body string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "crishim.yaml")
	if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestLoadConfigErrors(t *testing.T) {
	tests := []struct {
		desc string
		body string
		want []string // every one must appear in the error
	}{
		{"unknown key", "listen:\n  path: /run/x.sock\n  mdoe: \"0660\"\n", []string{"listen.mdoe: unknown key"}},
		{"unknown top-level key", "runtimeEndpont: unix:///run/c.sock\n", []string{"runtimeEndpont: unknown key"}},
		{"bad type", "listen:\n  path: [1, 2]\n", []string{"listen.path: want a string, got a list"}},
		{"bad quantity", "maxMessageSize: lots\n", []string{"maxMessageSize"}},
		{"bad duration", "shutdownGracePeriod: soon\n", []string{"shutdownGracePeriod"}},
		{"not yaml", "listen: [\n", []string{"not valid YAML"}},
		{"two problems at once", "foo: 1\nlisten:\n  mode: 660\n", []string{"foo: unknown key", "listen.mode: want a string, got the number 660"}},
	}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			path := writeConfig(t, tc.body)
			_, err := loadConfig(path, false)
			if err == nil {
				t.Fatal("loaded an invalid file")
			}
			for _, w := range append(tc.want, path) {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
		})
	}
}

func TestWorldWritableConfigRefused(t *testing.T) {
	path := writeConfig(t, "listen:\n  path: /run/x.sock\n")
	if err := os.Chmod(path, 0o666); err != nil {
		t.Fatal(err)
	}
	_, err := loadConfig(path, false)
	if err == nil || !strings.Contains(err.Error(), "world-writable") || !strings.Contains(err.Error(), path) {
		t.Errorf("got %v, want a refusal naming the file", err)
	}
}

func TestValidateProblems(t *testing.T) {
	tests := []struct {
		desc string
		body string
		want []string
	}{
		{"relative socket path", "listen:\n  path: crishim.sock\n", []string{"listen.path", "absolute"}},
		{"socket path too long", "listen:\n  path: /" + strings.Repeat("a", 120) + "\n", []string{"listen.path", "107-byte"}},
		{"world-writable socket", "listen:\n  path: /run/x.sock\n  mode: \"0666\"\n", []string{"listen.mode", "every local user"}},
		{"mode not octal", "listen:\n  path: /run/x.sock\n  mode: \"rw\"\n", []string{"listen.mode", "octal"}},
		{"tcp endpoint", "runtimeEndpoint: tcp://10.0.0.1:1\n", []string{"runtimeEndpoint", "only unix://"}},
		{"relative image endpoint", "imageEndpoint: unix://x.sock\n", []string{"imageEndpoint"}},
		{"endpoint is our own socket", "listen:\n  path: /run/x.sock\nruntimeEndpoint: unix:///run/x.sock\n", []string{"runtimeEndpoint", "own listen socket"}},
		{"message limit below the kubelet's", "maxMessageSize: 4Mi\n", []string{"maxMessageSize", "16Mi"}},
		{"negative grace", "shutdownGracePeriod: -1s\n", []string{"shutdownGracePeriod"}},
		{"log level", "log:\n  level: loud\n", []string{"log.level", `"loud"`}},
		{"log format", "log:\n  format: xml\n", []string{"log.format"}},
		{"metrics address", "metrics:\n  address: nohost\n", []string{"metrics.address"}},
		{"metrics port", "metrics:\n  address: 127.0.0.1:99999\n", []string{"metrics.address", "port"}},
		{"registry label bound", "metrics:\n  maxRegistryLabels: 20000\n", []string{"metrics.maxRegistryLabels", "1 to 10000"}},
		{"negative registry label bound", "metrics:\n  maxRegistryLabels: -1\n", []string{"metrics.maxRegistryLabels"}},
		{"every problem at once", "listen:\n  path: x\nlog:\n  level: loud\n  format: xml\n", []string{"listen.path", "log.level", "log.format"}},
	}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			cfg, err := loadConfig(writeConfig(t, tc.body), false)
			if err != nil {
				t.Fatal(err)
			}
			got := strings.Join(cfg.validate(), "\n")
			if got == "" {
				t.Fatal("no problems found")
			}
			for _, w := range tc.want {
				if !strings.Contains(got, w) {
					t.Errorf("problems %q lack %q", got, w)
				}
			}
		})
	}
}

func TestShippedConfigsAreValid(t *testing.T) {
	for _, path := range []string{"../../configs/crishim.yaml", "../../configs/crishim-kata.yaml"} {
		var out, errb bytes.Buffer
		if err := run(t.Context(), []string{"validate", "--config", path}, &out, &errb, nil); err != nil {
			t.Errorf("%s: %v", path, err)
		}
	}
}

func TestShippedCredentialProviderConfigLoads(t *testing.T) {
	cfg, err := credentials.LoadPluginConfig("../../configs/credential-provider.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.Providers) != 1 || cfg.Providers[0].Name != "ecr-credential-provider" {
		t.Errorf("providers %+v", cfg.Providers)
	}
}

// TestShippedRuntimeClassesAreGenerated keeps configs/runtimeclasses.yaml
// what `crishim runtimeclasses` makes of configs/crishim-kata.yaml.
func TestShippedRuntimeClassesAreGenerated(t *testing.T) {
	var out bytes.Buffer
	if err := run(t.Context(), []string{"runtimeclasses", "--config", "../../configs/crishim-kata.yaml"}, &out, io.Discard, nil); err != nil {
		t.Fatal(err)
	}
	shipped, err := os.ReadFile("../../configs/runtimeclasses.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if out.String() != string(shipped) {
		t.Errorf("configs/runtimeclasses.yaml is stale; regenerate it:\n  go run ./cmd/crishim runtimeclasses --config configs/crishim-kata.yaml > configs/runtimeclasses.yaml\ngot:\n%s", out.String())
	}
	if err := run(t.Context(), []string{"runtimeclasses", "--config", "../../configs/crishim.yaml"}, io.Discard, io.Discard, nil); err == nil || !strings.Contains(err.Error(), "no handlers") {
		t.Errorf("runtimeclasses without handlers: got %v", err)
	}
}

func TestRoutingConfigProblemsNameTheRule(t *testing.T) {
	body := "handlers:\n  - name: runc\n    default: true\n  - name: kata\n    default: true\n    overhead:\n      cpu: lots\nrouting:\n  rules:\n    - name: to-fc\n      handler: fc\n"
	_, err := loadConfig(writeConfig(t, body), false)
	if err == nil || !strings.Contains(err.Error(), "handlers[1].overhead.cpu") {
		t.Fatalf("bad quantity: got %v", err)
	}
	body = strings.Replace(body, "cpu: lots", "cpu: 250m", 1)
	cfg, err := loadConfig(writeConfig(t, body), false)
	if err != nil {
		t.Fatal(err)
	}
	got := strings.Join(cfg.validate(), "\n")
	for _, want := range []string{"2 handlers are marked default", `routing.rules[0] ("to-fc"): handler "fc" is not in handlers`} {
		if !strings.Contains(got, want) {
			t.Errorf("problems %q lack %q", got, want)
		}
	}
}

func TestDefaultsAndFlags(t *testing.T) {
	// No file at the default path is fine; flags override.
	f := newServeFlags(&bytes.Buffer{})
	if err := f.fs.Parse([]string{"--config", writeConfig(t, "listen:\n  path: /run/a.sock\nlog:\n  level: debug\n"),
		"--listen", "/run/b.sock", "--runtime-endpoint", "unix:///run/crio/crio.sock", "--metrics-address", ""}); err != nil {
		t.Fatal(err)
	}
	cfg, err := f.load()
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Listen.Path != "/run/b.sock" || cfg.RuntimeEndpoint != "unix:///run/crio/crio.sock" || cfg.metricsAddress() != "" || cfg.Log.Level != "debug" {
		t.Errorf("got %+v", cfg)
	}
	if cfg.Metrics.Pprof {
		t.Error("pprof is on by default")
	}
	if cfg.shimConfig().MaxMessageSize != 16<<20 || cfg.gracePeriod().Seconds() != 30 {
		t.Errorf("defaults lost: %+v", cfg.shimConfig())
	}

	// An explicit --config that does not exist is an error.
	f = newServeFlags(&bytes.Buffer{})
	_ = f.fs.Parse([]string{"--config", "/nonexistent/crishim.yaml"})
	if _, err := f.load(); err == nil || !strings.Contains(err.Error(), "/nonexistent/crishim.yaml") {
		t.Errorf("missing explicit config: got %v", err)
	}
	// A bad flag value is reported like a bad file value.
	f = newServeFlags(&bytes.Buffer{})
	_ = f.fs.Parse([]string{"--config", writeConfig(t, ""), "--log-level", "loud"})
	if _, err := f.load(); err == nil || !strings.Contains(err.Error(), "log.level") {
		t.Errorf("bad --log-level: got %v", err)
	}
}

func TestValidateCommand(t *testing.T) {
	var out, errb bytes.Buffer
	good := writeConfig(t, "listen:\n  path: /run/crishim/crishim.sock\n")
	if err := run(t.Context(), []string{"validate", "--config", good}, &out, &errb, nil); err != nil {
		t.Errorf("valid file: %v", err)
	}
	if !strings.Contains(out.String(), "is valid") {
		t.Errorf("stdout %q", out.String())
	}
	bad := writeConfig(t, "listen:\n  path: x\nlog:\n  level: loud\n")
	err := run(t.Context(), []string{"validate", "--config", bad}, &out, &errb, nil)
	if err == nil || !strings.Contains(err.Error(), "listen.path") || !strings.Contains(err.Error(), "log.level") {
		t.Errorf("invalid file: got %v, want both problems listed", err)
	}
}

// TestValidateChecksWhatStartChecks: crishim validate refuses every file
// that start refuses, including problems in the files the config points to
// (the credential-provider config and the plugin binaries), and names the
// file at fault; start refuses the same files, for the same reason.
func TestValidateChecksWhatStartChecks(t *testing.T) {
	const providers = "apiVersion: kubelet.config.k8s.io/v1\nkind: CredentialProviderConfig\nproviders:\n  - name: p\n    matchImages: [\"*.example\"]\n    defaultCacheDuration: 1m\n    apiVersion: credentialprovider.kubelet.k8s.io/v1\n"
	tests := []struct {
		desc      string
		providers string // the provider config; "" leaves the file out
		plugin    string // the plugin binary's mode; "" leaves it out
		want      []string
	}{
		{"valid", providers, "0755", nil},
		{"env entry written as a string", providers + "    env:\n      - FOO=bar\n", "0755", []string{"providers.yaml", "env"}},
		{"unknown key in the provider config", providers + "    bogus: 1\n", "0755", []string{"providers.yaml", "bogus"}},
		{"provider config missing", "", "0755", []string{"providers.yaml", "no such file"}},
		{"plugin binary missing", providers, "", []string{"plugins/p", "no such file"}},
		{"plugin binary not executable", providers, "0644", []string{"plugins/p", "not executable"}},
	}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			dir, err := os.MkdirTemp("", "cv") // short: the config names a socket in it
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { os.RemoveAll(dir) })
			bin := filepath.Join(dir, "plugins")
			if err := os.Mkdir(bin, 0o755); err != nil {
				t.Fatal(err)
			}
			if tc.plugin != "" {
				mode, _ := strconv.ParseUint(tc.plugin, 8, 32)
				if err := os.WriteFile(filepath.Join(bin, "p"), []byte("#!/bin/sh\nexit 1\n"), os.FileMode(mode)); err != nil {
					t.Fatal(err)
				}
			}
			pc := filepath.Join(dir, "providers.yaml")
			if tc.providers != "" {
				if err := os.WriteFile(pc, []byte(tc.providers), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			sock := filepath.Join(dir, "crishim.sock")
			cfg := writeConfig(t, fmt.Sprintf("listen:\n  path: %s\nruntimeEndpoint: unix://%s/up.sock\nmetrics:\n  address: \"\"\nimages:\n  credentials:\n    providers:\n      config: %s\n      binDir: %s\n", sock, dir, pc, bin))

			var out bytes.Buffer
			validateErr := run(t.Context(), []string{"validate", "--config", cfg}, &out, io.Discard, nil)
			if tc.want == nil {
				if validateErr != nil || !strings.Contains(out.String(), "is valid") {
					t.Fatalf("validate: %v, printed %q", validateErr, out.String())
				}
				return
			}
			// Start with the same file; it must refuse before serving, so
			// it returns without a signal.
			startErr := run(t.Context(), []string{"--config", cfg}, io.Discard, io.Discard, nil)
			for name, err := range map[string]error{"validate": validateErr, "start": startErr} {
				if err == nil {
					t.Errorf("%s accepted the config", name)
					continue
				}
				for _, w := range tc.want {
					if !strings.Contains(err.Error(), w) {
						t.Errorf("%s: error %q lacks %q", name, err, w)
					}
				}
			}
			if strings.Contains(out.String(), "is valid") {
				t.Errorf("validate printed %q", out.String())
			}
			if _, err := os.Stat(sock); !os.IsNotExist(err) {
				t.Errorf("start left its socket behind: %v", err)
			}
		})
	}
}

func TestConnectionLimitProblems(t *testing.T) {
	tests := []struct {
		body string
		want []string // nil: valid
	}{
		{"", nil},
		{"listen:\n  maxConnections: 16\n  maxConcurrentStreams: 100\n", nil},
		{"listen:\n  maxConnections: 1048576\n  maxConcurrentStreams: 1048576\n", nil},
		{"listen:\n  maxConnections: 0\n", []string{"listen.maxConnections", "0 is below 16"}},
		{"listen:\n  maxConnections: 2\n", []string{"listen.maxConnections", "kubelet"}},
		{"listen:\n  maxConnections: 2000000\n", []string{"listen.maxConnections", "above 1048576"}},
		{"listen:\n  maxConcurrentStreams: 10\n", []string{"listen.maxConcurrentStreams", "below 100"}},
		{"listen:\n  maxConcurrentStreams: -1\n", []string{"listen.maxConcurrentStreams", "-1 is below 100"}},
		{"listen:\n  maxConcurrentStreams: 5000000000\n", []string{"listen.maxConcurrentStreams", "above 1048576"}},
		{"listen:\n  maxConnections: 1\n  maxConcurrentStreams: 1\n", []string{"listen.maxConnections", "listen.maxConcurrentStreams"}},
	}
	for _, tc := range tests {
		t.Run(strings.ReplaceAll(tc.body, "\n", " "), func(t *testing.T) {
			cfg, err := loadConfig(writeConfig(t, tc.body), false)
			if err != nil {
				t.Fatal(err)
			}
			got := strings.Join(cfg.validate(), "\n")
			if tc.want == nil && got != "" {
				t.Errorf("problems %q, want none", got)
			}
			for _, w := range tc.want {
				if !strings.Contains(got, w) {
					t.Errorf("problems %q lack %q", got, w)
				}
			}
		})
	}
	// The reference config documents the defaults.
	ref, err := loadConfig("../../configs/crishim.yaml", false)
	if err != nil {
		t.Fatal(err)
	}
	if ref.Listen != defaultConfig().Listen {
		t.Errorf("configs/crishim.yaml listen %+v, defaults %+v", ref.Listen, defaultConfig().Listen)
	}
	// The defaults reach the server.
	sc := defaultConfig().shimConfig()
	if sc.MaxConnections != defaultMaxConnections || sc.MaxConcurrentStreams != defaultMaxConcurrentStreams {
		t.Errorf("server config %+v lacks the default limits", sc)
	}
}
