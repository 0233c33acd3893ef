package routing

import (
	"context"
	"io"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/sirupsen/logrus"
	"google.golang.org/protobuf/proto"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// FuzzRunPodSandbox decodes arbitrary bytes as a RunPodSandboxRequest and
// routes it: nil and empty fields, odd quantities and annotations may be
// refused, never panic.
func FuzzRunPodSandbox(f *testing.F) {
	seed, _ := proto.Marshal(&runtimeapi.RunPodSandboxRequest{
		RuntimeHandler: "kata",
		Config: &runtimeapi.PodSandboxConfig{
			Metadata:    &runtimeapi.PodSandboxMetadata{Name: "p", Namespace: "untrusted-a"},
			Annotations: map[string]string{PodHandlerAnnotation: "kata"},
			Linux:       &runtimeapi.LinuxPodSandboxConfig{Resources: &runtimeapi.LinuxContainerResources{CpuQuota: -1, CpuPeriod: 0, MemoryLimitInBytes: 1 << 62}},
		},
	})
	f.Add(seed)
	f.Add([]byte{})
	f.Add([]byte{0x0a, 0x00})
	log := logrus.New()
	log.SetOutput(io.Discard)
	m, err := NewMetrics(prometheus.NewRegistry())
	if err != nil {
		f.Fatal(err)
	}
	q := func(s string) *Overhead { return &Overhead{CPU: mustQ(s), Memory: mustQ("160Mi")} }
	hs := []RuntimeHandler{{Name: "runc", Default: true}, {Name: "kata", Overhead: q("250m"), VMSizing: &VMSizing{MaxVCPUs: 8}}}
	rules := Routing{Rules: []Rule{
		{Name: "u", Match: Match{Namespaces: []string{"untrusted-*"}, Labels: map[string]string{"a": "b*"}}, Handler: "kata"},
		{Name: "pick", Match: Match{Namespaces: []string{"untrusted-*"}}, AllowPodAnnotation: []string{"kata"}},
		{Name: "deny", Match: Match{RequestedHandlers: []string{""}, Annotations: map[string]string{"x": "?"}}, Deny: "no"},
	}}
	inv := NewInventory(log, m, []string{"runc", "kata"}, 0)
	runner := NewSandboxRunner(NewRouter(hs, rules), inv, m, log)
	next := func(ctx context.Context, req *runtimeapi.RunPodSandboxRequest) (*runtimeapi.RunPodSandboxResponse, error) {
		return &runtimeapi.RunPodSandboxResponse{PodSandboxId: "x"}, nil
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		req := &runtimeapi.RunPodSandboxRequest{}
		if proto.Unmarshal(b, req) != nil {
			return
		}
		_, _ = runner.RunPodSandbox(context.Background(), req, next)
	})
}

// FuzzDecide routes arbitrary pods through rules with globs.
func FuzzDecide(f *testing.F) {
	f.Add("untrusted-a", "a", "b", "kata")
	f.Add("", "", "", "")
	r := NewRouter([]RuntimeHandler{{Name: "runc", Default: true}, {Name: "kata"}}, Routing{Rules: []Rule{
		{Name: "g", Match: Match{Namespaces: []string{"u*-?", "[a-c]x"}, Labels: map[string]string{"k": "v*"}}, Handler: "kata"},
		{Name: "p", Match: Match{Namespaces: []string{"*"}}, AllowPodAnnotation: []string{"kata"}},
	}})
	f.Fuzz(func(t *testing.T, ns, key, value, handler string) {
		d := r.Decide(Pod{Namespace: ns, Labels: map[string]string{key: value}, Annotations: map[string]string{PodHandlerAnnotation: value}, RequestedHandler: handler})
		if d.Denied && d.Reason == "" {
			t.Errorf("denied without a reason: %+v", d)
		}
	})
}
