package plugins

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/containerd/nri/pkg/api"
	"github.com/containerd/nri/pkg/stub"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/crishim/crishim/test/fakecri"
	"github.com/crishim/crishim/test/shimtest"
)

// rig is a plugin host in front of a fake runtime, served by crishim's
// server core, with CRI clients.
type rig struct {
	*shimtest.Env
	host *Host
	reg  *prometheus.Registry
	sock string
}

func newRig(t *testing.T, cfg *Config, script func(f *fakecri.Server)) *rig {
	t.Helper()
	dir, err := os.MkdirTemp("", "nri")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	cfg.Socket = filepath.Join(dir, "nri", "nri.sock")
	reg := prometheus.NewRegistry()
	m, err := NewMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	h, err := New(cfg, shimtest.DiscardLogger(), m)
	if err != nil {
		t.Fatal(err)
	}
	env := shimtest.Start(t, script, reg, h.Handlers()...)
	if err := h.Start(env.RC); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(h.Stop)
	return &rig{Env: env, host: h, reg: reg, sock: cfg.Socket}
}

// testPlugin is an NRI plugin written against the upstream stub API.
type testPlugin struct {
	adjust  func(*api.ContainerAdjustment)
	hang    chan struct{} // CreateContainer blocks until closed
	synced  chan int      // containers seen at Synchronize
	created chan *api.Container
}

func (p *testPlugin) Synchronize(_ context.Context, pods []*api.PodSandbox, ctrs []*api.Container) ([]*api.ContainerUpdate, error) {
	if p.synced != nil {
		p.synced <- len(ctrs)
	}
	return nil, nil
}

func (p *testPlugin) CreateContainer(_ context.Context, _ *api.PodSandbox, c *api.Container) (*api.ContainerAdjustment, []*api.ContainerUpdate, error) {
	if p.hang != nil {
		<-p.hang
	}
	if p.created != nil {
		p.created <- c
	}
	a := &api.ContainerAdjustment{}
	if p.adjust != nil {
		p.adjust(a)
	}
	return a, nil, nil
}

// connect runs a stub plugin (any of the stub's handler interfaces)
// against the rig's socket until the test ends, once it is registered and
// synchronized.
func (r *rig) connect(t *testing.T, name, idx string, p any, opts ...stub.Option) stub.Stub {
	t.Helper()
	s, err := stub.New(p, append([]stub.Option{stub.WithPluginName(name), stub.WithPluginIdx(idx), stub.WithSocketPath(r.sock)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	if err := s.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cancel(); s.Stop() })
	r.waitConnected(t, name)
	return s
}

func (r *rig) waitConnected(t *testing.T, name string) {
	t.Helper()
	deadline := time.After(30 * time.Second)
	for {
		ch := r.host.tracker.wait()
		for _, n := range r.host.Connected() {
			if n == name {
				return
			}
		}
		select {
		case <-ch:
		case <-deadline:
			t.Fatalf("plugin %q did not connect; connected: %v", name, r.host.Connected())
		}
	}
}

func createReq() *runtimeapi.CreateContainerRequest {
	return &runtimeapi.CreateContainerRequest{
		PodSandboxId: "pod1",
		Config: &runtimeapi.ContainerConfig{
			Metadata:    &runtimeapi.ContainerMetadata{Name: "app"},
			Image:       &runtimeapi.ImageSpec{Image: "busybox"},
			Envs:        []*runtimeapi.KeyValue{{Key: "KEEP", Value: []byte("1")}},
			Mounts:      []*runtimeapi.Mount{{ContainerPath: "/data", HostPath: "/srv/data", SelinuxRelabel: true}},
			Linux:       &runtimeapi.LinuxContainerConfig{Resources: &runtimeapi.LinuxContainerResources{CpuShares: 2, MemoryLimitInBytes: 1 << 30, MemorySwapLimitInBytes: 1 << 30}},
			Annotations: map[string]string{"io.kubernetes.container.hash": "abc"},
		},
		SandboxConfig: &runtimeapi.PodSandboxConfig{Metadata: &runtimeapi.PodSandboxMetadata{Name: "p", Namespace: "team-a", Uid: "u1"}},
	}
}

func createScript(f *fakecri.Server) {
	f.Script(runtimeService+"CreateContainer", fakecri.Script{Response: &runtimeapi.CreateContainerResponse{ContainerId: "rt-1"}})
}

// sentCreate returns the CreateContainer requests the runtime got.
func sentCreate(t *testing.T, f *fakecri.Server) []*runtimeapi.CreateContainerRequest {
	t.Helper()
	var out []*runtimeapi.CreateContainerRequest
	for _, c := range f.Calls(runtimeService + "CreateContainer") {
		var req runtimeapi.CreateContainerRequest
		if err := proto.Unmarshal(c.Request, &req); err != nil {
			t.Fatal(err)
		}
		out = append(out, &req)
	}
	return out
}

func envOf(req *runtimeapi.CreateContainerRequest) map[string]string {
	m := map[string]string{}
	for _, kv := range req.GetConfig().GetEnvs() {
		m[kv.GetKey()] = string(kv.GetValue())
	}
	return m
}

func TestCreateContainerAppliesAdjustments(t *testing.T) {
	r := newRig(t, &Config{}, createScript)
	p := &testPlugin{created: make(chan *api.Container, 1), adjust: func(a *api.ContainerAdjustment) {
		a.AddEnv("FROM_PLUGIN", "yes")
		a.AddAnnotation("plugin.example/seen", "true")
		a.AddMount(&api.Mount{Destination: "/plugin", Source: "/tmp", Type: "bind", Options: []string{"rbind", "ro"}})
		a.AddDevice(&api.LinuxDevice{Path: "/dev/null", Type: "c", Major: 1, Minor: 3})
		a.SetLinuxCPUShares(512)
		a.SetLinuxMemoryLimit(64 << 20)
		a.SetLinuxCPUSetCPUs("0")
	}}
	r.connect(t, "adjuster", "10", p)
	resp, err := r.RC.CreateContainer(context.Background(), createReq())
	if err != nil {
		t.Fatal(err)
	}
	if resp.GetContainerId() != "rt-1" {
		t.Fatalf("container id %q", resp.GetContainerId())
	}
	seen := <-p.created
	sent := sentCreate(t, r.Fake)
	if len(sent) != 1 {
		t.Fatalf("runtime got %d CreateContainer calls", len(sent))
	}
	got := sent[0]
	env := envOf(got)
	if env["FROM_PLUGIN"] != "yes" || env["KEEP"] != "1" {
		t.Errorf("env %v: want FROM_PLUGIN=yes and KEEP=1", env)
	}
	if got.Config.Annotations["plugin.example/seen"] != "true" {
		t.Errorf("annotations %v", got.Config.Annotations)
	}
	if id := got.Config.Annotations[IDAnnotation]; id == "" || id != seen.GetId() {
		t.Errorf("%s = %q, plugin saw ID %q", IDAnnotation, id, seen.GetId())
	}
	var plugin, kept *runtimeapi.Mount
	for _, m := range got.Config.Mounts {
		switch m.ContainerPath {
		case "/plugin":
			plugin = m
		case "/data":
			kept = m
		}
	}
	if plugin == nil || plugin.HostPath != "/tmp" || !plugin.Readonly {
		t.Errorf("plugin mount %v", plugin)
	}
	if kept == nil || !kept.SelinuxRelabel {
		t.Errorf("the kubelet's mount lost its fields: %v", kept)
	}
	if len(got.Config.Devices) != 1 || got.Config.Devices[0].HostPath != "/dev/null" || got.Config.Devices[0].ContainerPath != "/dev/null" {
		t.Errorf("devices %v", got.Config.Devices)
	}
	res := got.Config.Linux.Resources
	if res.CpuShares != 512 || res.MemoryLimitInBytes != 64<<20 || res.CpusetCpus != "0" {
		t.Errorf("resources %v", res)
	}
	if n := testutil.ToFloat64(r.host.metrics.adjustments.WithLabelValues("adjuster", "adjust")); n != 1 {
		t.Errorf("adjustments metric %v, want 1", n)
	}
}

func TestCreateContainerWithoutPluginsUnchanged(t *testing.T) {
	r := newRig(t, &Config{}, createScript)
	req := createReq()
	if _, err := r.RC.CreateContainer(context.Background(), req); err != nil {
		t.Fatal(err)
	}
	sent := sentCreate(t, r.Fake)
	if len(sent) != 1 || !proto.Equal(sent[0], req) {
		t.Fatalf("runtime got %v, want the request unchanged", sent)
	}
}

func TestUnsupportedAdjustments(t *testing.T) {
	rlimit := func(a *api.ContainerAdjustment) {
		a.AddEnv("FROM_PLUGIN", "yes")
		a.AddRlimit("RLIMIT_NOFILE", 1024, 512)
	}
	for _, tc := range []struct {
		desc   string
		fields map[string]string
		refuse bool
	}{
		{"refused by default", nil, true},
		{"dropped by policy", map[string]string{"rlimits": UnsupportedDrop}, false},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			r := newRig(t, &Config{UnsupportedFields: tc.fields}, createScript)
			r.connect(t, "limits", "20", &testPlugin{adjust: rlimit})
			_, err := r.RC.CreateContainer(context.Background(), createReq())
			sent := sentCreate(t, r.Fake)
			if tc.refuse {
				if status.Code(err) != codes.FailedPrecondition || !strings.Contains(err.Error(), "plugin 20-limits set rlimits") {
					t.Fatalf("err %v: want FailedPrecondition naming the plugin and the field", err)
				}
				if len(sent) != 0 {
					t.Fatal("the runtime got a refused container")
				}
				if n := testutil.ToFloat64(r.host.metrics.unsupported.WithLabelValues("limits", "rlimits", "refused")); n != 1 {
					t.Errorf("refused metric %v", n)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(sent) != 1 || envOf(sent[0])["FROM_PLUGIN"] != "yes" {
				t.Fatalf("runtime got %v: want the container with the rest of the adjustment", sent)
			}
			if n := testutil.ToFloat64(r.host.metrics.unsupported.WithLabelValues("limits", "rlimits", "dropped")); n != 1 {
				t.Errorf("dropped metric %v", n)
			}
		})
	}
}

func TestConflictNamesBothPlugins(t *testing.T) {
	r := newRig(t, &Config{}, createScript)
	set := func(v string) func(*api.ContainerAdjustment) {
		return func(a *api.ContainerAdjustment) { a.SetLinuxMemoryLimit(1 << 20); a.AddEnv("X", v) }
	}
	r.connect(t, "one", "10", &testPlugin{adjust: set("1")})
	r.connect(t, "two", "20", &testPlugin{adjust: set("2")})
	_, err := r.RC.CreateContainer(context.Background(), createReq())
	if status.Code(err) != codes.FailedPrecondition || !strings.Contains(err.Error(), "10-one") || !strings.Contains(err.Error(), "20-two") {
		t.Fatalf("err %v: want a conflict naming both plugins", err)
	}
	if len(sentCreate(t, r.Fake)) != 0 {
		t.Fatal("the runtime got the container")
	}
}

func TestFailurePolicy(t *testing.T) {
	for _, tc := range []struct {
		desc     string
		operator string
		declared *api.FailurePolicy
		fail     bool
	}{
		{"NRI default: proceed", "", nil, false},
		{"plugin declares fail", "", &api.FailurePolicy{FailRequest: true}, true},
		{"operator fail over plugin default", FailurePolicyFail, nil, true},
		{"operator ignore over plugin fail", FailurePolicyIgnore, &api.FailurePolicy{FailRequest: true}, false},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			cfg := &Config{RequestTimeout: &metav1.Duration{Duration: 300 * time.Millisecond}}
			if tc.operator != "" {
				cfg.Plugins = []PluginConfig{{Name: "slow", FailurePolicy: tc.operator}}
			}
			r := newRig(t, cfg, createScript)
			hang := make(chan struct{})
			t.Cleanup(func() { close(hang) })
			var opts []stub.Option
			if tc.declared != nil {
				opts = append(opts, stub.WithFailurePolicy(tc.declared))
			}
			r.connect(t, "slow", "10", &testPlugin{hang: hang}, opts...)
			_, err := r.RC.CreateContainer(context.Background(), createReq())
			if tc.fail {
				if status.Code(err) != codes.Unavailable || !strings.Contains(err.Error(), "10-slow") {
					t.Fatalf("err %v: want Unavailable naming the plugin", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("err %v: want the call to proceed without the plugin", err)
			}
			if n := testutil.ToFloat64(r.host.metrics.events.WithLabelValues("slow", "CreateContainer", "timeout")); n != 1 {
				t.Errorf("timeout metric %v", n)
			}
		})
	}
}

func TestRequiredPlugin(t *testing.T) {
	cfg := &Config{Plugins: []PluginConfig{{Name: "guard", Required: true}}, ExemptNamespaces: []string{"kube-system"}}
	r := newRig(t, cfg, func(f *fakecri.Server) {
		f.Script(runtimeService+"RunPodSandbox", fakecri.Script{Response: &runtimeapi.RunPodSandboxResponse{PodSandboxId: "pod1"}})
	})
	run := func(ns string, annotations map[string]string) error {
		_, err := r.RC.RunPodSandbox(context.Background(), &runtimeapi.RunPodSandboxRequest{Config: &runtimeapi.PodSandboxConfig{
			Metadata: &runtimeapi.PodSandboxMetadata{Name: "p", Namespace: ns}, Annotations: annotations}})
		return err
	}
	if err := run("team-a", nil); status.Code(err) != codes.Unavailable || !strings.Contains(err.Error(), `"guard"`) {
		t.Fatalf("err %v: want Unavailable naming the missing plugin", err)
	}
	if n := len(r.Fake.Calls(runtimeService + "RunPodSandbox")); n != 0 {
		t.Fatalf("the runtime got %d refused pods", n)
	}
	if err := run("kube-system", nil); err != nil {
		t.Fatalf("exempt namespace: %v", err)
	}
	if err := run("team-a", map[string]string{"kubernetes.io/config.source": "file"}); err != nil {
		t.Fatalf("static pod: %v", err)
	}
	r.connect(t, "guard", "10", &testPlugin{})
	if err := run("team-a", nil); err != nil {
		t.Fatalf("with the plugin connected: %v", err)
	}
}

func TestSynchronizeGivesRuntimeState(t *testing.T) {
	r := newRig(t, &Config{}, func(f *fakecri.Server) {
		f.Script(runtimeService+"ListPodSandbox", fakecri.Script{Response: &runtimeapi.ListPodSandboxResponse{Items: []*runtimeapi.PodSandbox{{Id: "pod1"}}}})
		f.Script(runtimeService+"PodSandboxStatus", fakecri.Script{Response: &runtimeapi.PodSandboxStatusResponse{Status: &runtimeapi.PodSandboxStatus{
			Id: "pod1", Metadata: &runtimeapi.PodSandboxMetadata{Name: "p", Namespace: "ns"}}}})
		f.Script(runtimeService+"ListContainers", fakecri.Script{Response: &runtimeapi.ListContainersResponse{Containers: []*runtimeapi.Container{
			{Id: "c1", PodSandboxId: "pod1", State: runtimeapi.ContainerState_CONTAINER_RUNNING},
			{Id: "c2", PodSandboxId: "pod1", State: runtimeapi.ContainerState_CONTAINER_EXITED},
		}}})
		f.Script(runtimeService+"ContainerStatus", fakecri.Script{Response: &runtimeapi.ContainerStatusResponse{Status: &runtimeapi.ContainerStatus{
			Id: "c1", Metadata: &runtimeapi.ContainerMetadata{Name: "app"}, State: runtimeapi.ContainerState_CONTAINER_RUNNING}}})
	})
	p := &testPlugin{synced: make(chan int, 1)}
	r.connect(t, "sync", "10", p)
	select {
	case n := <-p.synced:
		if n != 1 {
			t.Fatalf("plugin synchronized with %d containers, want the 1 running", n)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("no Synchronize")
	}
}

func TestConfigValidate(t *testing.T) {
	for _, tc := range []struct {
		desc string
		cfg  Config
		want string
	}{
		{"runtime socket", Config{Socket: "/var/run/nri/nri.sock"}, "runtime's own NRI socket"},
		{"relative socket", Config{Socket: "nri.sock"}, "absolute path"},
		{"bad policy", Config{Plugins: []PluginConfig{{Name: "a", FailurePolicy: "maybe"}}}, "nri.plugins[0].failurePolicy"},
		{"unnamed", Config{Plugins: []PluginConfig{{}}}, "nri.plugins[0].name"},
		{"twice", Config{Plugins: []PluginConfig{{Name: "a"}, {Name: "a"}}}, "listed twice"},
		{"unknown field", Config{UnsupportedFields: map[string]string{"env": "drop"}}, "not a field CRI cannot carry"},
		{"bad field policy", Config{UnsupportedFields: map[string]string{"rlimits": "keep"}}, "nri.unsupportedFields.rlimits"},
		{"namespace", Config{ExemptNamespaces: []string{"Kube_System"}}, "nri.exemptNamespaces[0]"},
		{"timeout", Config{RequestTimeout: &metav1.Duration{}}, "nri.requestTimeout"},
		{"ok", Config{Plugins: []PluginConfig{{Name: "a", FailurePolicy: "fail", Required: true}}}, ""},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			problems := strings.Join(tc.cfg.Validate(), "\n")
			if tc.want == "" && problems != "" || !strings.Contains(problems, tc.want) {
				t.Fatalf("problems %q, want %q", problems, tc.want)
			}
		})
	}
}

var _ = errors.New

func TestCheckFiles(t *testing.T) {
	dir := t.TempDir()
	open := filepath.Join(dir, "open")
	if err := os.Mkdir(open, 0o777); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(open, 0o777); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		desc string
		cfg  Config
		want string
	}{
		{"world-writable plugin dir", Config{PluginDir: open}, "nri.pluginDir: " + open + " is world-writable"},
		{"missing config dir", Config{PluginConfigDir: filepath.Join(dir, "none")}, "nri.pluginConfigDir"},
		{"fine", Config{PluginDir: dir}, ""},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			err := tc.cfg.CheckFiles()
			if tc.want == "" && err != nil || tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)) {
				t.Fatalf("err %v, want %q", err, tc.want)
			}
		})
	}
}
