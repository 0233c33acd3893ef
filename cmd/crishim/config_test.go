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

	"github.com/crishim/crishim/test/daemontest"
)

func TestShippedConfigsAreValid(t *testing.T) {
	// The demo's config, with the paths the demo fills in.
	demo, err := os.ReadFile("../../configs/crishim-demo.yaml")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	demoPath := filepath.Join(dir, "crishim-demo.yaml")
	filled := strings.NewReplacer("@AUTH_REGISTRY@", "127.0.0.1:5001", "@DEMO_DIR@", dir).Replace(string(demo))
	if err := os.WriteFile(demoPath, []byte(filled), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{"../../configs/crishim.yaml", "../../configs/crishim-kata.yaml", "../../configs/crishim-nri-example.yaml", demoPath} {
		var out, errb bytes.Buffer
		if err := run(t.Context(), []string{"validate", "--config", path}, &out, &errb, nil); err != nil {
			t.Errorf("%s: %v", path, err)
		}
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

func TestDefaultsAndFlags(t *testing.T) {
	// No file at the default path is fine; flags override.
	f := newServeFlags(&bytes.Buffer{})
	if err := f.fs.Parse([]string{"--config", daemontest.WriteConfig(t, "listen:\n  path: /run/a.sock\nlog:\n  level: debug\n"),
		"--listen", "/run/b.sock", "--runtime-endpoint", "unix:///run/crio/crio.sock", "--metrics-address", ""}); err != nil {
		t.Fatal(err)
	}
	cfg, err := f.load()
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Listen.Path != "/run/b.sock" || cfg.RuntimeEndpoint != "unix:///run/crio/crio.sock" || (cfg.Metrics.Address != nil && *cfg.Metrics.Address != "") || cfg.Log.Level != "debug" {
		t.Errorf("got %+v", cfg)
	}
	if cfg.Metrics.Pprof {
		t.Error("pprof is on by default")
	}
	// What the server makes of these: the daemon package's TestDefaultsReachTheServer.
	if cfg.MaxMessageSize == nil || cfg.MaxMessageSize.Value() != 16<<20 || cfg.ShutdownGracePeriod == nil || cfg.ShutdownGracePeriod.Seconds() != 30 {
		t.Errorf("defaults lost: maxMessageSize %v, shutdownGracePeriod %v", cfg.MaxMessageSize, cfg.ShutdownGracePeriod)
	}

	// An explicit --config that does not exist is an error.
	f = newServeFlags(&bytes.Buffer{})
	_ = f.fs.Parse([]string{"--config", "/nonexistent/crishim.yaml"})
	if _, err := f.load(); err == nil || !strings.Contains(err.Error(), "/nonexistent/crishim.yaml") {
		t.Errorf("missing explicit config: got %v", err)
	}
	// A bad flag value is reported like a bad file value.
	f = newServeFlags(&bytes.Buffer{})
	_ = f.fs.Parse([]string{"--config", daemontest.WriteConfig(t, ""), "--log-level", "loud"})
	if _, err := f.load(); err == nil || !strings.Contains(err.Error(), "log.level") {
		t.Errorf("bad --log-level: got %v", err)
	}
}

func TestValidateCommand(t *testing.T) {
	var out, errb bytes.Buffer
	good := daemontest.WriteConfig(t, "listen:\n  path: /run/crishim/crishim.sock\n")
	if err := run(t.Context(), []string{"validate", "--config", good}, &out, &errb, nil); err != nil {
		t.Errorf("valid file: %v", err)
	}
	if !strings.Contains(out.String(), "is valid") {
		t.Errorf("stdout %q", out.String())
	}
	bad := daemontest.WriteConfig(t, "listen:\n  path: x\nlog:\n  level: loud\n")
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
			cfg := daemontest.WriteConfig(t, fmt.Sprintf("listen:\n  path: %s\nruntimeEndpoint: unix://%s/up.sock\nmetrics:\n  address: \"\"\nimages:\n  credentials:\n    providers:\n      config: %s\n      binDir: %s\n", sock, dir, pc, bin))

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
