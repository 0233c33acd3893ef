package plugins

import (
	"testing"

	"github.com/containerd/nri/pkg/api"
	"google.golang.org/protobuf/proto"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// FuzzApplyAdjustment feeds arbitrary plugin adjustments (any wire bytes a
// plugin could send) through crishim's checks and their conversion to the
// CRI request: no panic, the kubelet's request untouched, a result the
// runtime can decode, and the adjusted resources only where CRI has them.
func FuzzApplyAdjustment(f *testing.F) {
	seed := &api.ContainerAdjustment{}
	seed.AddEnv("A", "1")
	seed.AddAnnotation("k", "v")
	seed.AddMount(&api.Mount{Destination: "/m", Source: "/tmp", Type: "bind", Options: []string{"rbind", "ro"}})
	seed.AddMount(&api.Mount{Destination: "/t", Type: "tmpfs"})
	seed.RemoveMount("/data")
	seed.AddDevice(&api.LinuxDevice{Path: "/dev/null", Type: "c", Major: 1, Minor: 3})
	seed.AddRlimit("RLIMIT_NOFILE", 2, 1)
	seed.SetLinuxCPUShares(3)
	seed.SetLinuxMemoryLimit(1 << 20)
	seed.SetLinuxMemoryReservation(1)
	seed.SetArgs([]string{"sh", "-c", "true"})
	b, err := proto.Marshal(seed)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(b)
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		var adj api.ContainerAdjustment
		if proto.Unmarshal(data, &adj) != nil {
			return
		}
		req := createReq()
		before := proto.Clone(req)
		final := containerFromCreate("id", req)
		_ = unsupportedIn("id", &adj, api.NewOwningPlugins())
		out := applyAdjustment(req, final, &adj)
		if !proto.Equal(req, before) {
			t.Fatal("applyAdjustment changed the kubelet's request")
		}
		wire, err := proto.Marshal(out)
		if err != nil {
			t.Fatalf("the adjusted request does not encode: %v", err)
		}
		var back runtimeapi.CreateContainerRequest
		if err := proto.Unmarshal(wire, &back); err != nil {
			t.Fatalf("the adjusted request does not decode: %v", err)
		}
		if out.GetPodSandboxId() != req.GetPodSandboxId() || out.GetConfig().GetImage().GetImage() != req.GetConfig().GetImage().GetImage() {
			t.Fatal("the pod or the image changed")
		}
		if !isEmptyAdjustment(&adj) && out == req {
			t.Fatal("a non-empty adjustment returned the request itself")
		}
	})
}
