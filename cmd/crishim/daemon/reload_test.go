package daemon

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/crishim/crishim/handlers/plugins"
	"github.com/crishim/crishim/handlers/pulls"
	"github.com/crishim/crishim/test/daemontest"
	"github.com/crishim/crishim/test/fakecri"
)

// TestReloadUnderLoad reloads 100 times, alternating valid and invalid
// files, while clients call in a loop: no call fails, every valid file
// applies (a deny rule comes and goes), and no invalid file ever applies
// (their deny rule for another namespace never takes effect).
func TestReloadUnderLoad(t *testing.T) {
	old := watchInterval
	watchInterval = time.Hour // SIGHUP only: one reload per signal
	defer func() { watchInterval = old }()

	r := newRig(t)
	metricsAddr := r.MetricsAddr
	base := r.Base() + "handlers:\n  - name: runc\n    default: true\n"
	valid := func(deny bool) string {
		if !deny {
			return base
		}
		return base + "routing:\n  rules:\n    - name: flip\n      match: {namespaces: [flip]}\n      deny: flipped\n"
	}
	// Invalid, with a rule that would deny "other" if it were ever applied.
	invalid := []string{
		base + "routing:\n  rules:\n    - name: other\n      match: {namespaces: [other]}\n      deny: applied an invalid file\nbogusKey: 1\n",
		base + "routing:\n  rules:\n    - name: other\n      match: {namespaces: [other]}\n      deny: applied an invalid file\n    - name: bad\n      handler: nosuch\n",
		base + "routing:\n  rules:\n    - name: other\n      match: {namespaces: [other]}\n      deny: applied an invalid file\nlog:\n  level: loud\n",
	}
	path := filepath.Join(r.Dir, "config.yaml")
	write := func(s string) {
		if err := os.WriteFile(path, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write(valid(true))

	srv := r.start(t, path, io.Discard)
	rc := srv.rc
	ctx := context.Background()

	// The client loop: ordinary calls and sandboxes in an unaffected namespace.
	loop := daemontest.StartCallLoop(t, func() error {
		if _, err := rc.ListContainers(ctx, &runtimeapi.ListContainersRequest{}); err != nil {
			return err
		}
		_, err := rc.RunPodSandbox(ctx, pod("steady"))
		return err
	})

	reloads := func() float64 {
		resp, err := http.Get("http://" + metricsAddr + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		var sum float64
		for _, line := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(line, "crishim_config_reloads_total{") {
				var v float64
				fmt.Sscanf(line[strings.LastIndex(line, " ")+1:], "%g", &v)
				sum += v
			}
		}
		return sum
	}
	deny := true
	for i := 0; i < 100; i++ {
		if i%2 == 0 {
			deny = !deny
			write(valid(deny))
		} else {
			write(invalid[i%len(invalid)])
		}
		srv.signal(syscall.SIGHUP)
		until := time.Now().Add(10 * time.Second)
		for reloads() < float64(i+1) {
			if time.Now().After(until) {
				t.Fatalf("reload %d did not happen", i)
			}
			time.Sleep(2 * time.Millisecond)
		}
		_, err := rc.RunPodSandbox(ctx, pod("flip"))
		if deny != (status.Code(err) == codes.PermissionDenied) {
			t.Fatalf("after reload %d (valid config denies flip: %v): RunPodSandbox(flip) = %v", i, deny, err)
		}
		if _, err := rc.RunPodSandbox(ctx, pod("other")); err != nil {
			t.Fatalf("after reload %d: an invalid file was applied: RunPodSandbox(other) = %v", i, err)
		}
	}
	loop.Stop()
	t.Logf("100 reloads: %d call pairs from the client loop, %d failed", loop.OK.Load()+loop.Failed.Load(), loop.Failed.Load())
	if loop.Failed.Load() != 0 {
		t.Errorf("%d calls failed during the reloads, want 0", loop.Failed.Load())
	}
	if loop.OK.Load() < 50 {
		t.Errorf("only %d call pairs ran during the reloads: the loop proves little", loop.OK.Load())
	}
}

func pod(ns string) *runtimeapi.RunPodSandboxRequest {
	return &runtimeapi.RunPodSandboxRequest{Config: &runtimeapi.PodSandboxConfig{Metadata: &runtimeapi.PodSandboxMetadata{Name: "p", Namespace: ns, Uid: ns}}}
}

// TestReloadReportsRestartOnly changes a setting that needs a restart: the
// rest applies, the log says which setting waits for a restart.
func TestReloadReportsRestartOnly(t *testing.T) {
	cfg := &Config{}
	*cfg = *DefaultConfig()
	n := &node{}
	n.cfg.Store(cfg)
	next := *cfg
	next.RuntimeEndpoint = "unix:///run/other.sock"
	next.Handlers = nil
	keys := n.restartOnly(&next)
	if len(keys) != 1 || keys[0] != "runtimeEndpoint" {
		t.Errorf("restart-only settings %v, want [runtimeEndpoint]", keys)
	}
	next.Images.Pulls = &pulls.Config{Mode: "serial"}
	if keys := n.restartOnly(&next); len(keys) != 2 || !strings.Contains(keys[1], "images.pulls") {
		t.Errorf("turning scheduling on: %v", keys)
	}
	// After a reload applied the rest, the next reload of the same file
	// still says the restart-only setting is not applied.
	n.started = cfg
	n.cfg.Store(&next)
	if keys := n.restartOnly(&next); len(keys) != 2 || keys[0] != "runtimeEndpoint" {
		t.Errorf("second reload of the same file: %v, want runtimeEndpoint still reported", keys)
	}
}

// TestReloadOnFileChange: editing the file is enough, no signal needed.
func TestReloadOnFileChange(t *testing.T) {
	old := watchInterval
	watchInterval = 20 * time.Millisecond
	defer func() { watchInterval = old }()
	r := newRig(t)
	base := r.Base() + "handlers:\n  - name: runc\n    default: true\n"
	path := daemontest.WriteConfig(t, base)
	rc := r.start(t, path, io.Discard).rc
	ctx := context.Background()
	waitCode := func(want codes.Code) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for {
			_, err := rc.RunPodSandbox(ctx, pod("edited"))
			if status.Code(err) == want {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("RunPodSandbox(edited) = %v, want %s", err, want)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	waitCode(codes.OK)
	if err := os.WriteFile(path, []byte(base+"routing:\n  rules:\n    - name: edit\n      match: {namespaces: [edited]}\n      deny: edited in place\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	waitCode(codes.PermissionDenied)
}

// TestReloadOnProviderConfigChange: editing the credential-provider config
// that crishim's config names reloads too; a broken one is rejected.
func TestReloadOnProviderConfigChange(t *testing.T) {
	old := watchInterval
	watchInterval = 20 * time.Millisecond
	defer func() { watchInterval = old }()
	r := newRig(t)
	bin := filepath.Join(r.Dir, "plugins")
	if err := os.Mkdir(bin, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(bin, "p"), []byte("#!/bin/sh\nexit 1\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	providers := filepath.Join(r.Dir, "providers.yaml")
	good := "apiVersion: kubelet.config.k8s.io/v1\nkind: CredentialProviderConfig\nproviders:\n  - name: p\n    matchImages: [\"*.example\"]\n    defaultCacheDuration: 1m\n    apiVersion: credentialprovider.kubelet.k8s.io/v1\n"
	if err := os.WriteFile(providers, []byte(good), 0o600); err != nil {
		t.Fatal(err)
	}
	path := daemontest.WriteConfig(t, r.Base()+fmt.Sprintf("images:\n  credentials:\n    providers:\n      config: %s\n      binDir: %s\n", providers, bin))
	r.start(t, path, io.Discard)
	reloads := func(result string) string {
		resp, err := http.Get("http://" + r.MetricsAddr + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		for _, line := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(line, `crishim_config_reloads_total{result="`+result+`"}`) {
				return line[strings.LastIndex(line, " ")+1:]
			}
		}
		return "0"
	}
	if err := os.WriteFile(providers, []byte(strings.Replace(good, "defaultCacheDuration: 1m\n", "defaultCacheDuration: 1m\n    bogus: 1\n", 1)), 0o600); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for reloads("failure") != "1" {
		if time.Now().After(deadline) {
			t.Fatalf("no rejected reload after breaking the provider config (failures %s, successes %s)", reloads("failure"), reloads("success"))
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err := os.WriteFile(providers, []byte(good), 0o600); err != nil {
		t.Fatal(err)
	}
	for reloads("success") != "1" {
		if time.Now().After(deadline) {
			t.Fatalf("no reload after fixing the provider config")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestRestartOnlyListenSettings: the socket and its limits are made at
// start, so a reload that changes them says they wait for a restart.
func TestRestartOnlyListenSettings(t *testing.T) {
	tests := []struct {
		key    string
		change func(*Config)
	}{
		{"listen.path", func(c *Config) { c.Listen.Path = "/run/other.sock" }},
		{"listen.mode", func(c *Config) { c.Listen.Mode = "0600" }},
		{"listen.maxConnections", func(c *Config) { c.Listen.MaxConnections = 1024 }},
		{"listen.maxConcurrentStreams", func(c *Config) { c.Listen.MaxConcurrentStreams = 2000 }},
	}
	for _, tc := range tests {
		t.Run(tc.key, func(t *testing.T) {
			n := &node{}
			n.cfg.Store(DefaultConfig())
			next := DefaultConfig()
			tc.change(next)
			if keys := n.restartOnly(next); len(keys) != 1 || keys[0] != tc.key {
				t.Errorf("restart-only settings %v, want [%s]", keys, tc.key)
			}
		})
	}
}

// TestReloadTurnsImageAccessOn: image access records while enforce is
// false, and a reload (SIGHUP) turning it on refuses at once a namespace
// without proof, from the record kept meanwhile.
func TestReloadTurnsImageAccessOn(t *testing.T) {
	r := newRig(t)
	dockerConfig := filepath.Join(r.Dir, "config.json")
	if err := os.WriteFile(dockerConfig, []byte(`{"auths": {"registry.example": {"auth": "dTpw"}}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	id := "sha256:" + strings.Repeat("e", 64)
	r.Fake.Script(runtimeapi.ImageService_PullImage_FullMethodName, fakecri.Script{Response: &runtimeapi.PullImageResponse{ImageRef: id}})
	cfg := func(enforce bool) string {
		return r.Base() + fmt.Sprintf("images:\n  credentials:\n    dockerConfig:\n      paths: [%s]\n    policy:\n      - registries: [registry.example]\n        namespaces: [team-a]\n  access:\n    enforce: %v\n    stateDir: %s\n",
			dockerConfig, enforce, filepath.Join(r.Dir, "state"))
	}
	path := daemontest.WriteConfig(t, cfg(false))
	srv := r.start(t, path, io.Discard)
	conn, err := grpc.NewClient("unix://"+r.Sock, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx := context.Background()
	sandbox := func(ns string) *runtimeapi.PodSandboxConfig {
		return &runtimeapi.PodSandboxConfig{Metadata: &runtimeapi.PodSandboxMetadata{Name: "p", Namespace: ns, Uid: "u"}}
	}
	if _, err := runtimeapi.NewImageServiceClient(conn).PullImage(ctx, &runtimeapi.PullImageRequest{Image: &runtimeapi.ImageSpec{Image: "registry.example/app:1"}, SandboxConfig: sandbox("team-a")}); err != nil {
		t.Fatal(err)
	}
	create := func() error {
		_, err := srv.rc.CreateContainer(ctx, &runtimeapi.CreateContainerRequest{
			Config:        &runtimeapi.ContainerConfig{Image: &runtimeapi.ImageSpec{Image: id, UserSpecifiedImage: "registry.example/app:1"}},
			SandboxConfig: sandbox("other"),
		})
		return err
	}
	if err := create(); err != nil {
		t.Fatalf("enforce false: %v", err)
	}
	if err := os.WriteFile(path, []byte(cfg(true)), 0o600); err != nil {
		t.Fatal(err)
	}
	srv.signal(syscall.SIGHUP)
	deadline := time.Now().Add(10 * time.Second)
	for {
		err := create()
		if status.Code(err) == codes.PermissionDenied {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after the reload turning enforcement on: %v, want PermissionDenied", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestChangeBetweenLoadAndWatchIsReloaded: a file changed after crishim
// read it but before the reloader watched it (at start, or while a reload
// reads it) was never reloaded, because the stamps were taken after the
// read. They are taken before it now.
func TestChangeBetweenLoadAndWatchIsReloaded(t *testing.T) {
	old := watchInterval
	watchInterval = 20 * time.Millisecond
	defer func() { watchInterval = old }()
	r := newRig(t)
	base := r.Base() + "handlers:\n  - name: runc\n    default: true\n"
	path := daemontest.WriteConfig(t, base)
	cfg := loadValid(t, path)
	// changed after the load, before Run starts watching
	if err := os.WriteFile(path, []byte(base+"routing:\n  rules:\n    - name: edit\n      match: {namespaces: [edited]}\n      deny: edited before the watch\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	rc := r.startLoaded(t, cfg, path, io.Discard).rc
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, err := rc.RunPodSandbox(context.Background(), pod("edited"))
		if status.Code(err) == codes.PermissionDenied {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("RunPodSandbox(edited) = %v, want PermissionDenied from the edit made before the watch", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestRestartOnlyNRI: the plugin socket, the pre-installed plugins and
// hosting plugins at all are set up at start; a reload that changes them
// says they wait for a restart, while policies and timeouts change live.
func TestRestartOnlyNRI(t *testing.T) {
	withNRI := func(c *Config) { c.NRI = &plugins.Config{Socket: "/run/crishim/nri.sock"} }
	tests := []struct {
		desc  string
		start func(*Config)
		next  func(*Config)
		want  []string
	}{
		{"turned on", nil, withNRI, []string{"nri (turning plugins on or off)"}},
		{"socket", withNRI, func(c *Config) { c.NRI = &plugins.Config{Socket: "/run/other/nri.sock"} }, []string{"nri.socket"}},
		{"plugin dir", withNRI, func(c *Config) { c.NRI = &plugins.Config{Socket: "/run/crishim/nri.sock", PluginDir: "/opt/nri"} }, []string{"nri.pluginDir"}},
		{"policies live", withNRI, func(c *Config) {
			c.NRI = &plugins.Config{Socket: "/run/crishim/nri.sock", Unsupported: "drop", Plugins: []plugins.PluginConfig{{Name: "a", FailurePolicy: "fail", Required: true}}}
		}, nil},
	}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			cur := DefaultConfig()
			n := &node{}
			if tc.start != nil {
				tc.start(cur)
				n.plugins = &plugins.Host{} // hosting, as far as restartOnly looks
			}
			n.cfg.Store(cur)
			next := DefaultConfig()
			tc.next(next)
			if keys := n.restartOnly(next); !slices.Equal(keys, tc.want) {
				t.Errorf("restart-only settings %v, want %v", keys, tc.want)
			}
		})
	}
}
