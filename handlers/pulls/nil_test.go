package pulls

import (
	"context"
	"testing"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// TestConstructorsAcceptNil: given nil for what they later use (metrics,
// scheduler, logger), the constructors serve a pull without panicking.
func TestConstructorsAcceptNil(t *testing.T) {
	req := &runtimeapi.PullImageRequest{
		Image:         &runtimeapi.ImageSpec{Image: "registry.example/app:1"},
		SandboxConfig: &runtimeapi.PodSandboxConfig{Metadata: &runtimeapi.PodSandboxMetadata{Name: "p", Namespace: "other"}},
	}
	next := func(context.Context, *runtimeapi.PullImageRequest) (*runtimeapi.PullImageResponse, error) {
		return &runtimeapi.PullImageResponse{ImageRef: "sha256:x"}, nil
	}
	tests := []struct {
		desc  string
		sched func() *Scheduler
	}{
		{"scheduler with nil metrics", func() *Scheduler {
			return NewScheduler(Limits{MaxParallel: 1, MaxParallelPerRegistry: 1}, true, nil)
		}},
		{"no scheduler", func() *Scheduler { return nil }},
	}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			defer func() {
				if r := recover(); r != nil {
					t.Fatalf("panic: %v", r)
				}
			}()
			s := tc.sched()
			if s != nil {
				defer s.Close()
			}
			p := NewPuller(nil, s, nil)
			if _, err := p.PullImage(context.Background(), req, next); err != nil {
				t.Errorf("PullImage: %v", err)
			}
		})
	}
}
