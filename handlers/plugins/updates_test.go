package plugins

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/containerd/nri/pkg/api"
	"google.golang.org/protobuf/proto"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/crishim/crishim/test/fakecri"
)

// TestPluginUpdateBecomesUpdateContainerResources: a plugin's unsolicited
// update names the container by the ID plugins know it by; the runtime gets
// UpdateContainerResources for its own ID, with the update merged into the
// container's current resources (CRI replaces them whole).
func TestPluginUpdateBecomesUpdateContainerResources(t *testing.T) {
	r := newRig(t, &Config{}, createScript)
	p := &testPlugin{created: make(chan *api.Container, 1)}
	s := r.connect(t, "updater", "10", p)
	if _, err := r.RC.CreateContainer(context.Background(), createReq()); err != nil {
		t.Fatal(err)
	}
	seen := <-p.created
	u := &api.ContainerUpdate{}
	u.SetContainerId(seen.GetId())
	u.SetLinuxCPUShares(777)
	failed, err := s.UpdateContainers([]*api.ContainerUpdate{u})
	if err != nil || len(failed) != 0 {
		t.Fatalf("UpdateContainers: failed %v, err %v", failed, err)
	}
	calls := r.Fake.Calls(runtimeService + "UpdateContainerResources")
	if len(calls) != 1 {
		t.Fatalf("runtime got %d UpdateContainerResources, want 1", len(calls))
	}
	var got runtimeapi.UpdateContainerResourcesRequest
	if err := proto.Unmarshal(calls[0].Request, &got); err != nil {
		t.Fatal(err)
	}
	if got.ContainerId != "rt-1" || got.Linux.GetCpuShares() != 777 || got.Linux.GetMemoryLimitInBytes() != 1<<30 {
		t.Errorf("runtime got %v: want rt-1 with shares 777 and the memory limit kept", &got)
	}
	// an update for a container the runtime refuses comes back as failed
	r.Fake.Script(runtimeService+"UpdateContainerResources", fakecri.Script{Err: os.ErrInvalid})
	if failed, _ := s.UpdateContainers([]*api.ContainerUpdate{u}); len(failed) != 1 {
		t.Errorf("failed %v, want the refused update back", failed)
	}
}

// TestPreinstalledPlugin: a plugin in nri.pluginDir (NRI's NN-name layout)
// is started by crishim, with its configuration from nri.pluginConfigDir,
// and registers.
func TestPreinstalledPlugin(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the test plugin")
	}
	dir := t.TempDir()
	plugins, confs := filepath.Join(dir, "plugins"), filepath.Join(dir, "conf.d")
	for _, d := range []string{plugins, confs} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	build := exec.Command("go", "build", "-tags", "nri_no_wasm", "-o", filepath.Join(plugins, "10-crishim-test"), "../../test/nriplugin")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	if err := os.WriteFile(filepath.Join(confs, "10-crishim-test.conf"), []byte("{}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	r := newRig(t, &Config{PluginDir: plugins, PluginConfigDir: confs}, createScript)
	deadline := time.Now().Add(30 * time.Second)
	for len(r.host.Connected()) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the pre-installed plugin did not register")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if got := r.host.Connected(); len(got) != 1 || got[0] != "crishim-test" {
		t.Fatalf("connected %v, want [crishim-test]", got)
	}
}

// resizer is a plugin that sets CPU shares on every UpdateContainer.
type resizer struct{ testPlugin }

func (p *resizer) UpdateContainer(_ context.Context, _ *api.PodSandbox, c *api.Container, _ *api.LinuxResources) ([]*api.ContainerUpdate, error) {
	u := &api.ContainerUpdate{}
	u.SetContainerId(c.GetId())
	u.SetLinuxCPUShares(333)
	return []*api.ContainerUpdate{u}, nil
}

// TestUpdateContainerResourcesThroughPlugins: what a plugin sets for the
// container in UpdateContainer is laid over the kubelet's request.
func TestUpdateContainerResourcesThroughPlugins(t *testing.T) {
	r := newRig(t, &Config{}, createScript)
	r.connect(t, "resizer", "10", &testPlugin{})
	p := &resizer{}
	r.connect(t, "resizer2", "20", p)
	if _, err := r.RC.CreateContainer(context.Background(), createReq()); err != nil {
		t.Fatal(err)
	}
	if _, err := r.RC.UpdateContainerResources(context.Background(), &runtimeapi.UpdateContainerResourcesRequest{ContainerId: "rt-1",
		Linux: &runtimeapi.LinuxContainerResources{CpuShares: 100, MemoryLimitInBytes: 2 << 30}}); err != nil {
		t.Fatal(err)
	}
	calls := r.Fake.Calls(runtimeService + "UpdateContainerResources")
	if len(calls) != 1 {
		t.Fatalf("runtime got %d UpdateContainerResources, want 1", len(calls))
	}
	var got runtimeapi.UpdateContainerResourcesRequest
	if err := proto.Unmarshal(calls[0].Request, &got); err != nil {
		t.Fatal(err)
	}
	if got.ContainerId != "rt-1" || got.Linux.GetCpuShares() != 333 || got.Linux.GetMemoryLimitInBytes() != 2<<30 {
		t.Errorf("runtime got %v: want the plugin's shares over the kubelet's, the kubelet's memory", &got)
	}
}
