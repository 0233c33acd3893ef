package pulls

import (
	"context"
	"io"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/sirupsen/logrus"
	"google.golang.org/protobuf/proto"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// FuzzPullImage decodes arbitrary bytes as a PullImageRequest and schedules
// it: refused or forwarded, never a panic.
func FuzzPullImage(f *testing.F) {
	seed, _ := proto.Marshal(&runtimeapi.PullImageRequest{
		Image:         &runtimeapi.ImageSpec{Image: "busybox", Annotations: map[string]string{"a": "b"}},
		Auth:          &runtimeapi.AuthConfig{Username: "u"},
		SandboxConfig: &runtimeapi.PodSandboxConfig{Metadata: &runtimeapi.PodSandboxMetadata{Namespace: "kube-system"}},
	})
	f.Add(seed)
	f.Add([]byte{})
	log := logrus.New()
	log.SetOutput(io.Discard)
	pm, err := NewMetrics(prometheus.NewRegistry(), nil)
	if err != nil {
		f.Fatal(err)
	}
	sched := NewScheduler(Limits{MaxParallel: 2, MaxParallelPerRegistry: 1}, true, pm)
	defer sched.Close()
	puller := NewPuller(log, sched, []string{"kube-system"})
	next := func(ctx context.Context, req *runtimeapi.PullImageRequest) (*runtimeapi.PullImageResponse, error) {
		return &runtimeapi.PullImageResponse{ImageRef: "sha256:x"}, nil
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		req := &runtimeapi.PullImageRequest{}
		if proto.Unmarshal(b, req) != nil {
			return
		}
		_, _ = puller.PullImage(context.Background(), req, next)
	})
}
